"""One side of a sync: the session (protocol/sync.py) driven by what a node holds.

Theory of operation
-------------------
:class:`SyncEndpoint` is still sans-I/O: bytes from the peer go into
:meth:`SyncEndpoint.receive_data`, which returns the bytes to send back. It reacts to the
peer's summary by queueing every op the peer lacks (parents first: fold order), probing
forked chains and exchanging unattributed ids when the digests differ; it streams the
queue in batches within the flow-control window; it hands received batches to
:meth:`Holdings.receive`, which validates and stores them (or raises
:class:`RemoteProtocolError`, ending the session), and acknowledges them. Once the queue
is empty and no probe or unattributed exchange is outstanding it sends DONE; when both
sides are done it checks that the peer sent everything its summary claimed, and goes
LIVE, where :meth:`SyncEndpoint.push` sends new envelopes as they appear.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from crypto import hash256
from protocol._errors import RemoteProtocolError
from protocol.envelope import Envelope
from protocol.reconcile import (
    AUTHOR_PREFIX,
    ID_PREFIX,
    ChainIndex,
    Summary,
    build_summary,
    common_seq,
    probe_samples,
    to_send,
    unattributed_digest,
    unclaimed_gaps,
)
from protocol.sync import (
    NEED_DATA,
    Ack,
    Batch,
    Closed,
    Done,
    Hello,
    PeerState,
    Probe,
    ProbeReply,
    SummaryMessage,
    SyncLimits,
    SyncSession,
    Unattributed,
)

__all__ = ["ForwardingHoldings", "Holdings", "ReceiveReport", "SyncEndpoint"]

_BATCH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ReceiveReport:
    """What became of a received batch."""

    new: int
    duplicates: int
    unattributed: int
    rejected: int


class Holdings(Protocol):
    """What a node holds of one network, as sync sees it."""

    def chain_index(self) -> ChainIndex: ...

    def envelope_of(self, op_id: bytes) -> bytes: ...

    def order_key(self, op_id: bytes) -> tuple[int, bytes]: ...

    def unattributed(self) -> Mapping[bytes, bytes]:
        """Envelope id -> envelope, for envelopes not attributable to an op."""
        ...

    def receive(self, envelopes: Sequence[bytes | Envelope]) -> ReceiveReport:
        """Validate and store a batch, all or nothing.

        Raises:
            RemoteProtocolError: an envelope fails validation; nothing of the batch is kept.
        """
        ...


class ForwardingHoldings:
    """The reads of :class:`Holdings`, passed on to the holdings :meth:`_holdings`
    returns: the base of wrappers that add to what ``receive`` does."""

    def _holdings(self) -> Holdings:
        raise NotImplementedError

    def chain_index(self) -> ChainIndex:
        return self._holdings().chain_index()

    def envelope_of(self, op_id: bytes) -> bytes:
        return self._holdings().envelope_of(op_id)

    def order_key(self, op_id: bytes) -> tuple[int, bytes]:
        return self._holdings().order_key(op_id)

    def unattributed(self) -> Mapping[bytes, bytes]:
        return self._holdings().unattributed()


@dataclass(frozen=True, slots=True)
class _Op:
    op_id: bytes


class SyncEndpoint:
    """Drives one :class:`SyncSession` from a node's :class:`Holdings`."""

    def __init__(
        self,
        holdings: Holdings,
        *,
        route_tag: bytes,
        limits: SyncLimits | None = None,
        batch_bytes: int = _BATCH_BYTES,
    ) -> None:
        self.holdings = holdings
        self.session = SyncSession(route_tag, limits or SyncLimits())
        self._batch_bytes = min(batch_bytes, self.session.limits.max_frame // 2)
        # Envelopes to send, in order; ops as their id until they are sent (a node reads
        # their envelopes from its store as the window opens, not 100k at once).
        self._queue: deque[bytes | _Op] = deque()
        self._queued: set[bytes] = set()  # op ids and envelope ids queued or sent
        self._pending_probes = 0
        self._forked: set[bytes] = set()  # author prefixes probed, either way
        self._awaiting_unattributed = False
        self._peer_summary: Summary | None = None
        self._local_summary: Summary | None = None
        self.received = ReceiveReport(0, 0, 0, 0)
        self.live = False

    # -- the session's lifecycle ---------------------------------------------------------

    def start(self) -> bytes:
        """The opening bytes (HELLO and our SUMMARY)."""
        unattributed = self.holdings.unattributed()
        self._local_summary = build_summary(self.holdings.chain_index(), unattributed.keys())
        return self.session.start(self._local_summary)

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes from the peer (``b""`` at end of stream); returns bytes to send.

        Raises:
            RemoteProtocolError: the peer misbehaved; the session is over.
        """
        self.session.receive_data(data)
        out = bytearray()
        while True:
            event = self.session.next_event()
            if event is NEED_DATA or isinstance(event, Closed):
                break
            out += self._on(event)
        out += self._pump()
        return bytes(out)

    def push(self, envelopes: Sequence[bytes]) -> bytes:
        """Queue new local or newly received envelopes for the peer (live mode)."""
        for data in envelopes:
            self._enqueue_envelope(data, hash256(data))
        return self._pump()

    @property
    def closed(self) -> bool:
        return self.session.peer is PeerState.CLOSED

    @property
    def pending(self) -> int:
        """Envelopes (or ops) queued for the peer and not sent yet."""
        return len(self._queue)

    @property
    def finished(self) -> bool:
        """Both sides have sent everything the initial exchange called for."""
        return self.live and not self._queue

    # -- events --------------------------------------------------------------------------

    def _on(self, event: object) -> bytes:
        if isinstance(event, SummaryMessage):
            return self._plan(event.summary)
        if isinstance(event, Unattributed):
            self._awaiting_unattributed = False
            for envelope_id, data in sorted(self.holdings.unattributed().items()):
                if envelope_id[:ID_PREFIX] not in event.prefixes:
                    self._enqueue_envelope(data, envelope_id)
            return b""
        if isinstance(event, Probe):
            self._forked.add(event.author_prefix)
            author = self._author(event.author_prefix)
            common = 0 if author is None else common_seq(self._index(), author, event.samples)
            if author is not None:
                self._enqueue_ops(self._index().ops_above(author, common))
            return self.session.send(ProbeReply(event.author_prefix, common))
        if isinstance(event, ProbeReply):
            self._pending_probes -= 1
            author = self._author(event.author_prefix)
            if author is not None:
                self._enqueue_ops(self._index().ops_above(author, event.common))
            return b""
        if isinstance(event, Batch):
            try:
                report = self.holdings.receive(event.parsed or event.envelopes)
            except RemoteProtocolError:
                self.session.peer = PeerState.CLOSED
                raise
            self.received = ReceiveReport(
                self.received.new + report.new,
                self.received.duplicates + report.duplicates,
                self.received.unattributed + report.unattributed,
                self.received.rejected + report.rejected,
            )
            return self.session.ack()
        if isinstance(event, Done):
            return self._check_claims()
        if isinstance(event, Ack | Hello):
            return b""
        raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover

    def _plan(self, peer: Summary) -> bytes:
        self._peer_summary = peer
        index = self._index()
        local = self._local_summary
        digest = local.unattributed_digest if local else unattributed_digest([])
        plan = to_send(index, peer, digest)
        self._enqueue_ops(plan.op_ids)
        out = bytearray()
        if plan.exchange_unattributed:
            self._awaiting_unattributed = True
            prefixes = frozenset(e[:ID_PREFIX] for e in self.holdings.unattributed())
            out += self.session.send(Unattributed(prefixes))
        for author in plan.probes:
            below = next(
                (c.seq for c in peer.chains if c.author_prefix == author[:AUTHOR_PREFIX]), 1
            )
            samples = probe_samples(index, author, below)
            if samples:
                self._pending_probes += 1
                self._forked.add(author[:AUTHOR_PREFIX])
                out += self.session.send(Probe(author[:AUTHOR_PREFIX], tuple(samples)))
        return bytes(out)

    def _check_claims(self) -> bytes:
        """At the peer's DONE: it must have sent what its summary claimed. Forked authors
        are exempt (their branches may still be arriving after a probe), and so are as
        many ops as we received but could not attribute (an epoch we lack the key for)."""
        if self._peer_summary is None:
            return b""
        gaps = [
            g for g in unclaimed_gaps(self._index(), self._peer_summary) if g[0] not in self._forked
        ]
        missing = sum(claimed - have for _, claimed, have in gaps)
        if missing > self.received.unattributed:
            prefix, claimed, have = gaps[0]
            self.session.peer = PeerState.CLOSED
            raise RemoteProtocolError(
                f"the peer claimed ops up to {claimed} by {prefix.hex()} but we hold "
                f"{have} after it finished ({len(gaps)} author(s) short)"
            )
        return b""

    # -- queueing and sending ------------------------------------------------------------

    def _index(self) -> ChainIndex:
        return self.holdings.chain_index()

    def _author(self, prefix: bytes) -> bytes | None:
        matches = [a for a, _, _ in self._index().chains() if a[:AUTHOR_PREFIX] == prefix]
        return matches[0] if len(matches) == 1 else None

    def _enqueue_ops(self, op_ids: Sequence[bytes]) -> None:
        fresh = [o for o in op_ids if o not in self._queued]
        fresh.sort(key=self.holdings.order_key)
        for op_id in fresh:
            self._queued.add(op_id)
            self._queue.append(_Op(op_id))

    def _enqueue_envelope(self, data: bytes, envelope_id: bytes | None = None) -> None:
        key = envelope_id if envelope_id is not None else data
        if key not in self._queued:
            self._queued.add(key)
            self._queue.append(data)

    def _pump(self) -> bytes:
        session = self.session
        if session.peer is PeerState.CLOSED or not session.started:
            return b""
        if session.peer in (PeerState.AWAIT_HELLO, PeerState.AWAIT_SUMMARY):
            return b""
        out = bytearray()
        limit = session.limits.max_batch
        while self._queue and session.can_send_batch:
            batch: list[bytes] = []
            size = 0
            while self._queue and len(batch) < limit:
                head = self._queue.popleft()
                data = head if isinstance(head, bytes) else self.holdings.envelope_of(head.op_id)
                if batch and size + len(data) > self._batch_bytes:
                    self._queue.appendleft(data)
                    break
                batch.append(data)
                size += len(data)
            out += session.send(Batch(tuple(batch)))
        if (
            not self._queue
            and not session.done_sent
            and self._peer_summary is not None
            and self._pending_probes == 0
            and not self._awaiting_unattributed
        ):
            out += session.send(Done())
        if session.done_sent and session.peer is PeerState.LIVE:
            self.live = True
        return bytes(out)
