"""A sync session with one peer over one libp2p stream (``/p2pnet/sync/1.0.0``).

The stream carries, in each direction: a 2-byte big-endian length and a membership proof
(p2pnet.net.membership), then the frames of the sans-I/O sync session
(protocol/sync.py, driven by protocol/syncpeer.py). The proof exchange is bounded in
time and size; after it, every byte goes to :class:`SyncEndpoint`, which enforces the
protocol's limits. When the initial exchange is done the session stays open and new
envelopes are pushed as they appear (:meth:`Session.push`).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import trio

from crypto import hash256
from p2pnet.net.membership import MAX_PROOF, ProofRefused
from protocol.envelope import Envelope
from protocol.syncpeer import ForwardingHoldings, Holdings, ReceiveReport, SyncEndpoint

__all__ = ["HANDSHAKE_S", "PROTOCOL", "Session", "StreamEnded", "exchange_proofs"]

PROTOCOL = "/p2pnet/sync/1.0.0"
HANDSHAKE_S = 3.0
REMEMBERED = 8192  # envelope ids a session remembers having brought (see _Recording)
_READ = 1 << 16
_LENGTH = struct.Struct(">H")


class StreamEnded(Exception):
    """The stream closed or broke (the peer left, the connection dropped)."""


async def _read_exactly(stream: Any, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = await _read(stream, n - len(data))
        if not chunk:
            raise StreamEnded("the stream ended during the handshake")
        data += chunk
    return bytes(data)


async def _read(stream: Any, n: int) -> bytes:
    try:
        return bytes(await stream.read(n))
    except EOFError:
        return b""
    except Exception as exc:  # libp2p raises its own families for resets and closes
        raise StreamEnded(str(exc) or type(exc).__name__) from None


async def _write(stream: Any, data: bytes) -> None:
    try:
        await stream.write(data)
    except Exception as exc:
        raise StreamEnded(str(exc) or type(exc).__name__) from None


async def exchange_proofs(stream: Any, proof: bytes, check: Callable[[bytes], bytes]) -> bytes:
    """Send our proof, read and check the peer's; returns the peer's member key.

    Raises:
        ProofRefused: the peer's proof is bad or too large.
        trio.TooSlowError: the peer took longer than :data:`HANDSHAKE_S`.
        StreamEnded: the stream broke.
    """
    with trio.fail_after(HANDSHAKE_S):
        await _write(stream, _LENGTH.pack(len(proof)) + proof)
        (size,) = _LENGTH.unpack(await _read_exactly(stream, _LENGTH.size))
        if not 0 < size <= MAX_PROOF:
            raise ProofRefused("an oversized membership proof")
        return check(await _read_exactly(stream, size))


class _Recording(ForwardingHoldings):
    """The node's holdings, remembering which envelopes this session brought (so they
    are not pushed back to the peer that sent them).

    Only the last :data:`REMEMBERED` are remembered: a session lives as long as the
    connection, and a catch-up of 100k envelopes kept 100k ids (10 MB) per peer. What is
    relayed never goes back to its origin session anyway (NetworkRuntime._push skips
    it); this catches the echo of rows read back from the store soon after they were
    stored. An older one pushed back costs the peer a decryption, as any replay does.
    """

    def __init__(self, inner: Holdings) -> None:
        self._inner = inner
        self.received: set[bytes] = set()  # envelope ids, the last REMEMBERED
        self._order: deque[bytes] = deque()
        self.new = 0
        # What each receive stored, and where in the store: (envelopes, (before, after)).
        self.batches: list[tuple[list[bytes], tuple[int, int]]] = []

    def _holdings(self) -> Holdings:
        return self._inner

    def receive(self, envelopes: Sequence[bytes | Envelope]) -> ReceiveReport:
        try:
            report = self._inner.receive(envelopes)
        finally:
            kept: list[bytes] = getattr(self._inner, "kept", [])
            written: tuple[int, int] = getattr(self._inner, "written", (0, 0))
            if kept:
                self.batches.append((list(kept), written))
        received, order = self.received, self._order
        for item in envelopes:
            envelope_id = hash256(item) if isinstance(item, bytes) else item.envelope_id
            if envelope_id not in received:
                received.add(envelope_id)
                order.append(envelope_id)
        while len(order) > REMEMBERED:
            received.discard(order.popleft())
        self.new += report.new
        return report


class Session:
    """One peer's live session. :meth:`run` until the stream ends; :meth:`push` from
    other tasks of the same trio loop."""

    def __init__(
        self,
        stream: Any,
        holdings: Holdings,
        *,
        route_tag: bytes,
        member: bytes,
        initiator: bytes,
        on_received: Callable[[Session, list[tuple[list[bytes], tuple[int, int]]]], None],
    ) -> None:
        self.stream = stream
        self.member = member
        self.initiator = initiator  # the peer id (bytes) that opened the stream
        self._holdings = _Recording(holdings)
        self.endpoint = SyncEndpoint(self._holdings, route_tag=route_tag)
        self._on_received = on_received
        self._lock = trio.Lock()
        self.caught_up = trio.Event()

    @property
    def received_new(self) -> int:
        """New envelopes this session brought (stored)."""
        return self._holdings.new

    @property
    def sent(self) -> int:
        """Envelopes sent to the peer, the initial exchange and live pushes together."""
        return int(self.endpoint.session.counters.envelopes_out)

    async def _send(self, data: bytes) -> None:
        if data:
            async with self._lock:
                await _write(self.stream, data)

    async def run(self) -> None:
        """Exchange until the stream ends.

        Raises:
            RemoteProtocolError: the peer broke the protocol (the caller scores it).
            StreamEnded: the stream broke.
        """
        await self._send(self.endpoint.start())
        while True:
            data = await _read(self.stream, _READ)
            try:
                out = self.endpoint.receive_data(data)
            finally:
                batches, self._holdings.batches = self._holdings.batches, []
                if batches:
                    self._on_received(self, batches)
            await self._send(out)
            if self.endpoint.finished:
                self.caught_up.set()
            if not data or self.endpoint.closed:
                return

    async def push(self, envelopes: Sequence[bytes]) -> None:
        """Send new envelopes the peer did not bring itself."""
        received = self._holdings.received
        fresh = [e for e in envelopes if hash256(e) not in received]
        if fresh and not self.endpoint.closed:
            await self._send(self.endpoint.push(fresh))

    async def close(self) -> None:
        """End the session (never raises)."""
        try:
            with trio.move_on_after(1):
                await self.stream.reset()
        except Exception:  # closing a broken stream must not fail
            return
