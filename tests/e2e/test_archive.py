"""The store as archive: after a start-up, memory holds the DAG and the state, not the
envelopes or the ops; sync, bundles and a fold that starts again read them back."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

import protocol.dag
from crypto import EpochKey, KdfParams, hash256, random_bytes
from p2pnet.archive import StoreArchive
from p2pnet.errors import StoreCorrupt
from p2pnet.node import Node, _pack_network, _StoreHoldings
from p2pnet.store import StoredOp
from protocol import fold, seal_group
from protocol.build import next_op
from protocol.signed import VerifiedOp

PASS = "correct horse battery staple"
FAST = KdfParams.insecure_for_tests()


def _carry(sender: Node, receiver: Node, net: str, tmp: Path, name: str) -> int:
    summary, bundle = tmp / f"{name}.summary", tmp / f"{name}.bundle"
    receiver.bundle_summary(net, summary)
    sender.bundle_export(net, bundle, for_summary=summary)
    report = receiver.bundle_import(bundle)
    assert report.invalid == 0, report.problems
    return report.imported


def _join(inviter: Node, joiner: Node, net: str, tmp: Path) -> None:
    request, welcome = tmp / f"{joiner.name}.request", tmp / f"{joiner.name}.welcome"
    joiner.join_request(inviter.create_invite(net), request)
    assert inviter.accept_invite(net, request, out=welcome).welcome_written
    joiner.bundle_import(welcome)


def _reopen_without_cache(node: Node, home: Path) -> Node:
    net_id = node.network_id("Net")
    node.close()
    with Node.open(home, "default", PASS) as plain:
        plain.profile.store.put(net_id, "state-cache", b"")  # unusable: forces a rebuild
    return Node.open(home, "default", PASS)


def test_a_rebuilt_network_keeps_no_envelope_or_op_in_memory(tmp_path: Path) -> None:
    ana = Node.create(tmp_path / "ana", "default", PASS, name="Ana", kdf=FAST)
    ana.create_network("Net", "coordination")
    for i in range(5):
        ana.propose("Net", title=f"Topic {i}")
    ana = _reopen_without_cache(ana, tmp_path / "ana")
    try:
        net = ana._networks[ana.network_id("Net")]  # type: ignore[attr-defined]
        assert net.loaded is not None  # the empty cache was refused: rebuilt
        holdings = net.holdings
        assert holdings._data is None
        assert holdings.replica._ops == []
        # ... yet every envelope and op is still served, from the store.
        ops = holdings.replica.ops()
        assert len(ops) == 6
        assert fold(ops, network_id=net.network_id, genesis_id=net.genesis_id) == ana.state("Net")
        assert set(holdings.by_op) == {op.op_id for op in ops}
        texts = ana.texts("Net", [op.op_id for op in ops])
        assert sorted(t["title"] for t in texts.values() if "title" in t) == [
            f"Topic {i}" for i in range(5)
        ]
    finally:
        ana.close()


def test_a_replay_is_known_by_its_op_and_never_verified_or_stored_again(tmp_path: Path) -> None:
    """Envelope ids are not held in memory (the store has them): a replayed envelope,
    or the same op sealed again, is decrypted and recognised by its op id, before any
    signature check, and nothing is stored twice."""
    with Node.create(tmp_path / "ana", "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Net", "coordination")
        for i in range(3):
            ana.propose("Net", title=f"Topic {i}")
        net = ana._networks[ana.network_id("Net")]  # type: ignore[attr-defined]
        envelopes = [r.data for r in ana.profile.store.envelopes(net.network_id)]
        epoch = next(iter(net.epochs.values()))
        resealed = [
            seal_group(op, epoch=epoch, route_tag=net.secret.route_tag, nonce=random_bytes(24))
            for op in net.holdings.replica.ops()
        ]
        checked: list[int] = []
        real = ana._verifier  # type: ignore[attr-defined]

        def counting(signed: Sequence[bytes]) -> list[VerifiedOp]:
            checked.append(len(signed))
            return real(signed)

        net.holdings._verify = counting
        rows = ana.profile.store.count(net.network_id)
        holdings = _StoreHoldings(ana, net)
        report = holdings.receive([*envelopes, *resealed, *envelopes])
        assert (report.new, report.duplicates) == (0, 3 * len(envelopes))
        assert sum(checked) == 0
        assert holdings.kept == []
        assert ana.profile.store.count(net.network_id) == rows


def test_a_late_op_after_a_restart_folds_again_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = Node.create(tmp_path / "ana", "default", PASS, name="Ana", kdf=FAST)
    ben = Node.create(tmp_path / "ben", "default", PASS, name="Ben", kdf=FAST)
    cyd = Node.create(tmp_path / "cyd", "default", PASS, name="Cyd", kdf=FAST)
    try:
        ana.create_network("Net", "coordination")
        _join(ana, ben, "Net", tmp_path)
        ana.propose("Net", title="Meet")
        _carry(ana, ben, "Net", tmp_path, "a-b")
        # Apart: Ben comments once (a low lamport); Ana writes on and on (high ones).
        ben.comment("Net", "Meet", "from Ben, written offline")
        for i in range(8):
            ana.comment("Net", "Meet", f"Ana {i}")
        calls: list[int] = []
        original = StoreArchive.ops

        def counting(self: StoreArchive, op_ids: object) -> object:
            calls.append(len(op_ids))  # type: ignore[arg-type]
            return original(self, op_ids)  # type: ignore[arg-type]

        monkeypatch.setattr(StoreArchive, "ops", counting)
        ana = _reopen_without_cache(ana, tmp_path / "ana")
        assert not calls  # the start-up folds from the rows it reads, in one pass
        assert _carry(ben, ana, "Net", tmp_path, "b-a") == 1
        assert calls, "the late op did not make the node fold again from its store"
        state = ana.state("Net")
        net = ana._networks[ana.network_id("Net")]  # type: ignore[attr-defined]
        ops = net.holdings.replica.ops()
        assert fold(ops, network_id=net.network_id, genesis_id=net.genesis_id) == state
        assert len(state.comments[ana.decision_id("Net", "Meet")]) == 9
        # A newcomer welcomed after the restart receives everything, read from the store.
        _join(ana, cyd, "Net", tmp_path)
        assert cyd.state("Net").comments == state.comments
    finally:
        for node in (ana, ben, cyd):
            node.close()


def test_an_archive_that_lacks_an_op_is_a_damaged_store(tmp_path: Path) -> None:
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Net", "coordination")
        net = ana._networks[ana.network_id("Net")]  # type: ignore[attr-defined]
        archive = StoreArchive(ana.profile.store, net.network_id, net.secret.route_tag, net.epochs)
        assert set(archive.ops([net.genesis_id])) == {net.genesis_id}
        with pytest.raises(StoreCorrupt):
            archive.ops([net.genesis_id, b"\x07" * 32])
        with pytest.raises(KeyError):
            archive.envelope_of_op(b"\x07" * 32)
        (genesis,) = [r.data for r in ana.profile.store.envelopes(net.network_id)]
        assert archive.envelope_of_op(net.genesis_id) == genesis


def _downgrade_to_schema_3(home: Path) -> None:
    # What a store written before the op column looks like: envelopes only.
    db = sqlite3.connect(home / "profiles" / "default" / "store.db")
    db.execute("ALTER TABLE envelopes DROP COLUMN signed")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()


def test_a_store_from_before_the_op_column_rebuilds_and_fills_it_in(tmp_path: Path) -> None:
    ana = Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST)
    ana.create_network("Net", "coordination")
    for i in range(3):
        ana.propose("Net", title=f"Topic {i}")
    before = ana.state("Net")
    ana.close()
    _downgrade_to_schema_3(tmp_path)
    with Node.open(tmp_path, "default", PASS) as migrated:  # the cache is still fresh
        rows = list(migrated.profile.store.load(migrated.network_id("Net")))
        assert rows
        assert not any(isinstance(r, StoredOp) for r in rows)
        # No op ids recorded: an envelope is found by reading the rows.
        net = migrated._networks[migrated.network_id("Net")]  # type: ignore[attr-defined]
        archive = StoreArchive(
            migrated.profile.store, net.network_id, net.secret.route_tag, net.epochs
        )
        assert archive.envelope_of_op(net.genesis_id) == rows[0].data
        # ... and the op found that way is kept beside its envelope: found by id next.
        store = migrated.profile.store
        assert store.envelope_of_op(net.network_id, net.genesis_id) == rows[0].data
        with pytest.raises(KeyError):
            archive.envelope_of_op(b"\x07" * 32)
    ana = _reopen_without_cache(Node.open(tmp_path, "default", PASS), tmp_path)
    try:
        assert ana.state("Net") == before
        net_id = ana.network_id("Net")
        rows = list(ana.profile.store.load(net_id))
        assert len(rows) == 4
        assert all(isinstance(r, StoredOp) for r in rows)
    finally:
        ana.close()
    ana = _reopen_without_cache(Node.open(tmp_path, "default", PASS), tmp_path)
    try:  # now from the op column alone
        assert ana.state("Net") == before
    finally:
        ana.close()


def test_a_damaged_op_column_is_a_damaged_store(tmp_path: Path) -> None:
    ana = Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST)
    ana.create_network("Net", "coordination")
    ana.propose("Net", title="Meet")
    net_id = ana.network_id("Net")
    ana.close()
    db = sqlite3.connect(tmp_path / "profiles" / "default" / "store.db")
    (sealed,) = db.execute("SELECT signed FROM envelopes ORDER BY rowid DESC").fetchone()
    db.execute("UPDATE envelopes SET signed = ? WHERE signed = ?", (sealed[:-1], sealed))
    db.commit()
    db.close()
    with Node.open(tmp_path, "default", PASS) as cached:  # reads come from the cache
        cached.profile.store.put(net_id, "state-cache", b"")
    with pytest.raises(StoreCorrupt):
        Node.open(tmp_path, "default", PASS)


def test_rows_kept_unchecked_are_verified_when_their_key_arrives(tmp_path: Path) -> None:
    ana = Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST)
    ana.create_network("Net", "coordination")
    net = ana._networks[ana.network_id("Net")]  # type: ignore[attr-defined]
    later = EpochKey.generate()  # a key we learn only after its envelopes arrive
    genuine = next_op(
        ana.identity,
        net.holdings.replica.dag,
        network_id=net.network_id,
        op_type="comment",
        body={"target": net.genesis_id, "text": "sealed under a key we did not hold"},
        time=1_700_000_000_000,
    )
    signed = bytearray(genuine.signed)
    signed[-1] ^= 1  # the same op with a broken signature: a forgery
    forged = tuple.__new__(VerifiedOp, (*genuine[:9], bytes(signed)))
    route = net.secret.route_tag
    sealed = [
        seal_group(op, epoch=later, route_tag=route, nonce=random_bytes(24))
        for op in (forged, genuine)
    ]
    _StoreHoldings(ana, net).receive(sealed)
    flags = [row.verified for row in ana.profile.store.envelopes(net.network_id)]
    assert flags == [True, False, False]  # kept without a check: no key for them
    net.epochs[later.epoch_id] = later
    ana.profile.store.put(net.network_id, "network", _pack_network(net))
    ana = _reopen_without_cache(ana, tmp_path)
    try:
        net = ana._networks[ana.network_id("Net")]  # type: ignore[attr-defined]
        assert genuine.op_id in net.holdings.replica.dag  # verified now, and kept
        state = ana.state("Net")
        assert state.applied + state.invalid == 2  # the genesis and the genuine op
        assert net.holdings.held == 2  # the forgery was refused
        # The genuine op is kept beside its envelope now: found by its id, and the next
        # start-up trusts it without checking it again; the forgery stays unchecked.
        assert net.holdings.envelope_of(genuine.op_id) == sealed[1]
        rows = list(ana.profile.store.load(net.network_id))
        assert [isinstance(r, StoredOp) for r in rows] == [True, False, True]
    finally:
        ana.close()


def test_unchecked_rows_a_failed_batch_kept_keep_their_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows stored unchecked are verified at a start-up as one batch. When the batch
    fails part-way (too many ops waiting for parents), what it kept keeps its op beside
    its envelope like the rest: found by op id, never by reading every row."""
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        net_id = ana.create_network("Union", "coordination")
        ops = [ana.update_profile("Union", name=f"Ana {i}") for i in range(4)]
        store = ana.profile.store
        rows = list(store.envelopes(net_id))  # the genesis, then the four ops
        store._db.execute(
            "DELETE FROM envelopes WHERE net = ? AND rowid > ?",
            (store._key.index(net_id), rows[0].position),
        )
        # The first op, then the third and fourth (the second is missing: the third
        # waits for it, and the fourth overflows a waiting room of one).
        again = [rows[1].data, rows[3].data, rows[4].data]
        store.add_envelopes(net_id, [(hash256(e), e) for e in again], verified=False)
        store.put(net_id, "state-cache", b"")
    monkeypatch.setattr(protocol.dag, "MAX_WAITING", 1)
    with Node.open(tmp_path, "default", PASS) as ana:
        holdings = ana._networks[net_id].holdings  # type: ignore[attr-defined]
        assert ops[0].op_id in holdings.replica.dag
        assert ana.profile.store.signed_ops(net_id, [ops[0].op_id])  # its op is kept
        scans: list[int] = []
        real = ana.profile.store.envelopes
        monkeypatch.setattr(
            ana.profile.store, "envelopes", lambda *a, **k: scans.append(1) or real(*a, **k)
        )
        assert holdings.envelope_of(ops[0].op_id) == again[0]
        assert scans == []


