"""The state fold on a realistic 100k-op history (benchmarks/_history.py).

Prints one JSON object:
- full_fold_s: fold() of the decrypted ops, from nothing (DAG index, sort, apply);
- apply_p50_us / apply_p99_us: Replica.add per op, ops arriving in fold order;
- late_arrival_refold_s: one op arriving out of fold order makes the Replica fold again
  from scratch (the known cost until checkpoints land: docs/decisions.md); the first
  such op also makes the DAG's dropped version vectors again (docs/decisions.md);
- late_arrival_again_s: a second late op, right after (the vectors are packed by then);
- state_mb: memory held by the DAG index and the folded records (ops themselves excluded:
  their bodies stay in the store);
- raw_verify_per_s: Ed25519 verifications per second in this run, for scale:
  fold_ops_per_s / raw_verify_per_s says how the fold compares with checking signatures.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._history import History
from crypto import verify_signature
from protocol import sign_op, wire
from protocol.dag import Dag
from protocol.fold import Replica, _fold_indexed, fold
from protocol.signed import VerifiedOp

OPS = 100_000


def _late_op(
    history: History, ordered: list[VerifiedOp], previous: VerifiedOp | None = None
) -> VerifiedOp:
    """The silent member's first op, written on the view of 5,000 ops ago (or, after
    ``previous``, its next one, on the view of 4,000 ops ago)."""
    old_view = ordered[-5000 if previous is None else -4000]
    parents = [old_view] if previous is None else [previous, old_view]
    target = next(o for o in ordered if o.type == "proposal")
    return sign_op(
        history.ids[-1],
        net=history.network_id,
        seq=1 if previous is None else previous.seq + 1,
        lamport=max(p.lamport for p in parents) + 1,
        parents=sorted(p.op_id for p in parents),
        time=old_view.time + 1,
        type="comment",
        body={"target": target.op_id, "text": "back online"},
    )


def main() -> None:
    history = History(OPS)
    ops = history.ops
    net, genesis = history.network_id, history.genesis.op_id
    arrival = list(ops)

    fold_times = []
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        state = fold(arrival, network_id=net, genesis_id=genesis)
        fold_times.append(time.perf_counter() - t0)
    assert state is not None
    assert state.invalid == 0, state.invalid

    ordered = sorted(ops, key=lambda o: (o.lamport, o.op_id))
    replica = Replica(network_id=net, genesis_id=genesis)
    apply_us = []
    for op in ordered:
        t0 = time.perf_counter_ns()
        replica.add(op)
        apply_us.append((time.perf_counter_ns() - t0) / 1000)
    assert replica.state() == state
    apply_us.sort()

    # A late op: a member who was offline writes on top of an old view (a partition
    # healing); it sorts long before the newest ops, so the replica folds again.
    replica = Replica(network_id=net, genesis_id=genesis)
    for op in ordered:
        replica.add(op)
    late = _late_op(history, ordered)
    t0 = time.perf_counter()
    replica.add(late)
    late_s = time.perf_counter() - t0
    again = _late_op(history, ordered, late)
    t0 = time.perf_counter()
    replica.add(again)
    again_s = time.perf_counter() - t0
    assert replica.state() == fold([*arrival, late, again], network_id=net, genesis_id=genesis)

    del replica
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    dag = Dag(genesis)
    ready = dag.add_all(arrival)
    ready.sort(key=lambda o: (o.lamport, o.op_id))
    folder = _fold_indexed(dag, ready, net)
    del ready
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert folder.applied == len(ops)

    sample = random.Random(1).sample(ops, 2000)
    raw_inputs = [(o.author, *wire.unpack(o.signed, max_size=1 << 17)) for o in sample]
    t0 = time.perf_counter()
    for author, op_bytes, signature in raw_inputs:
        verify_signature(author, b"op", op_bytes, signature)
    raw_per_s = len(raw_inputs) / (time.perf_counter() - t0)
    full = statistics.median(fold_times)
    print(
        json.dumps(
            {
                "full_fold_s": round(full, 3),
                "apply_p50_us": round(statistics.median(apply_us), 1),
                "apply_p99_us": round(apply_us[int(len(apply_us) * 0.99)], 1),
                "late_arrival_refold_s": round(late_s, 3),
                "late_arrival_again_s": round(again_s, 3),
                "state_mb": round(held / 2**20, 1),
                "ops": len(ops),
                "decisions": len(state.decisions),
                "members": len(state.members),
                "fold_ops_per_s": round(len(ops) / full),
                "raw_verify_per_s": round(raw_per_s),
                "fold_vs_verify": round(len(ops) / full / raw_per_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
