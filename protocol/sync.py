"""The sync session: a sans-I/O state machine in the h11 shape.

Theory of operation
-------------------
Bytes in (:meth:`SyncSession.receive_data`), events out (:meth:`SyncSession.next_event`),
events in (:meth:`SyncSession.send`), bytes out. No sockets, no clocks: timeouts are the
caller's. The same session runs over a libp2p stream, an in-memory pipe, or a file.

Frames are a 4-byte big-endian length and a canonical msgpack array whose first element
names the message::

    0 HELLO        [0, [versions]]                    first, once
    1 SUMMARY      [1, summary]                       once, after HELLO
    2 UNATTRIBUTED [2, [id prefix, ...]]              at most once
    3 PROBE        [3, author prefix, [[seq, id prefix], ...]]   once per author
    4 PROBE_REPLY  [4, author prefix, common seq]
    5 BATCH        [5, [envelope, ...]]               after SUMMARY; flow-controlled
    6 ACK          [6, batches]                       credits back to the sender
    7 DONE         [7]                                the initial exchange is complete
    8 BYE          [8, reason]                        the sender is closing

Both sides send HELLO and SUMMARY at once, without waiting: one round trip after which
each side streams what the other lacks (protocol/reconcile.py). After both DONEs the
session is LIVE: new envelopes travel as further BATCHes.

States (each side's view of the *peer*)::

    AWAIT_HELLO --HELLO--> AWAIT_SUMMARY --SUMMARY--> RECONCILING --DONE--> LIVE
    any --BYE / EOF / error--> CLOSED

A peer that sent DONE may still answer our PROBEs (PROBE_REPLY and BATCHes in LIVE): it
could not know we would probe. A PROBE_REPLY for a probe we never sent is an error.

Flow control: at most ``window`` unacknowledged BATCHes in each direction. The receiver
ACKs once it has stored a batch (:meth:`SyncSession.ack`); a peer that exceeds the window
is misbehaving. Every limit in :class:`SyncLimits` is enforced on receipt and raises
:class:`RemoteProtocolError`, after which the session is CLOSED. Envelopes are checked
structurally (parse, size, route tag) here; decryption, signatures, the DAG and
authorisation are the caller's (it holds the keys), and it ends the session the same way.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any

from protocol import wire
from protocol._errors import LocalProtocolError, RemoteProtocolError
from protocol.envelope import MAX_ENVELOPE_BYTES, Envelope, parse_envelope
from protocol.reconcile import AUTHOR_PREFIX, ID_PREFIX, MAX_PROBE, Summary

__all__ = [
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Ack",
    "Batch",
    "Bye",
    "Closed",
    "Done",
    "Hello",
    "PeerState",
    "Probe",
    "ProbeReply",
    "SummaryMessage",
    "SyncLimits",
    "SyncSession",
    "Unattributed",
]

PROTOCOL_VERSION = 1
_LENGTH = struct.Struct(">I")


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """Every bound a session enforces on what it receives."""

    max_frame: int = 4 << 20
    max_batch: int = 512
    window: int = 8
    max_unattributed: int = 100_000
    max_session_bytes: int = 4 << 30
    max_session_envelopes: int = 4_000_000
    max_probes: int = 10_000


@dataclass(frozen=True, slots=True)
class Hello:
    versions: tuple[int, ...] = (PROTOCOL_VERSION,)


@dataclass(frozen=True, slots=True)
class SummaryMessage:
    summary: Summary


@dataclass(frozen=True, slots=True)
class Unattributed:
    prefixes: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class Probe:
    author_prefix: bytes
    samples: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class ProbeReply:
    author_prefix: bytes
    common: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Envelopes to send, or received (then also ``parsed``, checked for structure and
    route tag, so the receiver does not parse them twice)."""

    envelopes: tuple[bytes, ...]
    parsed: tuple[Envelope, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    batches: int


@dataclass(frozen=True, slots=True)
class Done:
    pass


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer said BYE or the stream ended (``clean`` when after a BYE)."""

    clean: bool
    reason: str = ""


Event = Hello | SummaryMessage | Unattributed | Probe | ProbeReply | Batch | Ack | Done | Closed
Outgoing = Hello | SummaryMessage | Unattributed | Probe | ProbeReply | Batch | Done | Bye


class PeerState(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_SUMMARY = "await_summary"
    RECONCILING = "reconciling"
    LIVE = "live"
    CLOSED = "closed"


@dataclass(slots=True)
class _Counters:
    bytes_in: int = 0
    bytes_out: int = 0
    envelopes_in: int = 0
    envelopes_out: int = 0
    envelope_bytes_in: int = 0
    envelope_bytes_out: int = 0


@dataclass(slots=True)
class SyncSession:
    """One side of a sync session for one network (identified by its route tag)."""

    route_tag: bytes
    limits: SyncLimits = field(default_factory=SyncLimits)
    peer: PeerState = PeerState.AWAIT_HELLO
    counters: _Counters = field(default_factory=_Counters)
    _buffer: bytearray = field(default_factory=bytearray)
    _eof: bool = False
    _unacked_out: int = 0
    _unacked_in: int = 0
    _sent: set[str] = field(default_factory=set)
    _probed: set[bytes] = field(default_factory=set)
    _probes_out: set[bytes] = field(default_factory=set)
    _closed: Closed | None = None
    _unattributed_seen: bool = False

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the stream ended."""
        if not data:
            self._eof = True
            return
        if self.peer is PeerState.CLOSED:
            return  # nothing more from this peer is read or held
        self._buffer += data

    def next_event(self) -> Event | _NeedData:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the peer broke the protocol or a limit; the session is
                closed and nothing from the offending frame should be kept.
        """
        if self.peer is PeerState.CLOSED:
            return self._closed or Closed(clean=False, reason="the session failed")
        if len(self._buffer) < _LENGTH.size:
            return self._end_or_wait()
        (length,) = _LENGTH.unpack_from(self._buffer)
        if length > self.limits.max_frame:
            self._fail(f"frame of {length} bytes exceeds the limit of {self.limits.max_frame}")
        if len(self._buffer) < _LENGTH.size + length:
            return self._end_or_wait()
        frame = bytes(self._buffer[_LENGTH.size : _LENGTH.size + length])
        del self._buffer[: _LENGTH.size + length]
        self.counters.bytes_in += _LENGTH.size + length
        if self.counters.bytes_in > self.limits.max_session_bytes:
            self._fail("the peer sent more than a session may carry")
        try:
            return self._handle(frame)
        except RemoteProtocolError:
            self.peer = PeerState.CLOSED
            self._buffer.clear()
            raise

    def _end_or_wait(self) -> Event | _NeedData:
        if not self._eof:
            return NEED_DATA
        self.peer = PeerState.CLOSED
        if self._buffer:
            self._buffer.clear()
            raise RemoteProtocolError("the stream ended inside a frame")
        self._closed = Closed(clean=False, reason="the stream ended")
        return self._closed

    def _fail(self, reason: str) -> None:
        self.peer = PeerState.CLOSED
        self._buffer.clear()
        raise RemoteProtocolError(reason)

    def _handle(self, frame: bytes) -> Event:
        message = wire.decode(
            frame, max_size=self.limits.max_frame, max_items=_max_items(self.limits)
        )
        if type(message) is not list or not message or type(message[0]) is not int:
            raise RemoteProtocolError("a message is [type, ...]")
        kind, args = message[0], message[1:]
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise RemoteProtocolError(f"unknown message type {kind}")
        return handler(self, args)

    def _expect(self, *states: PeerState) -> None:
        if self.peer not in states:
            raise RemoteProtocolError(f"unexpected message while the peer is {self.peer.value}")

    def _hello(self, args: list[Any]) -> Event:
        self._expect(PeerState.AWAIT_HELLO)
        if (
            len(args) != 1
            or type(args[0]) is not list
            or not args[0]
            or len(args[0]) > 16
            or not all(type(v) is int for v in args[0])
        ):
            raise RemoteProtocolError("malformed HELLO")
        if PROTOCOL_VERSION not in args[0]:
            raise RemoteProtocolError(
                f"no common protocol version (we speak {PROTOCOL_VERSION}, "
                f"the peer {sorted(args[0])})"
            )
        self.peer = PeerState.AWAIT_SUMMARY
        return Hello(tuple(args[0]))

    def _summary(self, args: list[Any]) -> Event:
        self._expect(PeerState.AWAIT_SUMMARY)
        if len(args) != 1:
            raise RemoteProtocolError("malformed SUMMARY")
        self.peer = PeerState.RECONCILING
        return SummaryMessage(Summary.from_wire(args[0]))

    def _unattributed(self, args: list[Any]) -> Event:
        self._expect(PeerState.RECONCILING)
        if self._unattributed_seen:
            raise RemoteProtocolError("UNATTRIBUTED sent twice")
        self._unattributed_seen = True
        if len(args) != 1 or type(args[0]) is not list:
            raise RemoteProtocolError("malformed UNATTRIBUTED")
        if len(args[0]) > self.limits.max_unattributed:
            raise RemoteProtocolError("too many unattributed ids")
        if not all(type(p) is bytes and len(p) == ID_PREFIX for p in args[0]):
            raise RemoteProtocolError("malformed unattributed id")
        return Unattributed(frozenset(args[0]))

    def _probe(self, args: list[Any]) -> Event:
        self._expect(PeerState.RECONCILING, PeerState.LIVE)
        if len(args) != 2 or type(args[0]) is not bytes or len(args[0]) != AUTHOR_PREFIX:
            raise RemoteProtocolError("malformed PROBE")
        if args[0] in self._probed:
            raise RemoteProtocolError("the same author probed twice")
        if len(self._probed) >= self.limits.max_probes:
            raise RemoteProtocolError("too many probes")
        self._probed.add(args[0])
        samples = args[1]
        if type(samples) is not list or not 0 < len(samples) <= MAX_PROBE:
            raise RemoteProtocolError("malformed PROBE samples")
        parsed = []
        for sample in samples:
            if (
                type(sample) is not list
                or len(sample) != 2
                or type(sample[0]) is not int
                or not 1 <= sample[0] < 1 << 53
                or type(sample[1]) is not bytes
                or len(sample[1]) != ID_PREFIX
            ):
                raise RemoteProtocolError("malformed PROBE sample")
            parsed.append((sample[0], sample[1]))
        return Probe(args[0], tuple(parsed))

    def _probe_reply(self, args: list[Any]) -> Event:
        self._expect(PeerState.RECONCILING, PeerState.LIVE)
        if (
            len(args) != 2
            or type(args[0]) is not bytes
            or len(args[0]) != AUTHOR_PREFIX
            or type(args[1]) is not int
            or not 0 <= args[1] < 1 << 53
        ):
            raise RemoteProtocolError("malformed PROBE_REPLY")
        if args[0] not in self._probes_out:
            raise RemoteProtocolError("PROBE_REPLY for a probe never sent")
        self._probes_out.discard(args[0])
        return ProbeReply(args[0], args[1])

    def _batch(self, args: list[Any]) -> Event:
        self._expect(PeerState.RECONCILING, PeerState.LIVE)
        if len(args) != 1 or type(args[0]) is not list or not args[0]:
            raise RemoteProtocolError("malformed BATCH")
        envelopes = args[0]
        if len(envelopes) > self.limits.max_batch:
            raise RemoteProtocolError(f"a batch holds at most {self.limits.max_batch} envelopes")
        if self._unacked_in >= self.limits.window:
            raise RemoteProtocolError("the peer ignored flow control")
        counters = self.counters
        parsed = []
        for data in envelopes:
            if type(data) is not bytes or len(data) > MAX_ENVELOPE_BYTES:
                raise RemoteProtocolError("malformed envelope in batch")
            envelope = parse_envelope(data)
            if envelope.route_tag != self.route_tag:
                raise RemoteProtocolError("envelope of another network")
            parsed.append(envelope)
            counters.envelope_bytes_in += len(data)
        counters.envelopes_in += len(envelopes)
        if counters.envelopes_in > self.limits.max_session_envelopes:
            raise RemoteProtocolError("the peer sent more envelopes than a session may carry")
        self._unacked_in += 1
        return Batch(tuple(envelopes), tuple(parsed))

    def _ack(self, args: list[Any]) -> Event:
        self._expect(PeerState.RECONCILING, PeerState.LIVE)
        if len(args) != 1 or type(args[0]) is not int or not 1 <= args[0] <= self._unacked_out:
            raise RemoteProtocolError("ACK for batches never sent")
        self._unacked_out -= args[0]
        return Ack(args[0])

    def _done(self, args: list[Any]) -> Event:
        self._expect(PeerState.RECONCILING)
        if args:
            raise RemoteProtocolError("malformed DONE")
        self.peer = PeerState.LIVE
        return Done()

    def _bye(self, args: list[Any]) -> Event:
        reason = args[0] if len(args) == 1 and type(args[0]) is str else ""
        self.peer = PeerState.CLOSED
        self._buffer.clear()
        self._closed = Closed(clean=True, reason=reason[:200])
        return self._closed

    # -- sending -----------------------------------------------------------------------

    @property
    def can_send_batch(self) -> bool:
        """Whether the flow-control window allows another BATCH now."""
        return self._unacked_out < self.limits.window

    def send(
        self, event: Hello | SummaryMessage | Unattributed | Probe | ProbeReply | Batch | Done | Bye
    ) -> bytes:
        """The bytes for one outgoing message.

        Raises:
            LocalProtocolError: out of order (DONE twice, BATCH beyond the window or
                over the batch size, a message after BYE).
        """
        if "bye" in self._sent:
            raise LocalProtocolError("the session is closed")
        message: list[Any]
        if isinstance(event, Hello):
            message = self._once("hello", [0, list(event.versions)])
        elif isinstance(event, SummaryMessage):
            message = self._once("summary", [1, event.summary.to_wire()])
        elif isinstance(event, Unattributed):
            message = self._once("unattributed", [2, sorted(event.prefixes)])
        elif isinstance(event, Probe):
            if event.author_prefix in self._probes_out:
                raise LocalProtocolError("that author is already being probed")
            self._probes_out.add(event.author_prefix)
            message = [3, event.author_prefix, [list(s) for s in event.samples]]
        elif isinstance(event, ProbeReply):
            message = [4, event.author_prefix, event.common]
        elif isinstance(event, Batch):
            if not event.envelopes or len(event.envelopes) > self.limits.max_batch:
                raise LocalProtocolError("a batch holds 1 to max_batch envelopes")
            if not self.can_send_batch:
                raise LocalProtocolError("the flow-control window is full: wait for an ACK")
            self._unacked_out += 1
            self.counters.envelopes_out += len(event.envelopes)
            self.counters.envelope_bytes_out += sum(map(len, event.envelopes))
            message = [5, list(event.envelopes)]
        elif isinstance(event, Done):
            message = self._once("done", [7])
        else:
            self._sent.add("bye")
            message = [8, event.reason[:200]]
        return self._frame(message)

    def start(self, summary: Summary) -> bytes:
        """HELLO and SUMMARY together: what each side sends first."""
        return self.send(Hello()) + self.send(SummaryMessage(summary))

    def ack(self) -> bytes:
        """Acknowledge every batch received so far (call once they are stored)."""
        if not self._unacked_in:
            return b""
        count, self._unacked_in = self._unacked_in, 0
        return self._frame([6, count])

    def _once(self, name: str, message: list[Any]) -> list[Any]:
        if name in self._sent:
            raise LocalProtocolError(f"{name.upper()} already sent")
        self._sent.add(name)
        return message

    def _frame(self, message: list[Any]) -> bytes:
        payload = wire.encode(message)
        self.counters.bytes_out += _LENGTH.size + len(payload)
        return _LENGTH.pack(len(payload)) + payload

    @property
    def done_sent(self) -> bool:
        return "done" in self._sent

    @property
    def started(self) -> bool:
        """Whether our SUMMARY went out (batches may follow once the peer's arrives)."""
        return "summary" in self._sent


def _max_items(limits: SyncLimits) -> int:
    return max(limits.max_batch, limits.max_unattributed, MAX_PROBE, 10_000) + 8


_HANDLERS = {
    0: SyncSession._hello,
    1: SyncSession._summary,
    2: SyncSession._unattributed,
    3: SyncSession._probe,
    4: SyncSession._probe_reply,
    5: SyncSession._batch,
    6: SyncSession._ack,
    7: SyncSession._done,
    8: SyncSession._bye,
}
