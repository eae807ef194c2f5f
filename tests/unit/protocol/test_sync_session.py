"""The sync session alone (protocol/sync.py): frames, message order, limits, misuse.

Frames are hand-made with ``protocol.wire.encode`` and a 4-byte big-endian length, so
each test says exactly which bytes the peer sent. Envelopes only need to be structurally
valid here: the session checks structure and route tag, the caller checks the rest.
"""

from __future__ import annotations

import struct
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import LocalProtocolError, RemoteProtocolError, wire
from protocol.reconcile import (
    MAX_PROBE,
    ChainSummary,
    Summary,
    unattributed_digest,
)
from protocol.sync import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Ack,
    Batch,
    Bye,
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

TAG = bytes(range(16))
OTHER_TAG = bytes(range(1, 17))
AUTHOR = b"A" * 8
EMPTY = Summary((), unattributed_digest([]), 0)
SUMMARY = Summary(
    (ChainSummary(b"a" * 8, 3, b"x" * 12), ChainSummary(b"b" * 8, 1, b"y" * 12)),
    unattributed_digest([b"u" * 32]),
    1,
)


def frame(*message: Any) -> bytes:
    payload = wire.encode(list(message))
    return struct.pack(">I", len(payload)) + payload


def raw_frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def envelope(tag: bytes = TAG, fill: int = 0) -> bytes:
    """A structurally valid group envelope (its ciphertext is never opened here)."""
    return wire.encode([1, tag, bytes(16), bytes([fill]) * 24, bytes(256 + 16)])


HELLO = frame(0, [PROTOCOL_VERSION])
SUMMARY_FRAME = frame(1, EMPTY.to_wire())


def drain(session: SyncSession) -> list[object]:
    """Every event available now (a Closed event ends the list). Received batches are
    compared by their envelopes only (the session may attach what it parsed)."""
    events: list[object] = []
    while True:
        event = session.next_event()
        if event is NEED_DATA:
            return events
        events.append(Batch(event.envelopes) if isinstance(event, Batch) else event)
        if isinstance(event, Closed):
            return events


def feed(session: SyncSession, data: bytes) -> list[object]:
    session.receive_data(data)
    return drain(session)


def reconciling(limits: SyncLimits | None = None) -> SyncSession:
    """A session whose peer has sent HELLO and SUMMARY."""
    session = SyncSession(TAG, limits or SyncLimits())
    assert feed(session, HELLO + SUMMARY_FRAME) == [
        Hello((PROTOCOL_VERSION,)),
        SummaryMessage(EMPTY),
    ]
    assert session.peer is PeerState.RECONCILING
    return session


def rejects(session: SyncSession, data: bytes, match: str | None = None) -> None:
    session.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        drain(session)
    assert session.peer is PeerState.CLOSED


# -- framing -------------------------------------------------------------------------------


def _conversation() -> tuple[bytes, list[object]]:
    """A whole conversation from a real sender, and the events a receiver must see."""
    sender = SyncSession(TAG)
    sender.receive_data(HELLO + SUMMARY_FRAME)
    drain(sender)
    envelopes = (envelope(fill=1), envelope(fill=2))
    sent: list[object] = [
        Hello(),
        SummaryMessage(SUMMARY),
        Unattributed(frozenset({b"p" * 12, b"q" * 12})),
        Probe(AUTHOR, ((5, b"i" * 12), (4, b"j" * 12), (2, b"k" * 12))),
        ProbeReply(AUTHOR, 3),
        Batch(envelopes),
        Done(),
        Batch(envelopes[:1]),
    ]
    stream = b"".join(sender.send(e) for e in sent)  # type: ignore[arg-type]
    # An ACK needs a batch from the receiver first: the receiver sends one below.
    stream += frame(6, 1) + sender.send(Bye("enough"))
    expected = [*sent, Ack(1), Closed(clean=True, reason="enough")]
    assert sender.counters.bytes_out == len(stream) - len(frame(6, 1))
    return stream, expected


