"""The node on a profile holding a realistic 100k-op network (benchmarks/_history.py).

Prints one JSON object:
- startup_rebuild_ms: Node start-up to a ready, folded state from the store alone
  (decrypting every row, no signature checked again), after the unlock (kdf_ms);
- startup_cached_ms: start-up when the state cache is fresh (the node closed cleanly and
  nothing arrived since): reads are served without folding;
- kdf_ms: the default Argon2id derivation of the unlock, measured separately;
- rss_delta_mb: resident memory (VmRSS, node ready) of a process that opened the 100k-op
  profile without a cache, minus that of one that opened an empty profile;
  rss_delta_cached_mb: the same with a fresh state cache;
- action_p50_us / action_p99_us: a local action (a position or a comment) end to end:
  validate, build, sign, seal, commit to SQLite, fold;
- cli_decision_list_s: wall time of `p2pnet --json decision list NET` as a whole process,
  with the default Argon2id unlock, on a profile whose state cache is fresh, its byte
  code cached by a first run (as for any installed Python program);
- raw_verify_per_s: Ed25519 verifications per second in this run, for scale.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._history import History
from crypto import (
    EpochKey,
    KdfParams,
    KeystoreContents,
    hash256,
    random_bytes,
    verify_signature,
)
from p2pnet.node import Node, _pack_network
from p2pnet.profile import create_profile
from protocol import seal_group, wire

PASS = "benchmark passphrase"
EPOCH_ID = b"\x01" * 16

_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from p2pnet.node import Node
from p2pnet.profile import open_profile
profile = open_profile(Path({home!r}), "default", {passphrase!r})  # the unlock (KDF)
t0 = time.perf_counter()
node = Node(profile)
states = node.networks()
ms = (time.perf_counter() - t0) * 1000
# Resident memory now, with the node ready (not the peak: Argon2id's 256 MiB during the
# unlock is released and would hide everything; not ru_maxrss: Linux carries it over
# from the parent across exec).
rss = next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]
print(ms, rss, sum(s.applied for s in states))
"""


def _build_profile(home: Path, history: History) -> None:
    profile = create_profile(home, "default", PASS)  # the default Argon2id, as users have
    secret = history.secret
    epoch = EpochKey(EPOCH_ID, bytes(range(32)))
    contents = KeystoreContents(history.ids[1], profile.keystore.contents.profile_key)
    profile.keystore.save(contents.with_network(secret))

    record = SimpleNamespace(genesis_id=history.genesis.op_id, epochs={EPOCH_ID: epoch})
    profile.store.put(secret.network_id, "network", _pack_network(record))  # type: ignore[arg-type]
    batch = []
    for op in history.ops:
        envelope = seal_group(op, epoch=epoch, route_tag=secret.route_tag, nonce=random_bytes(24))
        batch.append((hash256(envelope), envelope, op))  # as the node stores verified ops
        if len(batch) == 5000:
            profile.store.add_envelopes(secret.network_id, batch)
            batch = []
    profile.store.add_envelopes(secret.network_id, batch)
    profile.close()


def _child(home: Path) -> tuple[float, float, int]:
    root = str(Path(__file__).resolve().parents[1])
    script = _CHILD.format(root=root, home=str(home), passphrase=PASS)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600
    ).stdout.split()
    return float(out[0]), int(out[1]) / 1024, int(out[2])


def main() -> None:
    # Every child runs as an installed p2pnet does: its byte code cached after a first
    # run (the warm-up below, and the CLI's probe). This machine sets
    # PYTHONDONTWRITEBYTECODE, which had each process compile p2pnet's modules again:
    # some 60 ms of the CLI's wall time that no user pays.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    history = History(100_000)
    with tempfile.TemporaryDirectory() as tmp:
        big, empty = Path(tmp) / "big", Path(tmp) / "empty"
        _build_profile(big, history)
        create_profile(empty, "default", PASS).close()
        _child(empty)  # the warm-up: writes the byte code
        runs = [_child(big) for _ in range(3)]  # no cache: the children do not close
        startup_ms = statistics.median(r[0] for r in runs)
        rss_big = statistics.median(r[1] for r in runs)
        assert all(r[2] == len(history.ops) for r in runs)
        Node.open(big, "default", PASS).close()  # a clean close writes the cache
        cached_runs = [_child(big) for _ in range(3)]
        cached_ms = statistics.median(r[0] for r in cached_runs)
        rss_cached = statistics.median(r[1] for r in cached_runs)
        rss_empty = statistics.median(_child(empty)[1] for _ in range(3))

        node = Node.open(big, "default", PASS)
        net = "Benchmark network"
        topic = node.propose(net, title="Benchmark topic")
        actions = []
        for i in range(400):
            t0 = time.perf_counter_ns()
            if i % 2:
                node.comment(net, topic.op_id.hex()[:16], f"comment {i}")
            else:
                node.position(net, topic.op_id.hex()[:16], "consent" if i % 4 else "abstain")
            actions.append((time.perf_counter_ns() - t0) / 1000)
        node.close()
        actions.sort()

        cli = [sys.executable, "-m", "p2pnet.cli", "--home", str(big), "--json"]
        env = {**os.environ, "P2PNET_PASSPHRASE": PASS}
        listing = [*cli, "decision", "list", net]
        probe = subprocess.run(listing, capture_output=True, env=env, check=False, timeout=600)
        cli_s = None
        if probe.returncode == 0:
            walls = []
            for _ in range(3):
                t0 = time.perf_counter()
                subprocess.run(listing, capture_output=True, env=env, check=True, timeout=600)
                walls.append(time.perf_counter() - t0)
            cli_s = round(statistics.median(walls), 3)

    t0 = time.perf_counter()
    from crypto.keystore import _derive  # noqa: PLC0415 - the default KDF, timed alone

    _derive(PASS, b"s" * 16, KdfParams())
    kdf_ms = (time.perf_counter() - t0) * 1000
    sample = history.ops[:2000]
    inputs = [(o.author, *wire.unpack(o.signed, max_size=1 << 17)) for o in sample]
    t0 = time.perf_counter()
    for author, op_bytes, signature in inputs:
        verify_signature(author, b"op", op_bytes, signature)
    raw = len(inputs) / (time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "ops": len(history.ops),
                "startup_rebuild_ms": round(startup_ms),
                "startup_cached_ms": round(cached_ms),
                "rss_delta_cached_mb": round(rss_cached - rss_empty, 1),
                "kdf_ms": round(kdf_ms),
                "rss_delta_mb": round(rss_big - rss_empty, 1),
                "action_p50_us": round(statistics.median(actions), 1),
                "action_p99_us": round(actions[int(len(actions) * 0.99)], 1),
                "cli_decision_list_s": cli_s,
                "raw_verify_per_s": round(raw),
            }
        )
    )


if __name__ == "__main__":
    main()
