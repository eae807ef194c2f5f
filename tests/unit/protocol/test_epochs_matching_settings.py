"""Key epochs, partner matching and governance settings."""

from __future__ import annotations

from typing import Any

import pytest

from crypto import BadSignature, DecryptionFailed, EpochKey, random_bytes
from protocol import RemoteProtocolError, parse_envelope, seal_to_member, wire
from protocol.envelope import SealedEnvelope
from protocol.epochs import SignerNotActive, open_epoch_key, rotate_epoch
from protocol.matching import matches
from protocol.settings import Settings, defaults_for
from protocol.vocabulary import NETWORK_TYPES
from tests.netsim import Sim, identity, key


def _network(*names: str) -> Sim:
    sim = Sim(names[0])
    for name in names[1:]:
        sim.admit(names[0], name)
    sim.sync_all()
    return sim


def _sealed(data: bytes) -> SealedEnvelope:
    env = parse_envelope(data)
    assert isinstance(env, SealedEnvelope)
    return env


def test_rotation_seals_the_new_key_to_remaining_members_only() -> None:
    sim = _network("ana", "ben", "cyd")
    leave = sim.op("cyd", "leave", {})
    sim.sync_all()
    state = sim.state("ana")
    new = EpochKey.generate()
    op, envelopes = rotate_epoch(
        identity("ana"),
        sim.replicas["ana"].dag,
        state,
        new_epoch=new,
        cause=leave.op_id,
        route_tag=sim.secret.route_tag,
        time=sim.time,
    )
    assert len(envelopes) == 1  # ben only: cyd left, ana rotated
    key_for_ben, announced = open_epoch_key(_sealed(envelopes[0]), identity("ben"), state)
    assert key_for_ben == new
    assert announced == op.op_id
    with pytest.raises(DecryptionFailed):
        open_epoch_key(_sealed(envelopes[0]), identity("cyd"), state)
    sim.replicas["ana"].add(op)
    assert sim.replicas["ana"].state().current_epoch == new.epoch_id  # type: ignore[union-attr]


def _forged_payload(
    sim: Sim, signer: str, *, tamper: bool = False, net: bytes | None = None
) -> bytes:
    new = EpochKey.generate()
    body = wire.encode(
        [
            "p2pnet-epoch-key",
            net or sim.network_id,
            new.epoch_id,
            new.key,
            b"o" * 32,
            key(signer),
        ]
    )
    signature = identity(signer).sign(b"epoch-key", body)
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    payload = wire.encode([body, signature])
    return seal_to_member(identity("ben").public, payload, route_tag=sim.secret.route_tag)


def test_another_key_under_an_epochs_id_is_refused_even_from_a_member() -> None:
    """Without the announcing op (which is sealed under the key itself), a member could
    hand out a different key under another member's epoch id; the id is bound to the
    key, so the payload is refused for good."""
    sim = _network("ana", "ben")
    state = sim.state("ben")
    honest = EpochKey.generate()
    for sealed_key in (honest, EpochKey(honest.epoch_id, b"f" * 32)):
        _, envelopes = rotate_epoch(
            identity("ana"),
            sim.replicas["ana"].dag,
            sim.state("ana"),
            new_epoch=sealed_key,
            cause=sim.genesis.op_id,
            route_tag=sim.secret.route_tag,
            time=sim.time,
        )
        if sealed_key is honest:
            opened, _ = open_epoch_key(_sealed(envelopes[0]), identity("ben"), state)
            assert opened == sealed_key
            continue
        with pytest.raises(RemoteProtocolError, match="does not match its epoch id") as refused:
            open_epoch_key(_sealed(envelopes[0]), identity("ben"), state)
        assert not isinstance(refused.value, SignerNotActive)  # for good


def test_epoch_keys_from_outsiders_or_tampered_are_refused() -> None:
    sim = _network("ana", "ben")
    state = sim.state("ben")
    with pytest.raises(SignerNotActive, match="active member"):  # (a state may change)
        open_epoch_key(_sealed(_forged_payload(sim, "eve")), identity("ben"), state)
    with pytest.raises(RemoteProtocolError, match="another network") as refused:
        open_epoch_key(_sealed(_forged_payload(sim, "ana", net=b"x" * 16)), identity("ben"), state)
    assert not isinstance(refused.value, SignerNotActive)  # for good
    with pytest.raises(BadSignature):
        open_epoch_key(_sealed(_forged_payload(sim, "ana", tamper=True)), identity("ben"), state)
    with pytest.raises(RemoteProtocolError, match="another network"):
        open_epoch_key(_sealed(_forged_payload(sim, "ana", net=b"x" * 16)), identity("ben"), state)
    garbage = seal_to_member(
        identity("ben").public, random_bytes(40), route_tag=sim.secret.route_tag
    )
    with pytest.raises(RemoteProtocolError):
        open_epoch_key(_sealed(garbage), identity("ben"), state)