def _receiver() -> SyncSession:
    receiver = SyncSession(TAG)
    receiver.send(Hello())
    receiver.send(SummaryMessage(EMPTY))
    receiver.send(Batch((envelope(),)))  # so that the peer's ACK is for something
    receiver.send(Probe(AUTHOR, ((1, b"i" * 12),)))  # so that the PROBE_REPLY answers one
    return receiver


def test_every_message_round_trips_through_a_peer_session() -> None:
    stream, expected = _conversation()
    receiver = _receiver()
    assert feed(receiver, stream) == expected
    assert receiver.peer is PeerState.CLOSED
    assert receiver.counters.bytes_in == len(stream)
    assert receiver.counters.envelopes_in == 3


def test_frames_split_byte_by_byte_give_the_same_events() -> None:
    stream, expected = _conversation()
    receiver = _receiver()
    events: list[object] = []
    for i in range(len(stream)):
        receiver.receive_data(stream[i : i + 1])
        got = drain(receiver)
        # An event appears exactly when the last byte of its frame arrives.
        assert all(e is not NEED_DATA for e in got)
        events += got
    assert events == expected


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_frames_split_at_arbitrary_boundaries_give_the_same_events(data: st.DataObject) -> None:
    stream, expected = _conversation()
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40)))
    receiver = _receiver()
    events: list[object] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += feed(receiver, stream[start:end])
    assert events == expected


def test_an_incomplete_frame_waits_for_more() -> None:
    session = SyncSession(TAG)
    assert session.next_event() is NEED_DATA
    assert feed(session, HELLO[:2]) == []
    assert feed(session, HELLO[2:-1]) == []
    assert feed(session, HELLO[-1:]) == [Hello((PROTOCOL_VERSION,))]
    assert session.counters.bytes_in == len(HELLO)


def test_several_frames_in_one_chunk() -> None:
    session = SyncSession(TAG)
    events = feed(session, HELLO + SUMMARY_FRAME + frame(7) + frame(8, "bye"))
    assert events == [
        Hello((PROTOCOL_VERSION,)),
        SummaryMessage(EMPTY),
        Done(),
        Closed(clean=True, reason="bye"),
    ]


# -- order and negotiation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [SUMMARY_FRAME, frame(2, []), frame(5, [envelope()]), frame(6, 1), frame(7)],
    ids=["summary", "unattributed", "batch", "ack", "done"],
)
def test_hello_comes_first(first: bytes) -> None:
    rejects(SyncSession(TAG), first, "unexpected message while the peer is await_hello")


def test_hello_only_once() -> None:
    session = SyncSession(TAG)
    assert feed(session, HELLO) == [Hello((PROTOCOL_VERSION,))]
    rejects(session, HELLO, "await_summary")


def test_summary_only_once() -> None:
    rejects(reconciling(), SUMMARY_FRAME, "reconciling")


@pytest.mark.parametrize(
    "early",
    [frame(5, [envelope()]), frame(7), frame(2, []), frame(3, AUTHOR, [[1, b"i" * 12]])],
    ids=["batch", "done", "unattributed", "probe"],
)
def test_summary_comes_before_anything_else(early: bytes) -> None:
    session = SyncSession(TAG)
    feed(session, HELLO)
    rejects(session, early, "await_summary")


def test_a_common_version_is_chosen() -> None:
    session = SyncSession(TAG)
    assert feed(session, frame(0, [7, PROTOCOL_VERSION, 9])) == [Hello((7, PROTOCOL_VERSION, 9))]
    assert session.peer is PeerState.AWAIT_SUMMARY
    ours = SyncSession(TAG).send(Hello())
    assert wire.decode(ours[4:], max_size=100) == [0, [PROTOCOL_VERSION]]


