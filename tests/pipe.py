"""Helpers to run two sync endpoints against each other over an in-memory pipe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crypto import EpochKey, random_bytes
from protocol import seal_group
from protocol.holdings import MemoryHoldings
from protocol.signed import VerifiedOp
from protocol.syncpeer import SyncEndpoint
from tests.netsim import Sim

EPOCH = EpochKey(b"\x01" * 16, bytes(range(32)))


def seal(sim: Sim, op: VerifiedOp, epoch: EpochKey = EPOCH) -> bytes:
    return seal_group(op, epoch=epoch, route_tag=sim.secret.route_tag, nonce=random_bytes(24))


def holdings(sim: Sim, ops: Iterable[VerifiedOp], envelopes: dict[bytes, bytes]) -> MemoryHoldings:
    held = MemoryHoldings(
        network_id=sim.network_id,
        genesis_id=sim.genesis.op_id,
        route_tag=sim.secret.route_tag,
        epochs={EPOCH.epoch_id: EPOCH},
    )
    for op in sorted(ops, key=lambda o: (o.lamport, o.op_id)):
        held.add_local(op, envelopes[op.op_id])
    return held


@dataclass
class PipeResult:
    rounds_before_data: int
    rounds: int
    bytes_a: int
    bytes_b: int
    envelope_bytes: int


def run(a: SyncEndpoint, b: SyncEndpoint, *, max_rounds: int = 1000) -> PipeResult:
    """Lockstep rounds: each side receives what the other sent in the previous round."""
    to_b, to_a = a.start(), b.start()
    rounds = 0
    first_data = None
    while to_a or to_b:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError("sync did not converge")
        if first_data is None and (
            a.session.counters.envelopes_out or b.session.counters.envelopes_out
        ):
            first_data = rounds - 1
        next_a = b.receive_data(to_b) if to_b else b""
        next_b = a.receive_data(to_a) if to_a else b""
        to_b, to_a = next_b, next_a
    envelope_bytes = a.session.counters.envelope_bytes_out + b.session.counters.envelope_bytes_out
    return PipeResult(
        rounds_before_data=first_data if first_data is not None else rounds,
        rounds=rounds,
        bytes_a=a.session.counters.bytes_out,
        bytes_b=b.session.counters.bytes_out,
        envelope_bytes=envelope_bytes,
    )