def test_epoch_op_must_name_a_cause_in_its_past() -> None:
    sim = _network("ana", "ben")
    sim.op("ana", "epoch", {"epoch": b"\x02" * 16, "cause": b"z" * 32})
    assert sim.state("ana").epochs == (b"\x01" * 16,)


def test_partner_matching_pairs_needs_with_offers() -> None:
    sim = _network("ana", "ben", "cyd")
    sim.op("ana", "member_update", {"needs": ["expertise_legal", "funding"]})
    sim.op("ben", "member_update", {"offers": ["expertise_legal", "meeting_space"]})
    sim.op("cyd", "member_update", {"offers": ["expertise_legal"], "needs": ["meeting_space"]})
    sim.sync_all()
    found = {(m.member, m.capability): set(m.offered_by) for m in matches(sim.state("ana"))}
    assert found == {
        (key("ana"), "expertise_legal"): {key("ben"), key("cyd")},
        (key("ana"), "funding"): set(),
        (key("cyd"), "meeting_space"): {key("ben")},
    }
    sim.op("ben", "leave", {})
    sim.sync_all()
    found = {(m.member, m.capability): set(m.offered_by) for m in matches(sim.state("ana"))}
    assert found[(key("cyd"), "meeting_space")] == set()


@pytest.mark.parametrize("network_type", sorted(NETWORK_TYPES))
def test_settings_round_trip(network_type: str) -> None:
    settings = defaults_for(network_type)
    assert (
        Settings.from_wire(wire.decode(wire.encode(settings.to_wire()), max_size=4096)) == settings
    )


def test_defaults_follow_the_governance_table() -> None:
    assert defaults_for("information_exchange").ordinary_rule.rule == "majority"
    assert defaults_for("coordination").ordinary_rule.rule == "consent"
    assert defaults_for("joint_funding").admission == "decision"
    assert defaults_for("joint_funding").money_rule.base == "cast"
    assert defaults_for("shared_identity").ordinary_rule.rule == "consensus"
    assert defaults_for("shared_identity").admission_rule.rule == "consensus"
    for network_type in NETWORK_TYPES:
        settings = defaults_for(network_type)
        assert settings.removal_rule.base == "eligible"
        assert settings.charter_rule.threshold is not None
        assert (settings.charter_rule.threshold.num, settings.charter_rule.threshold.den) == (2, 3)
        assert settings.emergency_k == 2
    assert defaults_for("joint_action").closes_in_ms < defaults_for("coordination").closes_in_ms


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: {**w, "extra": 1},
        lambda w: {k: v for k, v in w.items() if k != "grace_ms"},
        lambda w: {**w, "emergency_k": 1},
        lambda w: {**w, "admission": "anyone"},
        lambda w: {**w, "grace_ms": -1},
        lambda w: {**w, "removal_rule": {"rule": "dictator"}},
        lambda w: {**w, "emergency_k": True},
    ],
)
def test_settings_from_wire_is_strict(mutate: Any) -> None:
    wire_form = mutate(defaults_for("coordination").to_wire())
    with pytest.raises(RemoteProtocolError):
        Settings.from_wire(dict(sorted(wire_form.items())))


def test_invalid_keys_cannot_be_admitted_so_rotation_cannot_be_blocked() -> None:
    sim = _network("ana", "ben")
    sim.op("ana", "member_admit", {"member": bytes(32), "display_name": "Zero", "kind": "media"})
    state = sim.state("ana")
    assert bytes(32) not in state.members
    leave = sim.op("ben", "leave", {})
    sim.sync_all()
    op, envelopes = rotate_epoch(
        identity("ana"),
        sim.replicas["ana"].dag,
        sim.state("ana"),
        new_epoch=EpochKey.generate(),
        cause=leave.op_id,
        route_tag=sim.secret.route_tag,
        time=sim.time,
    )
    assert op.type == "epoch"
    assert envelopes == []


def test_epoch_key_must_match_its_announcing_op() -> None:
    sim = _network("ana", "ben", "cyd")
    leave = sim.op("cyd", "leave", {})
    sim.sync_all()
    state = sim.state("ana")
    honest, envelopes = rotate_epoch(
        identity("ana"),
        sim.replicas["ana"].dag,
        state,
        new_epoch=EpochKey.generate(),
        cause=leave.op_id,
        route_tag=sim.secret.route_tag,
        time=sim.time,
    )
    key_for_ben, _ = open_epoch_key(_sealed(envelopes[0]), identity("ben"), state, epoch_op=honest)
    # Ben, also a member, sends his own key claiming Ana's epoch op.
    _, forged = rotate_epoch(
        identity("ben"),
        sim.replicas["ben"].dag,
        state,
        new_epoch=EpochKey(key_for_ben.epoch_id, b"f" * 32),
        cause=leave.op_id,
        route_tag=sim.secret.route_tag,
        time=sim.time,
    )
    with pytest.raises(RemoteProtocolError, match="does not match"):
        open_epoch_key(_sealed(forged[0]), identity("ana"), state, epoch_op=honest)