def test_no_common_version_names_both_sides() -> None:
    session = SyncSession(TAG)
    session.receive_data(frame(0, [3, 2]))
    with pytest.raises(RemoteProtocolError) as caught:
        session.next_event()
    message = str(caught.value)
    assert f"we speak {PROTOCOL_VERSION}" in message
    assert "[2, 3]" in message
    assert session.peer is PeerState.CLOSED


@pytest.mark.parametrize(
    "hello",
    [
        frame(0),
        frame(0, []),
        frame(0, [1] * 17),
        frame(0, ["1"]),
        frame(0, [True]),
        frame(0, 1),
        frame(0, [1], [1]),
    ],
    ids=["no-list", "empty", "too-many", "text", "bool", "int", "extra"],
)
def test_malformed_hello(hello: bytes) -> None:
    rejects(SyncSession(TAG), hello, "malformed HELLO")


@pytest.mark.parametrize("kind", [9, 10, 127, 255, 65535, -1])
def test_unknown_message_type(kind: int) -> None:
    rejects(reconciling(), frame(kind), f"unknown message type {kind}")


@pytest.mark.parametrize(
    "payload",
    [
        wire.encode(5),
        wire.encode([]),
        wire.encode(["hello"]),
        wire.encode([True]),
        wire.encode({"type": 0}),
        b"",
        b"\xc1",  # never used in msgpack
        b"\x91\xcd\x00\x07",  # [7] with a two-byte integer: not canonical
        b"\x91\x07\x00",  # [7] and a trailing byte
        b"\x92\x08\xcb" + bytes(8),  # a float
    ],
    ids=[
        "int",
        "empty",
        "text-type",
        "bool-type",
        "map",
        "nothing",
        "bad-byte",
        "long-int",
        "trailing",
        "float",
    ],
)
def test_malformed_messages(payload: bytes) -> None:
    rejects(reconciling(), raw_frame(payload))


def test_done_moves_the_peer_to_live_and_only_once() -> None:
    session = reconciling()
    assert feed(session, frame(7)) == [Done()]
    assert session.peer is PeerState.LIVE
    rejects(session, frame(7), "unexpected message while the peer is live")


def test_done_takes_no_arguments() -> None:
    rejects(reconciling(), frame(7, 1), "malformed DONE")


def test_batches_flow_after_done() -> None:
    session = reconciling()
    feed(session, frame(7))
    assert feed(session, frame(5, [envelope()])) == [Batch((envelope(),))]


# -- batches, acknowledgements and flow control --------------------------------------------


@pytest.mark.parametrize(
    "batch",
    [
        frame(5),
        frame(5, []),
        frame(5, "x"),
        frame(5, [b"junk"]),
        frame(5, [123]),
        frame(5, [envelope()], 1),
    ],
    ids=["no-list", "empty", "text", "junk", "int", "extra"],
)
def test_malformed_batch(batch: bytes) -> None:
    rejects(reconciling(), batch)


def test_ack_for_batches_never_sent() -> None:
    rejects(reconciling(), frame(6, 1), "ACK for batches never sent")


@pytest.mark.parametrize("count", [0, 2, -1, True])
def test_ack_must_cover_between_one_and_the_batches_in_flight(count: int) -> None:
    session = reconciling()
    session.send(Hello())
    session.send(SummaryMessage(EMPTY))
    session.send(Batch((envelope(),)))
    rejects(session, frame(6, count), "ACK for batches never sent")


def test_an_ack_returns_credit() -> None:
    session = reconciling(SyncLimits(window=2))
    session.send(Batch((envelope(),)))
    session.send(Batch((envelope(),)))
    assert not session.can_send_batch
    assert feed(session, frame(6, 2)) == [Ack(2)]
    assert session.can_send_batch
    rejects(session, frame(6, 1), "never sent")


def test_the_peer_must_respect_the_window() -> None:
    session = reconciling(SyncLimits(window=2))
    one = frame(5, [envelope()])
    assert len(feed(session, one + one)) == 2
    rejects(session, one, "flow control")


