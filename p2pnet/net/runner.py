"""Running a profile's networks: the lock, the log file, the status row, and the two
ways to run (until stopped, or one sync and out).

- **One running network node per profile**: an exclusive ``flock`` on ``node.lock`` in
  the profile directory, held while hosts run. Local writes from other processes stay
  safe without it (the store allocates ``seq`` inside a transaction); the lock keeps two
  hosts from answering for the same peer key.
- **The log** (``node.log`` in the profile directory, 0600, at most 2 x 512 KiB) gets
  py-libp2p's and the network layer's warnings, never the terminal. Every record passes
  a redaction filter first: IP addresses, multiaddrs and peer ids become placeholders,
  because a seized device must not give away who talked to whom (DESIGN.md: no
  addresses in logs).
- **The status row** (sealed in the store, like every local row) is what
  ``p2pnet peers`` shows from another process: connections, addresses, last sync.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import logging.handlers
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import trio

from p2pnet.errors import NodeError
from p2pnet.net.lan import LanDiscovery, LanNetwork, LanUnavailable
from p2pnet.net.service import NetworkRuntime, PeerStatus
from p2pnet.node import Node, now_ms
from protocol import wire

__all__ = [
    "STATUS_KEY",
    "NodeLock",
    "RunOptions",
    "SyncReport",
    "keep_status",
    "read_status",
    "redact",
    "run_until_stopped",
    "setup_logging",
    "start_lan",
    "sync_now",
]

STATUS_KEY = "net-status"
_STATUS_EVERY_S = 2.0
_LOG_BYTES = 512 * 1024

_REDACTIONS = (
    (re.compile(r"/(?:ip4|ip6|dns4|dns6|dns)/[^\s/]+(?:/(?:tcp|udp)/\d+)?"), "/<address>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\b"), "<ip6>"),
    (re.compile(r"\b(?:12D3Koo|Qm|16Uiu2)[1-9A-HJ-NP-Za-km-z]{20,}\b"), "<peer>"),
)


def redact(text: str) -> str:
    """``text`` without IP addresses, multiaddrs or peer ids."""
    for pattern, placeholder in _REDACTIONS:
        text = pattern.sub(placeholder, text)
    return text


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        record.exc_info = None  # a traceback's locals may name addresses too
        record.exc_text = None
        return True


class _PrivateLog(logging.handlers.RotatingFileHandler):
    """A rotating log whose files are created 0600, also the new one at each rollover
    (the standard handler opens it with the process's umask: often readable by all)."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def setup_logging(profile_path: Path, *, debug: bool = False) -> Path:
    """Send py-libp2p's and p2pnet.net's logs to the profile's ``node.log`` only."""
    path = profile_path / "node.log"
    handler = _PrivateLog(path, maxBytes=_LOG_BYTES, backupCount=1, encoding="utf-8")
    handler.addFilter(_Redacting())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("libp2p", "multiaddr", "p2pnet.net"):
        logger = logging.getLogger(name)
        for old in logger.handlers:
            if old is not handler:
                old.close()  # an earlier profile's log, in the same process
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    return path


class NodeLock:
    """The one-running-node lock of a profile (``with NodeLock(path):``)."""

    def __init__(self, profile_path: Path) -> None:
        self._path = profile_path / "node.lock"
        self._file: IO[bytes] | None = None

    # A running node holds the lock for as long as it runs; :meth:`held` only probes it
    # for an instant. Taking it tries again for a moment, so that a probe (``p2pnet
    # peers`` while the app starts) never makes a starting node fail.
    ATTEMPTS = 25
    PAUSE_S = 0.01

    def __enter__(self) -> NodeLock:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+b")
        for attempt in range(self.ATTEMPTS):
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt + 1 < self.ATTEMPTS:
                    time.sleep(self.PAUSE_S)
        else:
            handle.close()
            raise NodeError(
                "a p2pnet node is already running on this profile (p2pnet run or the app); "
                "it syncs already — stop it first, or use its window"
            )
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None

    @staticmethod
    def held(profile_path: Path) -> bool:
        """Whether some process holds the lock now."""
        path = profile_path / "node.lock"
        if not path.exists():
            return False
        with open(path, "rb") as handle:
            try:  # shared: two probes never stand in each other's way
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


# -- the status row ---------------------------------------------------------------------


def _write_status(node: Node, runtime: NetworkRuntime) -> None:
    peers = [
        [s.peer_id, s.member, s.address, s.connected, s.last_sync_ms, s.received, s.sent,
         s.last_error]
        for s in runtime.status.values()
    ]  # fmt: skip
    row = {"at": now_ms(), "peer_id": str(runtime.peer_id), "addresses": runtime.addresses,
           "invite_addresses": runtime.invite_addresses, "peers": peers}  # fmt: skip
    with contextlib.suppress(Exception):  # a status is never worth stopping the node
        node.profile.store.put(runtime.network_id, STATUS_KEY, wire.encode(row))


def read_status(node: Node, network_id: bytes) -> dict[str, Any] | None:
    """The last status a running node wrote for the network, or None."""
    raw = node.profile.store.get(network_id, STATUS_KEY)
    if raw is None:
        return None
    row = wire.decode(raw, max_size=1 << 20)
    row["peers"] = [
        PeerStatus(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]) for p in row["peers"]
    ]
    return dict(row)


