"""Real py-libp2p on loopback: connect, propagation, and a 100k-op catch-up.

Prints one JSON object:
- connect_ms: median time for a dial to give a usable connection (TCP + pnet + Noise + yamux)
  between two p2pnet hosts, over 20 fresh connections;
- propagation_p50_ms / p99: a local action on node A (a proposal: validate, sign, seal,
  commit) until it is in node B's folded state, both running in this process, 60 actions;
- propagation_10_nodes_ms: the same from one end of a line of 10 nodes (each knows only its
  neighbour: 9 hops) to the other, median of 10 actions; all 10 in this one process;
- catchup_100k_s: a member holding only the first 50 ops of a 100,026-op network
  (benchmarks/_history.py) connects to a member that holds all of them, running in
  another process, until its folded state holds them all (decrypt, verify, store, fold);
- catchup_per_s and catchup_ratio_vs_memory: that rate, and the same catch-up over the
  in-memory pipe of bench_sync measured in this run (receiving end's work, signatures on
  two threads), and the ratio between them;
- raw_open_per_s: bare libsodium decrypt + verify per envelope in this run, for scale.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import multiaddr
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from benchmarks._ceiling import raw_open_per_s
from benchmarks._history import History
from crypto import EpochKey, KdfParams, KeystoreContents, hash256, random_bytes, signing_input
from p2pnet.net.host import network_host, quiet_auto_connector
from p2pnet.net.service import NetworkRuntime
from p2pnet.node import Node, _pack_network
from p2pnet.profile import create_profile
from p2pnet.verify import ParallelVerifier
from protocol import parse_envelope, seal_group, wire
from protocol.envelope import GroupEnvelope
from protocol.holdings import MemoryHoldings
from protocol.syncpeer import SyncEndpoint

PASS = "benchmark passphrase"
EPOCH = EpochKey(b"\x01" * 16, bytes(range(32)))
LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)
FAST = KdfParams.insecure_for_tests()

_SERVER = """
import sys, trio
sys.path.insert(0, {root!r})
from p2pnet.net.service import NetworkRuntime
from p2pnet.node import Node
node = Node.open(__import__("pathlib").Path({home!r}), "default", {passphrase!r})
async def main():
    runtime = NetworkRuntime(node, node.network_ids()[0], listen=("/ip4/127.0.0.1/tcp/0",),
                             dial_members=False, invites=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        print(runtime.addresses[0], flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        await runtime.stop()
        nursery.cancel_scope.cancel()
trio.run(main)
node.close()
"""


def _profile(home: Path, history: History, who: int, envelopes: list[tuple[bytes, bytes]]) -> None:
    profile = create_profile(home, "default", PASS, kdf=FAST)
    contents = KeystoreContents(history.ids[who], profile.keystore.contents.profile_key)
    profile.keystore.save(contents.with_network(history.secret))
    record = SimpleNamespace(genesis_id=history.genesis.op_id, epochs={EPOCH.epoch_id: EPOCH})
    profile.store.put(history.network_id, "network", _pack_network(record))  # type: ignore[arg-type]
    for start in range(0, len(envelopes), 5000):
        profile.store.add_envelopes(history.network_id, envelopes[start : start + 5000])
    profile.close()


def _envelopes(history: History) -> dict[bytes, bytes]:
    tag = history.secret.route_tag
    return {
        op.op_id: seal_group(op, epoch=EPOCH, route_tag=tag, nonce=random_bytes(24))
        for op in history.ops
    }


def _in_memory_rate(history: History, envelopes: dict[bytes, bytes]) -> float:
    """Envelopes per second of the receiving end's work, over bench_sync's pipe."""
    ordered = sorted(history.ops, key=lambda o: (o.lamport, o.op_id))
    tag = history.secret.route_tag

    def held(ops: list[Any], verifier: Any = None) -> MemoryHoldings:
        holdings = MemoryHoldings(
            network_id=history.network_id,
            genesis_id=history.genesis.op_id,
            route_tag=tag,
            epochs={EPOCH.epoch_id: EPOCH},
            **({"verifier": verifier} if verifier else {}),
        )
        for op in ops:
            holdings.add_local(op, envelopes[op.op_id])
        return holdings

    full = held(ordered)
    with ParallelVerifier(2) as parallel:
        empty = held([history.genesis], parallel)
        a, b = SyncEndpoint(full, route_tag=tag), SyncEndpoint(empty, route_tag=tag)
        gc.collect()
        to_b, to_a = a.start(), b.start()
        b_seconds = 0.0
        while to_a or to_b:
            t0 = time.perf_counter()
            next_a = b.receive_data(to_b) if to_b else b""
            b_seconds += time.perf_counter() - t0
            next_b = a.receive_data(to_a) if to_a else b""
            to_b, to_a = next_b, next_a
        assert len(empty.by_op) == len(ordered)
    return (len(ordered) - 1) / b_seconds


def _catch_up(tmp: Path, history: History, envelopes: dict[bytes, bytes]) -> float:
    members = history.replica.folder.members
    active = [
        i for i, ident in enumerate(history.ids) if members[ident.public.key].status == "active"
    ]
    server_who, joiner_who = active[1], active[-1]
    rows = [(hash256(envelopes[o.op_id]), envelopes[o.op_id]) for o in history.ops]
    _profile(tmp / "server", history, server_who, rows)
    _profile(tmp / "joiner", history, joiner_who, rows[:50])
    root = str(Path(__file__).resolve().parents[1])
    script = _SERVER.format(root=root, home=str(tmp / "server"), passphrase=PASS)
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        node = Node.open(tmp / "joiner", "default", PASS)
        dag = node._networks[history.network_id].holdings.replica.dag
        total = len(history.ops)

        async def main() -> float:
            runtime = NetworkRuntime(
                node, history.network_id, listen=LOOPBACK, peers=[address],
                dial_members=False, invites=False,
            )  # fmt: skip
            async with trio.open_nursery() as nursery:
                t0 = trio.current_time()
                await nursery.start(runtime.run)
                with trio.fail_after(300):
                    while len(dag) < total:
                        await trio.sleep(0.02)
                took = trio.current_time() - t0
                await runtime.stop()
                nursery.cancel_scope.cancel()
            return took

        took = trio.run(main)
        assert node.state(history.network_id.hex()) is not None
        node.close()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)
    return took


async def _connect_ms(rounds: int = 20) -> float:
    psk = random_bytes(32)  # as every p2pnet host runs: the spec pnet layer under a PSK
    a, b = network_host(random_bytes(32), psk=psk), network_host(random_bytes(32), psk=psk)
    listen = [multiaddr.Multiaddr(LOOPBACK[0])]
    times = []
    async with a.run(listen_addrs=listen), b.run(listen_addrs=listen):
        await quiet_auto_connector(a)
        await quiet_auto_connector(b)
        info = info_from_p2p_addr(multiaddr.Multiaddr(str(b.get_addrs()[0])))
        for _ in range(rounds):
            t0 = time.perf_counter()
            await a.connect(info)
            times.append((time.perf_counter() - t0) * 1000)
            await a.disconnect(info.peer_id)
            await trio.sleep(0.02)
        await a.close()
        await b.close()
    return statistics.median(times)


def _small_network(tmp: Path, count: int) -> list[Node]:
    nodes = [
        Node.create(tmp / f"n{i}", "default", PASS, name=f"N{i}", kdf=FAST) for i in range(count)
    ]
    nodes[0].create_network("Bench", "coordination")
    for i, joiner in enumerate(nodes[1:], 1):
        request, welcome = tmp / f"{i}.request", tmp / f"{i}.welcome"
        joiner.join_request(nodes[0].create_invite("Bench"), request)
        nodes[0].accept_invite("Bench", request, out=welcome)
        joiner.bundle_import(welcome)
    everything = tmp / "everything.bundle"  # an established network: all have synced
    nodes[0].bundle_export("Bench", everything)
    for joiner in nodes[1:]:
        joiner.bundle_import(everything)
    return nodes


async def _propagation(nodes: list[Node], actions: int, gap_s: float) -> list[float]:
    """Line topology: node i dials node i - 1; actions on node 0, timed at the last."""
    runtimes: list[NetworkRuntime] = []
    net_id = nodes[0].network_id("Bench")
    last = nodes[-1]._networks[net_id].holdings.replica.dag
    times = []
    async with trio.open_nursery() as nursery:
        for i, node in enumerate(nodes):
            peers = [runtimes[i - 1].addresses[0]] if i else []
            runtime = NetworkRuntime(
                node, net_id, listen=LOOPBACK, peers=peers, dial_members=False, invites=False
            )
            await nursery.start(runtime.run)
            runtimes.append(runtime)
        with trio.fail_after(30):
            while not all(r.sessions for r in runtimes):
                await trio.sleep(0.01)
        await trio.sleep(0.5)  # the address publications settle
        for i in range(actions):
            t0 = time.perf_counter()
            op = nodes[0].propose("Bench", title=f"Topic {i}")
            with trio.fail_after(30):
                while op.op_id not in last:
                    await trio.sleep(0.0005)
            times.append((time.perf_counter() - t0) * 1000)
            await trio.sleep(gap_s)
        for runtime in reversed(runtimes):
            await runtime.stop()
        nursery.cancel_scope.cancel()
    return times


def _raw(history: History, envelopes: dict[bytes, bytes]) -> float:
    raw_inputs = []
    for op in history.ops[:20_000]:
        env = parse_envelope(envelopes[op.op_id])
        assert isinstance(env, GroupEnvelope)
        op_bytes, signature = wire.unpack(op.signed, max_size=1 << 17)
        signed = signature + signing_input(b"op", op_bytes)
        raw_inputs.append((env.ciphertext, env.aad, env.nonce, signed, op.author))
    return sorted(raw_open_per_s(raw_inputs, EPOCH.key) for _ in range(3))[1]


def main() -> None:
    results: dict[str, Any] = {}
    results["connect_ms"] = round(trio.run(_connect_ms), 2)
    with tempfile.TemporaryDirectory() as tmp:
        pair = _small_network(Path(tmp) / "pair", 2)
        times = sorted(trio.run(_propagation, pair, 60, 0.03))
        results["propagation_p50_ms"] = round(statistics.median(times), 2)
        results["propagation_p99_ms"] = round(times[int(len(times) * 0.99)], 2)
        for node in pair:
            node.close()
        line = _small_network(Path(tmp) / "line", 10)
        results["propagation_10_nodes_ms"] = round(
            statistics.median(trio.run(_propagation, line, 10, 0.2)), 2
        )
        for node in line:
            node.close()
    history = History(100_000)
    envelopes = _envelopes(history)
    with tempfile.TemporaryDirectory() as tmp:
        took = _catch_up(Path(tmp), history, envelopes)
    memory = _in_memory_rate(history, envelopes)
    rate = (len(history.ops) - 50) / took
    results.update(
        {
            "ops": len(history.ops),
            "catchup_100k_s": round(took, 2),
            "catchup_per_s": round(rate),
            "catchup_in_memory_per_s": round(memory),
            "catchup_ratio_vs_memory": round(rate / memory, 3),
            "raw_open_per_s": round(_raw(history, envelopes)),
        }
    )
    print(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