def test_acknowledging_reopens_the_window_for_the_peer() -> None:
    session = reconciling(SyncLimits(window=2))
    one = frame(5, [envelope()])
    for _ in range(5):
        assert len(feed(session, one + one)) == 2
        assert session.ack() == frame(6, 2)
    assert session.ack() == b""


def test_a_batch_over_max_batch() -> None:
    session = reconciling(SyncLimits(max_batch=3))
    assert feed(session, frame(5, [envelope()] * 3)) == [Batch((envelope(),) * 3)]
    rejects(session, frame(5, [envelope()] * 4), "at most 3 envelopes")


def test_an_envelope_of_another_network() -> None:
    rejects(reconciling(), frame(5, [envelope(), envelope(OTHER_TAG)]), "another network")


def test_an_oversized_envelope() -> None:
    big = wire.encode([1, TAG, bytes(16), bytes(24), bytes(70_000)])
    rejects(reconciling(), frame(5, [big]), "malformed envelope")


# -- unattributed ids and probes -----------------------------------------------------------


def test_unattributed_ids() -> None:
    session = reconciling()
    ids = [b"a" * 12, b"b" * 12]
    assert feed(session, frame(2, ids)) == [Unattributed(frozenset(ids))]
    rejects(session, frame(2, ids), "UNATTRIBUTED sent twice")


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([b"a" * 11], "malformed unattributed id"),
        ([b"a" * 13], "malformed unattributed id"),
        (["a" * 12], "malformed unattributed id"),
        ([b"%012d" % i for i in range(6)], "too many unattributed ids"),
    ],
    ids=["short", "long", "text", "too-many"],
)
def test_malformed_unattributed(ids: list[Any], match: str) -> None:
    rejects(reconciling(SyncLimits(max_unattributed=5)), frame(2, ids), match)


def test_probe_and_reply() -> None:
    session = reconciling()
    samples = [[9, b"i" * 12], [8, b"j" * 12]]
    assert feed(session, frame(3, AUTHOR, samples)) == [
        Probe(AUTHOR, ((9, b"i" * 12), (8, b"j" * 12)))
    ]
    rejects(session, frame(3, AUTHOR, samples), "probed twice")


@pytest.mark.parametrize(
    "probe",
    [
        frame(3, b"A" * 7, [[1, b"i" * 12]]),
        frame(3, AUTHOR),
        frame(3, AUTHOR, []),
        frame(3, AUTHOR, [[1, b"i" * 12]] * (MAX_PROBE + 1)),
        frame(3, AUTHOR, [[0, b"i" * 12]]),
        frame(3, AUTHOR, [[1 << 53, b"i" * 12]]),
        frame(3, AUTHOR, [[True, b"i" * 12]]),
        frame(3, AUTHOR, [[1, b"i" * 11]]),
        frame(3, AUTHOR, [[1, b"i" * 12, 0]]),
    ],
    ids=[
        "prefix",
        "no-samples",
        "empty",
        "too-many",
        "seq-0",
        "seq-huge",
        "seq-bool",
        "id-short",
        "sample-extra",
    ],
)
def test_malformed_probe(probe: bytes) -> None:
    rejects(reconciling(), probe)


@pytest.mark.parametrize(
    "reply",
    [
        frame(4, AUTHOR),
        frame(4, b"A" * 9, 1),
        frame(4, AUTHOR, -1),
        frame(4, AUTHOR, 1 << 53),
        frame(4, AUTHOR, "1"),
    ],
    ids=["no-seq", "prefix", "negative", "huge", "text"],
)
def test_malformed_probe_reply(reply: bytes) -> None:
    rejects(reconciling(), reply, "malformed PROBE_REPLY")


def test_a_probe_reply_for_a_probe_never_sent() -> None:
    # Regression test for a bug found and fixed here.
    # the session checks that an ACK answers batches it sent, but accepts a
    # PROBE_REPLY for an author it never probed. SyncEndpoint then decrements its count
    # of pending probes below zero and never sends DONE: a peer can stall any session.
    session = reconciling()
    rejects(session, frame(4, AUTHOR, 0))


