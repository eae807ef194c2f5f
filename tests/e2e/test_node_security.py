"""Regression tests for the security review of the node, invites and bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crypto import EpochKey, KdfParams, random_bytes
from p2pnet import _writing
from p2pnet.node import Node, NodeError, NotAllowed, _StoreHoldings
from protocol import RemoteProtocolError, seal_to_member, wire
from protocol.envelope import parse_envelope
from protocol.epochs import rotate_epoch
from protocol.invite import open_welcome

PASS = "correct horse battery staple"
FAST = KdfParams.insecure_for_tests()


def _node(home: Path, name: str) -> Node:
    return Node.create(home / name, "default", PASS, name=name.title(), kdf=FAST)


def test_an_epoch_no_one_holds_cannot_freeze_the_network(tmp_path: Path) -> None:
    ana = _node(tmp_path, "ana")
    ana.create_network("Net", "coordination")
    # A member announces a fresh epoch without any departure and gives its key to no one.
    genesis = next(iter(ana.state("Net").members.values())).admitted_by
    with pytest.raises(NotAllowed, match="leaving or removal"):
        ana._write("Net", "epoch", {"cause": genesis, "epoch": EpochKey.generate().epoch_id})
    assert len(ana.state("Net").epochs) == 1  # refused by the fold
    ana.propose("Net", title="Still able to decide")  # writing still works
    ana.close()


def test_rows_kept_unchecked_are_verified_on_reload(tmp_path: Path) -> None:
    ana = _node(tmp_path, "ana")
    ana.create_network("Net", "coordination")
    net = ana._net("Net")  # type: ignore[attr-defined]
    # A sealed envelope we cannot attribute is stored as unverified.
    sealed = seal_to_member(ana.identity.public, b"not an op", route_tag=net.secret.route_tag)
    _StoreHoldings(ana, net).receive([sealed])
    flags = [s.verified for s in ana.profile.store.envelopes(net.network_id)]
    assert flags.count(False) == 1
    ana.close()
    with Node.open(tmp_path / "ana", "default", PASS) as again:
        assert again.state("Net").name == "Net"


def test_a_one_time_invite_is_spent_once_across_two_processes_views(tmp_path: Path) -> None:
    ana = _node(tmp_path, "ana")
    ana.create_network("Net", "coordination")
    ana.close()
    tui = Node.open(tmp_path / "ana", "default", PASS)
    cli = Node.open(tmp_path / "ana", "default", PASS)
    ben, eve = _node(tmp_path, "ben"), _node(tmp_path, "eve")
    code = tui.create_invite("Net")
    cli.create_invite("Net")  # overlapping writes to the invites row
    ben.join_request(code, tmp_path / "ben.req")
    eve.join_request(code, tmp_path / "eve.req")
    assert (
        tui.accept_invite("Net", tmp_path / "ben.req", out=tmp_path / "ben.wl").status == "admitted"
    )
    cli.create_invite("Net")
    with pytest.raises(NodeError, match="already used"):
        cli.accept_invite("Net", tmp_path / "eve.req", out=tmp_path / "eve.wl")
    for node in (tui, cli, ben, eve):
        node.close()


def test_a_welcome_without_its_bundle_leaves_the_joiner_unchanged(tmp_path: Path) -> None:
    ana, ben = _node(tmp_path, "ana"), _node(tmp_path, "ben")
    ana.create_network("Net", "coordination")
    ben.join_request(ana.create_invite("Net"), tmp_path / "ben.req")
    ana.accept_invite("Net", tmp_path / "ben.req", out=tmp_path / "ben.wl")
    data = (tmp_path / "ben.wl").read_bytes()
    length = int.from_bytes(data[9:13], "big")
    (tmp_path / "cut.wl").write_bytes(data[: 13 + length])  # the courier kept the bundle
    with pytest.raises(NodeError):
        ben.bundle_import(tmp_path / "cut.wl")
    assert ben.networks() == []
    ben.bundle_import(tmp_path / "ben.wl")  # the real one still works afterwards
    assert [s.name for s in ben.networks()] == ["Net"]
    ana.close()
    ben.close()


def test_welcome_payload_with_malformed_epochs_is_a_clean_error(tmp_path: Path) -> None:
    from protocol.envelope import seal_to_member  # noqa: PLC0415

    ana, ben = _node(tmp_path, "ana"), _node(tmp_path, "ben")
    payload = wire.encode(
        [
            "p2pnet-welcome",
            b"n" * 16,
            b"s" * 32,
            b"g" * 32,
            [{"0": 1}],
            ana.identity.public.key,
            ben.identity.public.key,
        ]
    )
    signed = wire.encode([payload, ana.identity.sign(b"welcome", payload)])
    env = parse_envelope(seal_to_member(ben.identity.public, signed, route_tag=b"r" * 16))
    with pytest.raises(RemoteProtocolError, match="damaged"):
        open_welcome(env, ben.identity, inviter=ana.identity.public.key)  # type: ignore[arg-type]
    ana.close()
    ben.close()


def test_rekey_answers_a_departure_the_designated_member_left_open(tmp_path: Path) -> None:
    ana, ben = _node(tmp_path, "ana"), _node(tmp_path, "ben")
    ana.create_network("Net", "coordination")
    ben.join_request(ana.create_invite("Net"), tmp_path / "ben.req")
    ana.accept_invite("Net", tmp_path / "ben.req", out=tmp_path / "ben.wl")
    ben.bundle_import(tmp_path / "ben.wl")
    ben.leave("Net")  # Ana, the remaining member, is to rotate when she sees it
    assert ana.rekey("Net") == 0  # she has not seen the leave yet
    ben.bundle_export("Net", tmp_path / "b.bundle")
    ana.bundle_import(tmp_path / "b.bundle")  # she rotates on import
    assert len(ana.state("Net").epochs) == 2
    assert ana.rekey("Net") == 0  # nothing left to answer
    ana.close()
    ben.close()


def test_refused_closes_and_positions_are_not_signed_or_stored(tmp_path: Path) -> None:
    ana, ben = _node(tmp_path, "ana"), _node(tmp_path, "ben")
    ana.create_network("Net", "coordination")
    ben.join_request(ana.create_invite("Net"), tmp_path / "ben.req")
    ana.accept_invite("Net", tmp_path / "ben.req", out=tmp_path / "ben.wl")
    ben.bundle_import(tmp_path / "ben.wl")
    ana.propose("Net", title="Later")  # a week's deadline; Ben has not voted
    ben.bundle_import(_export(ana, tmp_path))
    net_id = ben.network_id("Net")
    rows = ben.profile.store.count(net_id)
    with pytest.raises(NotAllowed, match="too early"):
        ben.close_decision("Net", "Later")
    assert ben.profile.store.count(net_id) == rows  # nothing signed, nothing stored
    ana.position("Net", "Later", "consent")
    ben.position("Net", "Later", "consent")
    ben.bundle_import(_export(ana, tmp_path))
    ben.close_decision("Net", "Later")  # everyone has a position now
    rows = ben.profile.store.count(net_id)
    with pytest.raises(NotAllowed, match="closed"):
        ben.position("Net", "Later", "objection", "too late")
    assert ben.profile.store.count(net_id) == rows
    ana.close()
    ben.close()


def _export(node: Node, tmp_path: Path) -> Path:
    path = tmp_path / f"{node.name}.bundle"
    node.bundle_export("Net", path)
    return path


def _keys_from_members_ben_does_not_know(
    tmp_path: Path, names: tuple[str, ...]
) -> tuple[Node, Node, list[Node], list[EpochKey]]:
    """Ana's network; Ben joins, then the others; each of those seals a new epoch's
    key to Ben, which reaches him before their admissions do."""
    ana, ben = _node(tmp_path, "ana"), _node(tmp_path, "ben")
    others = [_node(tmp_path, name) for name in names]
    _join_all(ana, [ben, *others], tmp_path)
    ben_net, keys = ben._net("Net"), []  # type: ignore[attr-defined]
    for other in others:
        other.bundle_import(_export(ana, tmp_path))  # they know Ben; Ben not them
        new = EpochKey.generate()
        _StoreHoldings(ben, ben_net).receive(_sealed_key(other, new))  # before admission
        keys.append(new)
    return ana, ben, others, keys


def _join_all(ana: Node, joiners: list[Node], tmp_path: Path) -> None:
    """Ana creates "Net" and admits each joiner (by invite files)."""
    ana.create_network("Net", "coordination")
    for joiner in joiners:
        _admit(ana, joiner, tmp_path)


def _admit(ana: Node, joiner: Node, tmp_path: Path) -> None:
    request, welcome = tmp_path / f"{joiner.name}.req", tmp_path / f"{joiner.name}.wl"
    joiner.join_request(ana.create_invite("Net"), request)
    ana.accept_invite("Net", request, out=welcome)
    joiner.bundle_import(welcome)


def _sealed_key(sealer: Node, key: EpochKey) -> list[bytes]:
    """``key`` sealed by ``sealer`` to every other active member it knows of."""
    net = sealer._net("Net")  # type: ignore[attr-defined]
    _op, sealed = rotate_epoch(
        sealer.identity,
        net.holdings.replica.dag,
        sealer.state("Net"),
        new_epoch=key,
        cause=net.genesis_id,
        route_tag=net.secret.route_tag,
        time=1_700_000_000_000,
    )
    return sealed


def test_a_key_sealed_by_a_member_we_do_not_know_yet_opens_once_we_do(
    tmp_path: Path,
) -> None:
    """Sync order is not causal order: a new epoch's key can reach Ben before the
    admission of the member who sealed it. It is refused then, and opened once that
    admission arrives (it used to stay refused until a restart)."""
    ana, ben, (cyd,), (new,) = _keys_from_members_ben_does_not_know(tmp_path, ("cyd",))
    ben_net = ben._net("Net")  # type: ignore[attr-defined]
    assert ben._absorb_keys(ben_net) == 0  # type: ignore[attr-defined]
    assert new.epoch_id not in ben_net.epochs
    assert ben._absorb_keys(ben_net) == 0  # type: ignore[attr-defined]  # (nothing new)
    ben.bundle_import(_export(ana, tmp_path))  # now Cyd's admission arrives
    assert cyd.identity.public.key in ben.state("Net").active_members()
    assert new.epoch_id in ben_net.epochs
    for node in (ana, ben, cyd):
        node.close()


def test_only_a_few_keys_from_unknown_signers_are_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signer is the sender's to name: anyone who can seal to Ben could fill his
    pool with keys 'from' unknown members, each opened again at every change of the
    members. Only a few are kept for another try."""
    monkeypatch.setattr(_writing, "_SIGNER_UNKNOWN_KEPT", 1)
    ana, ben, others, keys = _keys_from_members_ben_does_not_know(tmp_path, ("cyd", "dan"))
    ben_net = ben._net("Net")  # type: ignore[attr-defined]
    assert ben._absorb_keys(ben_net) == 0  # type: ignore[attr-defined]
    ben.bundle_import(_export(ana, tmp_path))  # both admissions arrive
    assert sum(key.epoch_id in ben_net.epochs for key in keys) == 1
    for node in (ana, ben, *others):
        node.close()


