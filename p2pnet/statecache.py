"""The materialised state cache: a network's folded state, kept (sealed) in the store.

A node that closes writes each loaded network's :class:`NetworkState` here with the
store position it was folded up to. On the next start, if the store holds nothing newer
for that network, reads are served from the cache and the DAG is only rebuilt when
something needs it (a write, a bundle, a sync). The cache is local data: sealed under
the profile key like every local row, written only by this profile, and thrown away —
never trusted further — when it does not decode or is stale.
"""

from __future__ import annotations

from sys import intern
from types import MappingProxyType
from typing import Any

import msgpack

from protocol import ProtocolError
from protocol.fold import no_gc_pauses
from protocol.rules import RuleSpec, Tally
from protocol.settings import Settings
from protocol.state import (
    Agreement,
    AgreementVersion,
    Decision,
    Member,
    NetworkState,
    Position,
)

__all__ = ["decode_state", "encode_state"]

_VERSION = 2
_FIELDS = 17


def _position(p: Position, members: dict[bytes, int], rounds: dict[bytes, int]) -> list[Any]:
    # Members and rounds by index: a 100k-op network has 70k positions, and 32-byte keys
    # repeated in each made the cache three times larger and slower to read.
    return [members[p.member], p.stance, p.op_id, p.seq, rounds[p.round]]


def encode_state(position: int, state: NetworkState) -> bytes:
    """The cache bytes for ``state``, folded up to store ``position``."""
    members = [
        [
            m.key, m.display_name, m.kind, m.status, m.admitted_by, m.invited_by,
            list(m.offers), list(m.needs), list(m.roles), sorted(m.verified_by),
            m.peer_id, list(m.addresses), m.exit_op, m.cutoff,
        ]
        for m in state.members.values()
    ]  # fmt: skip
    index = {key: i for i, key in enumerate(state.members)}
    decisions = []
    for d in state.decisions.values():
        rounds = {r: i for i, r in enumerate(d.rounds)}
        slot = {p.op_id: i for i, p in enumerate(d.positions)}
        decisions.append([
            d.decision_id, index[d.proposer], d.title, d.kind, d.subject, d.rule.to_wire(),
            d.closes_at, sorted(index[k] for k in d.electorate), list(d.rounds),
            [_position(p, index, rounds) for p in d.positions], d.status, d.close_op,
            index[d.closed_by] if d.closed_by is not None else None,
            d.outcome.to_wire() if d.outcome else None,
            d.claimed.to_wire() if d.claimed else None,
            d.disputed, [slot[p.op_id] for p in d.counted],
        ])  # fmt: skip
    body = [
        _VERSION,
        position,
        state.network_id,
        state.genesis_id,
        state.name,
        state.network_type,
        state.purpose,
        state.settings.to_wire(),
        members,
        [[a.agreement_id, a.kind, list(a.versions), a.adopted] for a in state.agreements.values()],
        [
            [v.op_id, v.agreement, v.number, v.title, v.author, v.adopted_by, sorted(v.endorsed_by)]
            for v in state.versions.values()
        ],
        decisions,
        [[target, list(ids)] for target, ids in state.comments.items()],
        list(state.epochs),
        sorted(state.equivocators),
        state.applied,
        state.invalid,
    ]
    return msgpack.packb(body, use_bin_type=True)


def decode_state(data: bytes, *, position: int | None = None) -> tuple[int, NetworkState] | None:
    """The cached (position, state), or None if the cache is unusable — or, given the
    store ``position`` it must be folded up to, stale (then nothing past the position
    is decoded: at 100k ops a full decode takes some 0.1 s)."""
    try:
        with no_gc_pauses():
            unpacker = msgpack.Unpacker(
                raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1)
            )
            unpacker.feed(data)
            return _decode(unpacker, position)
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        msgpack.UnpackException,
        msgpack.OutOfData,
        ProtocolError,
    ):
        # A cache is an optimisation: anything odd about it means "fold from the store".
        return None


def _positions(
    rows: list[Any], keys: list[bytes], rounds: list[bytes], shared: dict[Any, Any]
) -> tuple[Position, ...]:
    share = shared.setdefault
    return tuple(
        Position(keys[r[0]], intern(r[1]), r[2], share(r[3], r[3]), rounds[r[4]]) for r in rows
    )


def _decision(r: list[Any], keys: list[bytes], shared: dict[Any, Any]) -> Decision:
    # ``shared``: one object for equal electorates and seqs, as the fold keeps them.
    positions = _positions(r[9], keys, r[8], shared)
    electorate = frozenset(keys[i] for i in r[7])
    return Decision(
        decision_id=r[0], proposer=keys[r[1]], title=r[2], kind=r[3], subject=r[4],
        rule=RuleSpec.from_wire(r[5]), closes_at=r[6],
        electorate=shared.setdefault(electorate, electorate), rounds=tuple(r[8]),
        positions=positions, status=r[10], close_op=r[11],
        closed_by=keys[r[12]] if r[12] is not None else None,
        outcome=Tally.from_wire(r[13]) if r[13] is not None else None,
        claimed=Tally.from_wire(r[14]) if r[14] is not None else None,
        disputed=r[15], counted=tuple(positions[i] for i in r[16]),
    )  # fmt: skip


def _decode(unpacker: msgpack.Unpacker, position: int | None) -> tuple[int, NetworkState] | None:
    # Read piece by piece, decisions one at a time: decoding the whole cache at once made
    # every position's row exist beside its Position (a 15 MB peak at 100k ops).
    if unpacker.read_array_header() != _FIELDS:
        return None
    body = [unpacker.unpack(), unpacker.unpack()]
    if body[0] != _VERSION or (position is not None and body[1] != position):
        return None
    body += [unpacker.unpack() for _ in range(9)]
    members = {
        r[0]: Member(
            key=r[0], display_name=r[1], kind=r[2], status=r[3], admitted_by=r[4],
            invited_by=r[5], offers=tuple(r[6]), needs=tuple(r[7]), roles=tuple(r[8]),
            verified_by=frozenset(r[9]), peer_id=r[10], addresses=tuple(r[11]),
            exit_op=r[12], cutoff=r[13],
        )
        for r in body[8]
    }  # fmt: skip
    keys = list(members)
    decisions = {}
    shared: dict[Any, Any] = {}
    for _ in range(unpacker.read_array_header()):
        decision = _decision(unpacker.unpack(), keys, shared)
        decisions[decision.decision_id] = decision
    body += [None, *(unpacker.unpack() for _ in range(5))]
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        pass
    else:
        return None  # trailing bytes: not a cache this code wrote
    state = NetworkState(
        network_id=body[2],
        genesis_id=body[3],
        name=body[4],
        network_type=body[5],
        purpose=body[6],
        settings=Settings.from_wire(body[7]),
        members=MappingProxyType(members),
        agreements=MappingProxyType(
            {r[0]: Agreement(r[0], r[1], tuple(r[2]), r[3]) for r in body[9]}
        ),
        versions=MappingProxyType(
            {
                r[0]: AgreementVersion(r[0], r[1], r[2], r[3], r[4], r[5], frozenset(r[6]))
                for r in body[10]
            }
        ),
        decisions=MappingProxyType(decisions),
        comments=MappingProxyType({r[0]: tuple(r[1]) for r in body[12]}),
        epochs=tuple(body[13]),
        equivocators=frozenset(body[14]),
        applied=body[15],
        invalid=body[16],
    )
    return body[1], state