# -- ending --------------------------------------------------------------------------------


def test_bye_closes_cleanly_with_its_reason() -> None:
    session = reconciling()
    assert feed(session, frame(8, "shutting down")) == [Closed(clean=True, reason="shutting down")]
    assert session.peer is PeerState.CLOSED
    # Whatever follows a BYE is never parsed; the close is reported as it was.
    assert feed(session, b"\xff" * 100) == [Closed(clean=True, reason="shutting down")]


def test_bye_is_accepted_before_hello() -> None:
    assert feed(SyncSession(TAG), frame(8, "no")) == [Closed(clean=True, reason="no")]


@pytest.mark.parametrize(
    ("bye", "reason"),
    [(frame(8), ""), (frame(8, 5), ""), (frame(8, "x", "y"), ""), (frame(8, "é" * 300), "é" * 200)],
    ids=["no-reason", "int", "extra", "long"],
)
def test_bye_reasons_are_text_and_bounded(bye: bytes, reason: str) -> None:
    assert feed(reconciling(), bye) == [Closed(clean=True, reason=reason)]


def test_the_stream_ending_between_frames() -> None:
    session = reconciling()
    session.receive_data(b"")
    assert drain(session) == [Closed(clean=False, reason="the stream ended")]
    assert session.peer is PeerState.CLOSED


def test_the_stream_ending_before_anything() -> None:
    session = SyncSession(TAG)
    session.receive_data(b"")
    assert drain(session) == [Closed(clean=False, reason="the stream ended")]


@pytest.mark.parametrize("cut", [1, 3, 4, 5, len(SUMMARY_FRAME) - 1])
def test_the_stream_ending_inside_a_frame(cut: int) -> None:
    session = SyncSession(TAG)
    feed(session, HELLO)
    session.receive_data(SUMMARY_FRAME[:cut])
    assert session.next_event() is NEED_DATA
    rejects(session, b"", "the stream ended inside a frame")


def test_an_unclean_end_stays_unclean() -> None:
    # Regression test for a bug found and fixed here.
    # after the stream ended without a BYE, the first next_event() reports
    # Closed(clean=False) but every later call reports Closed(clean=True), which the
    # docstring reserves for a BYE (sync.py, first lines of next_event).
    session = reconciling()
    session.receive_data(b"")
    assert session.next_event() == Closed(clean=False, reason="the stream ended")
    later = session.next_event()
    assert isinstance(later, Closed)
    assert not later.clean


# -- size limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1025, 1 << 20, (1 << 32) - 1])
def test_an_oversized_frame_is_refused_from_its_header_alone(length: int) -> None:
    session = SyncSession(TAG, SyncLimits(max_frame=1024))
    session.receive_data(struct.pack(">I", length))
    with pytest.raises(RemoteProtocolError, match=f"frame of {length} bytes exceeds"):
        session.next_event()
    assert session.peer is PeerState.CLOSED
    assert isinstance(session.next_event(), Closed)  # no further frame is parsed


def test_a_frame_of_exactly_max_frame_is_waited_for() -> None:
    session = SyncSession(TAG, SyncLimits(max_frame=1024))
    session.receive_data(struct.pack(">I", 1024) + b"\x00" * 100)
    assert session.next_event() is NEED_DATA


def test_the_default_frame_limit() -> None:
    session = SyncSession(TAG)
    session.receive_data(struct.pack(">I", SyncLimits().max_frame + 1))
    with pytest.raises(RemoteProtocolError):
        session.next_event()


