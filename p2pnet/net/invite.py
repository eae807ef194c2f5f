"""``/p2pnet/invite/1.0.0``: a joiner asks the inviter's running node, online.

The invite code carries the inviter's *invite host* addresses: a second libp2p host of
the inviter's node for that network, with its own peer key and **no PSK** (the joiner does
not know the network secret yet), that speaks only this protocol. Nothing it answers is
readable without what the code proves: the request is a sealed box to the inviter
(protocol/invite.py), the welcome a sealed box to the joiner.

Wire format, one exchange per stream::

    joiner  -> inviter   u32 length | join request (at most 8 KiB)
    inviter -> joiner    u8 status | u32 length | payload
        status 0 WELCOME  payload = the welcome file (protocol/invite.py)
        status 1 PENDING  payload = UTF-8 note (an admission decision is open)
        status 2 REFUSED  payload = UTF-8 reason (used, expired, not for this network…)

A joiner whose admission is pending asks again later with the same request; the
inviter's node answers with the welcome once the decision passed. The joiner dials from a
fresh random peer key each time, so attempts are not linkable to each other.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from crypto import random_bytes
from p2pnet.errors import NodeError
from p2pnet.net.host import network_host, quiet_auto_connector
from p2pnet.net.session import StreamEnded, _read_exactly, _write
from p2pnet.node import Node
from protocol import RemoteProtocolError
from protocol.invite import InviteCode

__all__ = [
    "INVITE_PROTOCOL",
    "JoinOutcome",
    "ask_once",
    "ask_to_join",
    "invite_handler",
    "join_async",
]

log = logging.getLogger("p2pnet.net")

INVITE_PROTOCOL = "/p2pnet/invite/1.0.0"
MAX_REQUEST = 8192
MAX_WELCOME = 1 << 30
MAX_NOTE = 512
REQUEST_S = 10.0
WELCOME, PENDING, REFUSED = 0, 1, 2
_U32 = struct.Struct(">I")


def invite_handler(node: Node, network_id: bytes) -> Callable[[Any], Any]:
    """The stream handler of an invite host: answer one join request per stream."""
    busy = trio.Semaphore(4)  # join requests cost a sealed-box open each: a few at a time

    async def handle(stream: Any) -> None:
        try:
            if busy.value == 0:
                await _answer(stream, REFUSED, b"busy: try again in a minute")
                return
            async with busy:
                with trio.fail_after(REQUEST_S):
                    (size,) = _U32.unpack(await _read_exactly(stream, _U32.size))
                    if not 0 < size <= MAX_REQUEST:
                        await _answer(stream, REFUSED, b"that is not a join request")
                        return
                    request = await _read_exactly(stream, size)
                status, payload = _decide(node, network_id, request)
                await _answer(stream, status, payload)
        except (trio.TooSlowError, StreamEnded):
            pass
        finally:
            with trio.move_on_after(1):
                try:
                    await stream.close()
                except Exception:  # already gone
                    return

    return handle


def _decide(node: Node, network_id: bytes, request: bytes) -> tuple[int, bytes]:
    try:
        _result, welcome = node.accept_request(network_id.hex(), request)
    except NodeError as exc:  # the reasons meant for a joiner (used, expired, …)
        return REFUSED, str(exc).encode("utf-8")[:MAX_NOTE]
    except Exception as exc:  # nothing of our own state for an unauthenticated party
        log.error("an invite request failed: %s", type(exc).__name__)
        return REFUSED, b"the inviter's node could not answer; try again later"
    if welcome is not None:
        return WELCOME, welcome
    return PENDING, b"an admission decision is open; the members are deciding"


async def _answer(stream: Any, status: int, payload: bytes) -> None:
    await _write(stream, bytes([status]) + _U32.pack(len(payload)) + payload)


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    status: str  # "welcome", "pending" or "refused"
    note: str = ""
    welcome: bytes | None = None


async def ask_once(
    code: InviteCode,
    request: bytes,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> JoinOutcome:
    """Ask each of the inviter's addresses in turn; the first answer counts.

    Raises:
        NodeError: no address in the code, or none answered.
    """
    if not code.addresses:
        raise NodeError(
            "this invite code has no address to ask online: ask the inviter to run p2pnet "
            "and make a new code, or use join --request FILE and carry the files"
        )
    host = network_host(random_bytes(32))  # a fresh peer id each attempt: unlinkable
    errors: list[str] = []
    async with host.run(listen_addrs=[]):
        await quiet_auto_connector(host)
        try:
            for address in code.addresses:
                try:
                    return await _ask(host, address, request, progress)
                except (OSError, StreamEnded, trio.TooSlowError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}")
                except Exception as exc:  # libp2p's dial errors have no common base
                    errors.append(f"{type(exc).__name__}")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                await host.close()
    raise NodeError(
        f"the inviter's node did not answer ({', '.join(sorted(set(errors)))}): is it running?"
    )


async def _ask(
    host: Any,
    address: str,
    request: bytes,
    progress: Callable[[int, int], None] | None,
) -> JoinOutcome:
    info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    with trio.fail_after(REQUEST_S):
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [TProtocol(INVITE_PROTOCOL)])
        await _write(stream, _U32.pack(len(request)) + request)
        head = await _read_exactly(stream, 1 + _U32.size)
    status, (size,) = head[0], _U32.unpack(head[1:])
    if status not in (WELCOME, PENDING, REFUSED):
        raise StreamEnded("an unknown answer")
    limit = MAX_WELCOME if status == WELCOME else MAX_NOTE
    if size > limit:
        raise StreamEnded("an oversized answer")
    payload = bytearray()
    while len(payload) < size:
        with trio.fail_after(REQUEST_S):  # per chunk: a big welcome may take a while
            payload += await _read_exactly(stream, min(1 << 16, size - len(payload)))
        if progress is not None:
            progress(len(payload), size)
    if status == WELCOME:
        return JoinOutcome("welcome", welcome=bytes(payload))
    return JoinOutcome("pending" if status == PENDING else "refused", note_text(payload))


def note_text(payload: bytes | bytearray) -> str:
    """The inviter node's note as a line to show: the peer chose these bytes, so control
    characters (terminal escapes, line breaks, direction overrides) are dropped."""
    text = payload.decode("utf-8", errors="replace")
    return "".join(ch for ch in text if ch.isprintable()).strip()


async def join_async(
    node: Node,
    code: InviteCode,
    *,
    wait_s: float = 600.0,
    retry_s: float = 5.0,
    say: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Ask online until welcomed (then join), refused, or ``wait_s`` passed; on the trio
    thread that owns ``node``.

    Raises:
        NodeError: refused, no answer, or still pending after ``wait_s``.
    """
    _network_id, request = node.join_request_bytes(code)
    deadline = trio.current_time() + wait_s
    told_pending = False
    while True:
        outcome = await ask_once(code, request, progress=progress)
        if outcome.status == "welcome":
            assert outcome.welcome is not None
            try:
                node.import_welcome(outcome.welcome)
            except RemoteProtocolError as exc:
                raise NodeError(str(exc)) from None
            say("Welcome received: you are a member.")
            return
        if outcome.status == "refused":
            raise NodeError(f"the inviter's node refused: {outcome.note}")
        if not told_pending:
            say(f"Admission decision pending: {outcome.note}. Waiting…")
            told_pending = True
        if trio.current_time() + retry_s > deadline:
            raise NodeError(
                "still pending: run the same join command again later "
                "(your request stays valid while the decision is open)"
            )
        await trio.sleep(retry_s)


def ask_to_join(
    node: Node,
    code: InviteCode,
    *,
    wait_s: float = 600.0,
    retry_s: float = 5.0,
    say: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """:func:`join_async` in a trio run of its own (the command line).

    Raises:
        NodeError: refused, no answer, or still pending after ``wait_s``.
    """

    async def main() -> None:
        await join_async(node, code, wait_s=wait_s, retry_s=retry_s, say=say, progress=progress)

    trio.run(main)