def test_a_member_cannot_hand_out_another_key_under_an_epochs_id(tmp_path: Path) -> None:
    """Ben seals to Cyd a key of his own under the id of Ana's new epoch, and it reaches
    Cyd first: Cyd refuses it (the id is bound to the key), then takes Ana's. (Taking
    Ben's would have left Cyd reading nothing under that epoch, and writing what no one
    else could read.)"""
    ana, ben, cyd = _node(tmp_path, "ana"), _node(tmp_path, "ben"), _node(tmp_path, "cyd")
    _join_all(ana, [ben, cyd], tmp_path)
    for node in (ben, cyd):
        node.bundle_import(_export(ana, tmp_path))  # everyone knows everyone
    real = EpochKey.generate()
    fake = EpochKey(real.epoch_id, random_bytes(32))
    cyd_net = cyd._net("Net")  # type: ignore[attr-defined]
    for sealer, key in ((ben, fake), (ana, real)):
        _StoreHoldings(cyd, cyd_net).receive(_sealed_key(sealer, key))
        learned = cyd._absorb_keys(cyd_net)  # type: ignore[attr-defined]
        assert learned == (1 if key is real else 0)
    assert cyd_net.epochs[real.epoch_id] == real
    for node in (ana, ben, cyd):
        node.close()


