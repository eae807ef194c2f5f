"""Sync over an in-memory pipe: bytes, round trips and catch-up speed at n = 100k.

Prints one JSON object. n = 100k envelopes by 50 authors (benchmarks/_history.py),
sealed under one epoch key. Side A holds everything; side B lacks the newest d ops (in
fold order) for d in {0, 1, 100, 10000}:
- d0_bytes: everything both sides send when nothing differs;
- dN_overhead: bytes beyond the envelope bytes themselves (summaries, framing, acks);
  as a ratio of the envelope bytes for d = 100 and 10k;
- d100_round_trips_before_data: lockstep rounds before the first envelope travels;
- catchup_per_s: a node holding only the genesis catches up all 100k: envelopes per
  second of the receiving node's work (frame decoding, checks, decryption, signature
  verification, DAG and fold), as on its own machine; the sender runs in this process
  too, and catchup_both_ends_in_one_process_per_s counts both ends' time;
- raw_crypto_per_s: bare XChaCha20-Poly1305 decrypt + Ed25519 verify per envelope on
  one core, measured in the same run; catchup_ratio = catchup_per_s / raw_crypto_per_s.
  catchup_per_s checks signatures on two threads (p2pnet.verify, the node's default:
  libsodium runs without the GIL); catchup_single_thread_* check them on one.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks._ceiling import raw_open_per_s
from benchmarks._history import History
from crypto import EpochKey, random_bytes, signing_input
from p2pnet.verify import ParallelVerifier
from protocol import parse_envelope, seal_group, wire
from protocol.envelope import GroupEnvelope
from protocol.holdings import MemoryHoldings, Verifier, verify_all
from protocol.signed import VerifiedOp
from protocol.syncpeer import SyncEndpoint

EPOCH = EpochKey(b"\x01" * 16, bytes(range(32)))


def _holdings(
    history: History,
    ops: list[VerifiedOp],
    envelopes: dict[bytes, bytes],
    verifier: Verifier = verify_all,
) -> MemoryHoldings:
    held = MemoryHoldings(
        network_id=history.network_id,
        genesis_id=history.genesis.op_id,
        route_tag=history.secret.route_tag,
        epochs={EPOCH.epoch_id: EPOCH},
        verifier=verifier,
    )
    for op in ops:
        held.add_local(op, envelopes[op.op_id])
    return held


def _run(a: SyncEndpoint, b: SyncEndpoint) -> dict[str, float]:
    to_b, to_a = a.start(), b.start()
    rounds = 0
    before_data = None
    b_seconds = 0.0
    while to_a or to_b:
        if before_data is None and (
            a.session.counters.envelopes_out or b.session.counters.envelopes_out
        ):
            before_data = rounds
        rounds += 1
        t0 = time.perf_counter()
        next_a = b.receive_data(to_b) if to_b else b""
        b_seconds += time.perf_counter() - t0
        next_b = a.receive_data(to_a) if to_a else b""
        to_b, to_a = next_b, next_a
    total = a.session.counters.bytes_out + b.session.counters.bytes_out
    envelope_bytes = a.session.counters.envelope_bytes_out + b.session.counters.envelope_bytes_out
    return {
        "total": total,
        "envelope_bytes": envelope_bytes,
        "overhead": total - envelope_bytes,
        "rounds_before_data": before_data if before_data is not None else rounds,
        "rounds": rounds,
        "b_seconds": b_seconds,
    }


def main() -> None:
    history = History(100_000)
    ordered = sorted(history.ops, key=lambda o: (o.lamport, o.op_id))
    tag = history.secret.route_tag
    envelopes = {
        op.op_id: seal_group(op, epoch=EPOCH, route_tag=tag, nonce=random_bytes(24))
        for op in ordered
    }
    full = _holdings(history, ordered, envelopes)
    results: dict[str, object] = {"n": len(ordered), "authors": len(history.ids)}
    for d in (0, 1, 100, 10_000):
        behind = _holdings(history, ordered[: len(ordered) - d], envelopes)
        run = _run(SyncEndpoint(full, route_tag=tag), SyncEndpoint(behind, route_tag=tag))
        assert set(behind.by_op) == set(full.by_op)
        if d == 0:
            results["d0_bytes"] = run["total"]
        elif d == 1:
            results["d1_overhead_bytes"] = run["overhead"]
        else:
            results[f"d{d}_overhead_ratio"] = round(run["overhead"] / run["envelope_bytes"], 4)
        if d == 100:
            results["d100_round_trips_before_data"] = run["rounds_before_data"]

    def catch_up(verifier: Verifier) -> tuple[float, float]:
        rates, both_ends = [], []
        for _ in range(3):
            empty = _holdings(history, [history.genesis], envelopes, verifier)
            gc.collect()
            t0 = time.perf_counter()
            run = _run(SyncEndpoint(full, route_tag=tag), SyncEndpoint(empty, route_tag=tag))
            both_ends.append((len(ordered) - 1) / (time.perf_counter() - t0))
            rates.append((len(ordered) - 1) / run["b_seconds"])
            assert len(empty.by_op) == len(ordered)
            assert empty.replica.state() == full.replica.state()
        return sorted(rates)[1], sorted(both_ends)[1]

    single, single_both = catch_up(verify_all)
    with ParallelVerifier(2) as parallel:
        catchup, both = catch_up(parallel)

    raw_inputs = []
    for op in ordered[:20_000]:
        env = parse_envelope(envelopes[op.op_id])
        assert isinstance(env, GroupEnvelope)
        op_bytes, signature = wire.unpack(op.signed, max_size=1 << 17)
        raw_inputs.append(
            (
                env.ciphertext,
                env.aad,
                env.nonce,
                signature + signing_input(b"op", op_bytes),
                op.author,
            )
        )
    raw = sorted(raw_open_per_s(raw_inputs, EPOCH.key) for _ in range(3))[1]
    results.update(
        {
            "catchup_per_s": round(catchup),
            "raw_crypto_per_s": round(raw),
            "catchup_ratio": round(catchup / raw, 3),
            "catchup_both_ends_in_one_process_per_s": round(both),
            "catchup_single_thread_per_s": round(single),
            "catchup_single_thread_ratio": round(single / raw, 3),
            "catchup_single_thread_both_ends_per_s": round(single_both),
        }
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