async def keep_status(node: Node, runtimes: Mapping[bytes, NetworkRuntime]) -> None:
    """Write each running network's status row every few seconds (for ``p2pnet peers``)."""
    while True:
        for runtime in list(runtimes.values()):
            _write_status(node, runtime)
        await trio.sleep(_STATUS_EVERY_S)


# -- running ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOptions:
    listen: Sequence[str] = ("/ip4/0.0.0.0/tcp/0",)
    announce: Sequence[str] | None = None
    peers: Sequence[str] = ()
    relay: bool = False  # serve as a circuit relay for members (opt-in)
    relays: Sequence[str] = ()  # members' relays to reserve on (reachable behind NAT)


def _for_network(node: Node, network_id: bytes, relay: str) -> bool:
    """Whether ``relay`` (a multiaddr ending in ``/p2p/<peer id>``) is a member's node of
    this network, as far as the state knows (relays are per network: peer ids are)."""
    peer = relay.rsplit("/p2p/", 1)[-1]
    return any(p == peer for p, _ in node.published_peers(network_id).values())


def run_until_stopped(
    node: Node, options: RunOptions, *, say: Callable[[str], None], stop: trio.Event | None = None
) -> None:
    """Run every network of the profile until SIGINT/SIGTERM (or ``stop``); clean shutdown:
    hosts are closed one after the other, the status row is written last."""

    async def main() -> None:
        runtimes = [
            NetworkRuntime(
                node,
                network_id,
                listen=options.listen,
                announce=options.announce,
                peers=options.peers,
                relay=options.relay,
                relays=[
                    r
                    for r in options.relays
                    if len(node.network_ids()) == 1 or _for_network(node, network_id, r)
                ],
            )
            for network_id in node.network_ids()
        ]
        if not runtimes:
            raise NodeError("this profile belongs to no network yet: create or join one")
        async with trio.open_nursery() as nursery:
            for runtime in runtimes:
                await nursery.start(runtime.run)
                name = node.state(runtime.network_id.hex()).name
                say(f"{name}: listening on {', '.join(runtime.addresses)}")
            nursery.start_soon(keep_status, node, {r.network_id: r for r in runtimes})
            await start_lan(nursery, node, runtimes, say)
            if stop is None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
            else:
                await stop.wait()
            say("stopping…")
            with trio.CancelScope(shield=True):
                for runtime in runtimes:
                    await runtime.stop()
                    _write_status(node, runtime)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def start_lan(
    nursery: trio.Nursery,
    node: Node,
    runtimes: Sequence[NetworkRuntime],
    say: Callable[[str], None],
    *,
    interfaces: Sequence[str] | None = None,
) -> None:
    """LAN discovery for the networks that opted in: members found on the local network
    become dial targets of their network's runtime (membership is still proven)."""
    by_id = {r.network_id: r for r in runtimes if node.lan_discovery(r.network_id)}
    if not by_id:
        return
    networks = []
    for runtime in by_id.values():
        port = next((a.value_for_protocol("tcp") for a in runtime.host.get_addrs()), None)
        if port:
            secret = node.network_secret(runtime.network_id)
            networks.append(LanNetwork(secret, str(runtime.peer_id), int(port)))

    def found(network_id: bytes, peer_id: str, addrs: list[str]) -> None:
        runtime = by_id.get(network_id)
        if runtime is not None:
            runtime.found_on_lan(peer_id, addrs)

    discovery = LanDiscovery(networks, found, interfaces=interfaces)
    try:
        await nursery.start(discovery.run)
    except LanUnavailable as exc:
        say(f"LAN discovery is not available here: {exc}")
        return
    say(f"LAN discovery on for {len(networks)} network(s)")


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What ``p2pnet sync`` moved."""

    peers: int  # sessions that finished their initial exchange
    received: int  # new envelopes stored
    sent: int
    errors: tuple[str, ...]


def sync_now(
    node: Node,
    network_id: bytes,
    *,
    peers: Sequence[str] = (),
    once: bool = False,
    timeout_s: float = 30.0,
    say: Callable[[str], None] = lambda _: None,
) -> SyncReport:
    """Connect to ``peers`` (or the members we know), sync, and return what moved.
    ``once``: stop after the first peer that completes; otherwise wait for every target
    (within ``timeout_s``)."""

    async def main() -> SyncReport:
        runtime = NetworkRuntime(
            node,
            network_id,
            listen=("/ip4/127.0.0.1/tcp/0",) if peers else ("/ip4/0.0.0.0/tcp/0",),
            peers=peers,
            dial_members=not peers,
            publish=False,  # a one-shot sync: no addresses in the log, no invite host
            invites=False,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            targets = max(1, len(runtime.targets()))
            say(f"contacting {targets} peer(s)…")
            with trio.move_on_after(timeout_s):
                while True:
                    done = [s for s in runtime.status.values() if s.last_sync_ms is not None]
                    if done and (once or len(done) >= targets):
                        break
                    await trio.sleep(0.05)
            await trio.sleep(0.2)  # let the last pushes and acks settle
            with trio.CancelScope(shield=True):
                await runtime.stop()
            nursery.cancel_scope.cancel()
        statuses = list(runtime.status.values())
        return SyncReport(
            peers=sum(1 for s in statuses if s.last_sync_ms is not None),
            received=sum(s.received for s in statuses),
            sent=sum(s.sent for s in statuses),
            errors=tuple(s.last_error for s in statuses if s.last_error and s.last_sync_ms is None),
        )

    return trio.run(main)