def test_an_op_moved_to_another_networks_rows_fails_only_that_network(tmp_path: Path) -> None:
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        first = ana.create_network("First", "coordination")
        second = ana.create_network("Second", "coordination")
        ana.propose("Second", title="Meet")
        indices = [ana.profile.store._key.index(n) for n in (first, second)]
        for net_id in (first, second):
            ana.profile.store.put(net_id, "state-cache", b"")  # forces rebuilds
        ana._networks.clear()  # type: ignore[attr-defined]  # closes without a cache
    db = sqlite3.connect(tmp_path / "profiles" / "default" / "store.db")
    db.execute(
        "UPDATE envelopes SET net = ? WHERE rowid = (SELECT max(rowid) FROM envelopes)",
        (indices[0],),
    )
    db.commit()
    db.close()
    with Node.open(tmp_path, "default", PASS) as again:
        assert set(again.unavailable) == {first}
        assert again.state("Second").name == "Second"


def test_texts_are_never_read_from_a_row_with_a_swapped_op_index(tmp_path: Path) -> None:
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Net", "coordination")
        first = ana.propose("Net", title="First")
        second = ana.propose("Net", title="Second")
        # The op column is a keyed hash in clear: swapping it between two rows must not
        # make one op's text show as the other's.
        db = sqlite3.connect(tmp_path / "profiles" / "default" / "store.db")
        rows = db.execute("SELECT rowid, op FROM envelopes ORDER BY rowid").fetchall()
        (a, op_a), (b, op_b) = rows[-2], rows[-1]
        db.execute("UPDATE envelopes SET op = ? WHERE rowid = ?", (op_b, a))
        db.execute("UPDATE envelopes SET op = ? WHERE rowid = ?", (op_a, b))
        db.commit()
        db.close()
        texts = ana.texts("Net", [first.op_id, second.op_id])
        assert texts[first.op_id]["title"] == "First"
        assert texts[second.op_id]["title"] == "Second"
