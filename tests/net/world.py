"""Nodes in separate homes, joined into one network by files, for the network tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from crypto import KdfParams
from p2pnet.net.service import NetworkRuntime
from p2pnet.node import Node

PASS = "correct horse battery staple"
FAST = KdfParams.insecure_for_tests()
LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)


def make_nodes(tmp: Path, names: Sequence[str], net: str = "Net") -> list[Node]:
    """The first creates a coordination network; the others join by invite files."""
    nodes = [Node.create(tmp / n.lower(), "default", PASS, name=n, kdf=FAST) for n in names]
    founder = nodes[0]
    founder.create_network(net, "coordination")
    for joiner in nodes[1:]:
        request, welcome = tmp / f"{joiner.name}.request", tmp / f"{joiner.name}.welcome"
        joiner.join_request(founder.create_invite(net), request)
        assert founder.accept_invite(net, request, out=welcome).welcome_written
        joiner.bundle_import(welcome)
    # Everyone learns of everyone's admission, as in a network that has synced since.
    everything = tmp / "everything.bundle"
    founder.bundle_export(net, everything)
    for joiner in nodes[1:]:
        joiner.bundle_import(everything)
    return nodes


def reset_logging() -> None:
    """Undo p2pnet.net.runner.setup_logging (its handlers hold node.log open)."""
    for name in ("libp2p", "multiaddr", "p2pnet.net"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            handler.close()
        logger.handlers, logger.propagate = [], True


def close_all(nodes: Sequence[Node]) -> None:
    for node in nodes:
        node.close()


@asynccontextmanager
async def running(
    nodes: Sequence[Node],
    net: str = "Net",
    *,
    links: dict[int, list[int]] | None = None,
    dial_members: bool = False,
) -> AsyncIterator[list[NetworkRuntime]]:
    """Run every node on loopback; ``links[i]`` = the nodes i dials (default: node 0);
    ``dial_members``: also dial the addresses members published in the state."""
    runtimes: list[NetworkRuntime] = []
    async with trio.open_nursery() as nursery:
        for i, node in enumerate(nodes):
            targets = (links or {}).get(i, [0] if i else [])
            peers = [runtimes[t].addresses[0] for t in targets if t < len(runtimes)]
            runtime = NetworkRuntime(
                node,
                node.network_id(net),
                listen=LOOPBACK,
                peers=peers,
                dial_members=dial_members,
            )
            await nursery.start(runtime.run)
            runtimes.append(runtime)
        # Links to nodes started later than the dialler.
        for i, targets in (links or {}).items():
            for t in targets:
                if t > i:
                    runtimes[i].add_peer(runtimes[t].addresses[0])
        try:
            yield runtimes
        finally:
            # One after the other: two libp2p hosts closing the same connection at the
            # same moment can leave a socket open (py-libp2p 0.8.1).
            with trio.CancelScope(shield=True):
                for runtime in reversed(runtimes):
                    await runtime.stop()


async def wait_for(predicate: object, timeout: float, what: str) -> float:
    """Poll ``predicate()`` every 10 ms; returns the seconds it took."""
    start = trio.current_time()
    with trio.move_on_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)
        return trio.current_time() - start
    raise AssertionError(f"{what}: not within {timeout} s")
