"""The state cache: reads after a restart equal the fold, and a stale or damaged cache is
never used."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto import KdfParams
from p2pnet import statecache
from p2pnet.node import Node
from p2pnet.statecache import decode_state, encode_state
from protocol import fold

PASS = "correct horse battery staple"
FAST = KdfParams.insecure_for_tests()


def _busy_profile(home: Path) -> None:
    with Node.create(home, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Net", "coordination")
        ana.update_profile("Net", offers=["funding"], needs=["expertise_legal"])
        version = ana.add_agreement("Net", kind="charter", title="Charter", text="We agree.")
        ana.propose("Net", title="Adopt", kind="agreement_adoption", subject=version.op_id)
        ana.position("Net", "Adopt", "yes")
        ana.close_decision("Net", "Adopt")
        ana.propose("Net", title="Meet", closes_in_ms=0)
        ana.position("Net", "Meet", "consent")
        ana.comment("Net", "Meet", "Thursday works")


def test_a_fresh_cache_serves_reads_equal_to_the_fold(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        net = node._networks[node.network_id("Net")]  # type: ignore[attr-defined]
        assert net.loaded is None  # served from the cache: nothing was folded
        cached = node.state("Net")
        ops = net.holdings.replica.ops()  # now build it, and compare
        folded = fold(ops, network_id=cached.network_id, genesis_id=cached.genesis_id)
        assert cached == folded


def test_a_stale_cache_is_ignored(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    # Another process writes after the cache was made (its own close rewrites the cache,
    # so simulate one that crashed before closing: write through a Node, then put the old
    # cache back).
    with Node.open(tmp_path, "default", PASS) as node:
        net_id = node.network_id("Net")
        old_cache = node.profile.store.get(net_id, "state-cache")
    crashed = Node.open(tmp_path, "default", PASS)
    crashed.comment("Net", "Meet", "written by a process that then crashed")
    crashed.profile.store.put(net_id, "state-cache", old_cache)  # type: ignore[arg-type]
    crashed.profile.close()
    with Node.open(tmp_path, "default", PASS) as node:
        net = node._networks[net_id]  # type: ignore[attr-defined]
        assert net.loaded is not None  # the stale cache was not used
        meet = node.decision_id("Net", "Meet")
        assert len(node.state("Net").comments[meet]) == 2


def test_a_stale_cache_is_not_decoded_past_its_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        net_id = node.network_id("Net")
        data = node.profile.store.get(net_id, "state-cache")
        last = node.profile.store.last_position(net_id)
    assert data is not None
    decoded = decode_state(data, position=last)
    assert decoded is not None
    assert decoded == decode_state(data)

    def never(*_: object) -> None:
        raise AssertionError("a decision was decoded")

    monkeypatch.setattr(statecache, "_decision", never)
    assert decode_state(data, position=last + 1) is None  # stale: stopped at the position
    with pytest.raises(AssertionError):
        decode_state(data, position=last)  # (the patch would have caught a decode)


def test_a_damaged_cache_is_ignored(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        net_id = node.network_id("Net")
        expected = node.state("Net")
    with Node.open(tmp_path, "default", PASS) as node:
        node.profile.store.put(net_id, "state-cache", b"\x93\x01garbage")
    with Node.open(tmp_path, "default", PASS) as node:
        assert node.state("Net") == expected
    assert decode_state(b"not msgpack at all \xc1") is None


def test_encode_decode_round_trip(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        node.propose("Net", title="Another")  # forces a full load
        state = node.state("Net")
    decoded = decode_state(encode_state(7, state))
    assert decoded == (7, state)


def test_node_events_tell_a_ui_what_changed(tmp_path: Path) -> None:
    from p2pnet.node import NodeEvent  # noqa: PLC0415

    seen: list[NodeEvent] = []
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as node:
        stop = node.subscribe(seen.append)
        net_id = node.create_network("Net", "coordination")
        node.propose("Net", title="Meet")
        stop()
        node.propose("Net", title="Unseen")
    kinds = [(e.kind, e.network_id) for e in seen]
    assert ("network", net_id) in kinds
    assert kinds.count(("ops", net_id)) == 2  # the genesis, then the proposal


def test_texts_come_from_the_store_without_folding(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        net = node._networks[node.network_id("Net")]  # type: ignore[attr-defined]
        state = node.state("Net")
        meet = next(d for d in state.decisions.values() if d.title == "Meet")
        comment = state.comments[meet.decision_id][0]
        texts = node.texts("Net", [meet.decision_id, comment])
        assert net.loaded is None  # no DAG was built to read them
        assert texts[comment]["text"] == "Thursday works"
        assert texts[meet.decision_id]["title"] == "Meet"


def test_decision_show_needs_no_fold_when_the_cache_is_fresh(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        net = node._networks[node.network_id("Net")]  # type: ignore[attr-defined]
        decision = node.decision_id("Net", "Meet")
        projected = node.projected_outcome("Net", "Meet")
        assert net.loaded is None
        assert projected["outcome"] == "adopted"
        assert node.member_key("Net", "Ana") == node.identity.public.key
        assert net.loaded is None
        node.position("Net", decision.hex(), "abstain")  # a write builds the DAG
        assert net.loaded is not None


def test_a_truncated_or_extended_cache_is_refused(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        node.propose("Net", title="Another")
        data = encode_state(3, node.state("Net"))
    assert decode_state(data) is not None
    assert decode_state(data + b"\x00") is None  # trailing bytes
    for cut in range(0, len(data), max(1, len(data) // 50)):
        assert decode_state(data[:cut]) is None
    assert decode_state(b"\x90") is None  # an empty array


def test_a_bundle_import_loads_only_its_own_network(tmp_path: Path) -> None:
    _busy_profile(tmp_path)
    with Node.open(tmp_path, "default", PASS) as node:
        node.create_network("Other", "information_exchange")
        node.bundle_export("Net", tmp_path / "net.bundle")
    with Node.open(tmp_path, "default", PASS) as node:
        other = node._networks[node.network_id("Other")]  # type: ignore[attr-defined]
        assert other.loaded is None  # served from the cache
        node.bundle_import(tmp_path / "net.bundle")
        assert other.loaded is None  # a bundle of "Net" did not build "Other"'s history
