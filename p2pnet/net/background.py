"""The node and its networks in a thread of their own, for a UI that runs its own loop.

DESIGN.md: the TUI runs on asyncio; the node's trio side runs in one dedicated thread
beside it. :class:`NodeThread` owns that thread. Every call into the :class:`Node` goes
through :meth:`NodeThread.call`, which runs it on the trio thread (the Node and its SQLite
connection are used from that thread only), and node events are handed to ``on_event``
from there (the UI passes them on to its own loop, e.g. Textual's ``post_message``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from p2pnet.errors import NodeError
from p2pnet.node import Node, NodeEvent

if TYPE_CHECKING:
    from p2pnet.net.service import NetworkRuntime

__all__ = ["NodeThread"]

T = TypeVar("T")


class NodeThread:
    """``with NodeThread(node, ...) as thread: thread.call(node.propose, ...)``."""

    def __init__(
        self,
        node: Node,
        *,
        network: bool = True,
        listen: Sequence[str] = ("/ip4/0.0.0.0/tcp/0",),
        peers: Sequence[str] = (),
        dial_members: bool = True,
        on_event: Callable[[NodeEvent], None] | None = None,
        defer_network: bool = False,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        """``defer_network``: start the hosts only when :meth:`start_networks` is called
        (a UI first shows its screen, then brings the node online)."""
        self.node = node
        self._network = network
        self._listen = tuple(listen)
        self._peers = tuple(peers)
        self._dial_members = dial_members
        self._on_event = on_event
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.runtimes: dict[bytes, NetworkRuntime] = {}
        self._deferred = defer_network
        self._say = say
        self._lock: Any = None  # p2pnet.net.runner.NodeLock while online
        # Whether the networks were put online (for a deferred start: only once the lock
        # was taken): a network created or joined later follows them, never before.
        self._online = False
        self._nursery: trio.Nursery | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> NodeThread:
        """Start the thread (and the networks' hosts); returns once they listen.

        Raises:
            NodeError: the thread could not start its networks.
        """
        self._thread = threading.Thread(target=self._main, name="p2pnet-node", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            raise NodeError(f"the network could not start: {self._error}") from None
        return self

    def __enter__(self) -> NodeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the networks and the thread (idempotent). The Node stays open."""
        if self._token is not None and self._stop is not None:
            stop = self._stop
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # reported to start(), never lost
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        unsubscribe = self.node.subscribe(self._event)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._network and not self._deferred:
                    self._online = True
                    for network_id in self.node.network_ids():
                        await self._start_network(network_id)
                self._ready.set()
                await self._stop.wait()
                with trio.CancelScope(shield=True):
                    for runtime in list(self.runtimes.values()):
                        await runtime.stop()
                nursery.cancel_scope.cancel()
        finally:
            unsubscribe()
            self._nursery = None
            if self._lock is not None:
                self._lock.__exit__()
                self._lock = None

    async def _start_network(self, network_id: bytes) -> None:
        if network_id in self.runtimes or self._nursery is None:
            return
        # py-libp2p takes a third of a second to import: a UI shows its first screen first.
        from p2pnet.net.service import NetworkRuntime  # noqa: PLC0415

        runtime = NetworkRuntime(
            self.node,
            network_id,
            listen=self._listen,
            peers=self._peers,
            dial_members=self._dial_members,
        )
        await self._nursery.start(runtime.run)
        self.runtimes[network_id] = runtime

    def start_networks(self) -> None:
        """Put the profile's networks on the network, in the background (returns at once)."""
        if not self._network or self._token is None:
            return

        def schedule() -> None:
            assert self._nursery is not None
            self._nursery.start_soon(self._bring_online)

        trio.from_thread.run_sync(schedule, trio_token=self._token)

    async def _bring_online(self) -> None:
        """As ``p2pnet run`` does: take the profile's one-node lock, start every network,
        LAN discovery for those that opted in, and the status rows ``p2pnet peers`` reads."""
        from p2pnet.net.runner import (  # noqa: PLC0415
            NodeLock,
            keep_status,
            setup_logging,
            start_lan,
        )

        assert self._nursery is not None
        # py-libp2p logs to stderr, which would draw over a terminal UI: to the node's
        # (redacted) log file instead.
        setup_logging(self.node.profile.path)
        lock = NodeLock(self.node.profile.path)
        try:  # (taking it may wait a moment: not on this loop)
            await trio.to_thread.run_sync(lock.__enter__)
        except NodeError as exc:
            self._say(f"{exc}. This window works offline.")
            return
        self._lock = lock
        self._online = True
        for network_id in self.node.network_ids():
            await self._start_network(network_id)
        self._nursery.start_soon(keep_status, self.node, self.runtimes)
        await start_lan(self._nursery, self.node, list(self.runtimes.values()), self._say)

    def _event(self, event: NodeEvent) -> None:
        if event.kind == "network" and event.network_id is not None and self._online:
            # A network joined or created while online: put it on the network too. (Not
            # while offline or not online yet, nor when another node holds the lock.)
            assert self._nursery is not None
            self._nursery.start_soon(self._start_network, event.network_id)
        if self._on_event is not None:
            self._on_event(event)

    # -- calls ---------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the node's thread and return its result (or
        raise its exception). Without a running thread, runs it here."""
        if self._token is None or self._thread in (None, threading.current_thread()):
            return fn(*args, **kwargs)  # not started, or already on the node's thread
        return trio.from_thread.run_sync(lambda: fn(*args, **kwargs), trio_token=self._token)

    def run_async(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await afn(*args)`` on the node's thread, from another thread."""
        if self._token is None:
            raise NodeError("the node's thread is not running")
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def last_sync_ms(self, network_id: bytes) -> int | None:
        """When a session of the network last finished catching up (wall clock, ms)."""
        runtime = self.runtimes.get(network_id)
        if runtime is None:
            return None
        times = [s.last_sync_ms for s in list(runtime.status.values()) if s.last_sync_ms]
        return max(times) if times else None

    def pending_outbound(self, network_id: bytes) -> int:
        """Envelopes queued for live sessions and not sent yet (flow control)."""
        runtime = self.runtimes.get(network_id)
        if runtime is None:
            return 0
        return sum(s.endpoint.pending for s in list(runtime.sessions.values()))

    def peers_online(self, network_id: bytes) -> int:
        """How many peers of the network have a live session now."""
        runtime = self.runtimes.get(network_id)
        return len(runtime.sessions) if runtime is not None else 0