def test_a_sealed_key_replaces_a_wrong_one_a_welcome_gave_under_its_id(tmp_path: Path) -> None:
    """A welcome cannot check epoch ids (older epochs have random ones): an inviter could
    give a wrong key under a current epoch's id. The right key, sealed to the member
    later, replaces it (its id is its own); a wrong one never replaces a right one."""
    ana, cyd = _node(tmp_path, "ana"), _node(tmp_path, "cyd")
    _join_all(ana, [cyd], tmp_path)
    real = EpochKey.generate()
    cyd_net = cyd._net("Net")  # type: ignore[attr-defined]
    cyd_net.epochs[real.epoch_id] = EpochKey(real.epoch_id, random_bytes(32))  # the welcome's
    _StoreHoldings(cyd, cyd_net).receive(_sealed_key(ana, real))
    assert cyd._absorb_keys(cyd_net) == 1  # type: ignore[attr-defined]
    assert cyd_net.epochs[real.epoch_id] == real
    assert cyd_net.holdings.epochs[real.epoch_id] == real
    for node in (ana, cyd):
        node.close()


def test_a_key_from_a_made_up_signer_is_not_opened_again_when_members_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone can make keys and sign a payload: a key refused because its signer is not
    a member is tried again only when that signer becomes one, so made-up signers cost
    one opening each, not one per change of the members."""
    ana, ben, cyd, outsider = (_node(tmp_path, n) for n in ("ana", "ben", "cyd", "eve"))
    _join_all(ana, [ben], tmp_path)
    ben.bundle_import(_export(ana, tmp_path))
    ben_net = ben._net("Net")  # type: ignore[attr-defined]
    junk = rotate_epoch(  # Eve, no member, signs a key with her own identity, sealed to Ben
        outsider.identity,
        ben_net.holdings.replica.dag,
        ben.state("Net"),
        new_epoch=EpochKey.generate(),
        cause=ben_net.genesis_id,
        route_tag=ben_net.secret.route_tag,
        time=1_700_000_000_000,
    )[1]
    _StoreHoldings(ben, ben_net).receive(junk)
    opened: list[bytes] = []
    real = _writing.open_epoch_key

    def counting(envelope: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(envelope.envelope_id)
        return real(envelope, *args, **kwargs)

    monkeypatch.setattr(_writing, "open_epoch_key", counting)
    assert ben._absorb_keys(ben_net) == 0  # type: ignore[attr-defined]
    tried = len(opened)
    _admit(ana, cyd, tmp_path)  # the members change
    ben.bundle_import(_export(ana, tmp_path))
    assert cyd.identity.public.key in ben.state("Net").active_members()
    ben._absorb_keys(ben_net)  # type: ignore[attr-defined]
    eves = {parse_envelope(e).envelope_id for e in junk}
    assert eves <= set(opened[:tried])  # tried once ...
    assert not eves & set(opened[tried:])  # ... and not again (other envelopes came since)
    for node in (ana, ben, cyd, outsider):
        node.close()