def test_a_closed_session_does_not_hold_what_the_peer_keeps_sending() -> None:
    # Regression test for a bug found and fixed here.
    # after the session has failed (here on an oversized frame's header),
    # receive_data() still appends everything to the session's buffer, which is never
    # parsed again nor released: a caller that keeps reading lets a peer grow it without
    # bound (sync.py, SyncSession.receive_data).
    session = SyncSession(TAG, SyncLimits(max_frame=1024))
    chunk = struct.pack(">I", (1 << 32) - 1) + bytes(65_532)
    session.receive_data(chunk)
    with pytest.raises(RemoteProtocolError):
        session.next_event()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(128):  # 8 MiB more
            session.receive_data(bytes(65_536))
            assert isinstance(session.next_event(), Closed)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held < 1 << 20


def test_the_session_byte_cap() -> None:
    one = frame(5, [envelope()])
    limits = SyncLimits(max_session_bytes=len(HELLO) + len(SUMMARY_FRAME) + 2 * len(one))
    session = reconciling(limits)
    assert len(feed(session, one + one)) == 2
    session.ack()
    rejects(session, one, "more than a session may carry")


def test_the_session_byte_cap_counts_every_frame() -> None:
    limits = SyncLimits(max_session_bytes=len(HELLO) + len(SUMMARY_FRAME))
    session = reconciling(limits)
    rejects(session, frame(7), "more than a session may carry")


def test_the_session_envelope_cap() -> None:
    session = reconciling(SyncLimits(max_session_envelopes=3))
    assert len(feed(session, frame(5, [envelope()] * 2))) == 1
    session.ack()
    rejects(session, frame(5, [envelope()] * 2), "more envelopes than a session may carry")
    assert session.counters.envelopes_in == 4


# -- our own misuse ------------------------------------------------------------------------


def test_sending_a_batch_beyond_the_window() -> None:
    session = reconciling(SyncLimits(window=1))
    session.start(EMPTY)
    session.send(Batch((envelope(),)))
    assert not session.can_send_batch
    with pytest.raises(LocalProtocolError, match="window is full"):
        session.send(Batch((envelope(),)))
    feed(session, frame(6, 1))
    session.send(Batch((envelope(),)))


@pytest.mark.parametrize("size", [0, 4])
def test_sending_a_batch_of_the_wrong_size(size: int) -> None:
    session = SyncSession(TAG, SyncLimits(max_batch=3))
    with pytest.raises(LocalProtocolError, match="1 to max_batch"):
        session.send(Batch((envelope(),) * size))
    assert session.counters.envelopes_out == 0


@pytest.mark.parametrize(
    "event",
    [Hello(), SummaryMessage(EMPTY), Unattributed(frozenset()), Done()],
    ids=["hello", "summary", "unattributed", "done"],
)
def test_sending_a_once_only_message_twice(event: Any) -> None:
    session = SyncSession(TAG)
    session.send(event)
    with pytest.raises(LocalProtocolError, match="already sent"):
        session.send(event)


@pytest.mark.parametrize(
    "event",
    [Hello(), Done(), Batch((envelope(),)), ProbeReply(AUTHOR, 1), Bye("again")],
    ids=["hello", "done", "batch", "probe-reply", "bye"],
)
def test_sending_after_bye(event: Any) -> None:
    session = SyncSession(TAG)
    session.send(Bye("bye"))
    with pytest.raises(LocalProtocolError, match="closed"):
        session.send(event)


def test_local_errors_are_value_errors_and_not_remote_ones() -> None:
    session = SyncSession(TAG)
    session.send(Done())
    with pytest.raises(ValueError, match="DONE already sent") as caught:
        session.send(Done())
    assert not isinstance(caught.value, RemoteProtocolError)


def test_what_we_sent_is_recorded() -> None:
    session = SyncSession(TAG)
    assert not session.started
    opening = session.start(SUMMARY)
    assert session.started
    assert not session.done_sent
    session.send(Done())
    assert session.done_sent
    assert session.counters.bytes_out == len(opening) + len(frame(7))
    session.send(Batch((envelope(), envelope())))
    assert session.counters.envelopes_out == 2
    assert session.counters.envelope_bytes_out == 2 * len(envelope())
