"""Circuit relay v2 between the members of one network (opt-in per node).

Theory of operation
-------------------
Three members' hosts of one network, all inside its private network (one PSK):

- **B serves** (:func:`circuits` with ``serve=``): py-libp2p's relay protocol answers
  RESERVE and CONNECT (``/libp2p/circuit/relay/0.2.0/hop``) within :class:`CircuitLimits`,
  and only for peers that ``may_hop`` admits: the runtime admits peers that hold a proven
  member session with B, so the relay serves current members and nobody else.
- **C reserves** (:func:`reserve`) over its own member connection to B, and publishes
  ``<B's address>/p2p/<B>/p2p-circuit`` with its addresses. C answers the relay's STOP
  streams (``may_stop``: only from the relays it reserved on).
- **A dials** (:func:`dial_through`) over its member connection to B: CONNECT names C, B
  opens a STOP stream to C and from then on copies bytes between the two streams. A and
  C each take their end as a raw connection and upgrade it as they upgrade TCP: the
  network's pnet layer, Noise, yamux. The Noise session is A-C end to end (A's Noise
  checks C's peer key, not B's); B forwards ciphertext inside its own A-B and B-C
  connections, which are pnet + Noise too. The sync stream on top runs the membership
  proof as on any connection.

Why not py-libp2p's ``CircuitV2Transport`` (0.8.1, measured): its swarm drops every
``/p2p-circuit`` address before it picks a transport, even with the circuit transport
registered (``Swarm.dial_peer``: "All addresses ... are unusable (relay-only ...)");
its ``dial`` upgrades the relayed stream without the private-network layer while the
STOP side, through the swarm's inbound upgrade, applies it, so the two ends cannot
agree; and with the client role on it makes a reservation on the relay before every
dial. The two HOP exchanges are a few lines here; the relay and STOP sides are
py-libp2p's ``CircuitV2Protocol``.

What the relay learns: which members talk to which, when, for how long, and how many
bytes (lengths and timing of the ciphertext), never the content.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage, StopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeer
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode, to_proto_status
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service
from multiaddr.protocols import P_P2P, P_P2P_CIRCUIT

from p2pnet.errors import P2pnetError
from p2pnet.net import pnet

__all__ = [
    "HOP_S",
    "CircuitLimits",
    "RelayError",
    "Reservation",
    "circuit_address",
    "circuits",
    "dial_through",
    "is_circuit",
    "relay_of",
    "reserve",
]

HOP_S = 5.0  # one HOP request and its answer


@dataclass(frozen=True, slots=True)
class CircuitLimits:
    """What a member's relay grants, sized for a network of tens of members.

    A sync session lives as long as the connection, so a circuit may last an hour (then
    it is cut and the members reconnect); the byte cap covers a full catch-up of a large
    network several times over. py-libp2p 0.8.1 enforces per circuit the duration (checked
    whenever bytes pass) and the bytes of both directions together, and per reserved peer
    the number of live circuits; it has no total circuit or bandwidth cap, so the total
    is at most ``reservations * circuits_per_peer``.
    """

    reservations: int = 8  # members reserved at once
    circuits_per_peer: int = 8  # live circuits to one reserved member
    circuit_s: int = 3600
    circuit_bytes: int = 64 * 1024 * 1024
    reservation_s: int = 3600

    def _libp2p(self) -> RelayLimits:
        return RelayLimits(
            duration=self.circuit_s,
            data=self.circuit_bytes,
            max_circuit_conns=self.circuits_per_peer,
            max_reservations=self.reservations,
            reservation_ttl=self.reservation_s,
        )


class RelayError(P2pnetError, ConnectionError):
    """A relay refused a request (``status``: the circuit v2 status code) or broke the
    exchange, or an address is not a one-hop circuit address."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reservation:
    """A slot on a relay: others reach us at ``address`` for about ``expires_in`` s."""

    relay: ID
    address: str  # <relay address>/p2p/<relay>/p2p-circuit/p2p/<us>
    expires_in: float


# -- addresses -------------------------------------------------------------------------


def is_circuit(address: multiaddr.Multiaddr) -> bool:
    """Whether ``address`` goes through a relay (has ``/p2p-circuit``)."""
    return any(p.code == P_P2P_CIRCUIT for p in address.protocols())


def relay_of(address: multiaddr.Multiaddr) -> PeerInfo:
    """The relay of a circuit address ``<relay addr>/p2p/<relay>/p2p-circuit[/p2p/<peer>]``.

    Raises:
        RelayError: not a one-hop circuit address with the relay's peer id.
    """
    codes = [p.code for p in address.protocols()]
    if codes[-1:] == [P_P2P]:
        codes.pop()
    if codes.count(P_P2P_CIRCUIT) != 1 or codes[-2:] != [P_P2P, P_P2P_CIRCUIT]:
        raise RelayError(f"not a one-hop circuit address: {address}")
    relay = address.decapsulate_code(P_P2P_CIRCUIT)
    relay_id = relay.get_peer_id()
    if relay_id is None:
        raise RelayError(f"no relay peer id before /p2p-circuit: {address}")
    try:
        peer = ID.from_base58(relay_id)
    except Exception:  # base58 or multihash errors of a junk id
        raise RelayError(f"a junk relay peer id in {address}") from None
    transport = relay.decapsulate_code(P_P2P)
    return PeerInfo(peer, [transport] if transport.protocols() else [])


def circuit_address(relay: PeerInfo, peer: ID) -> str:
    """``peer``'s address through ``relay``."""
    transport = str(relay.addrs[0]) if relay.addrs else ""
    return f"{transport}/p2p/{relay.peer_id}/p2p-circuit/p2p/{peer}"


# -- the relay and STOP sides ----------------------------------------------------------


class _MemberCircuits(CircuitV2Protocol):
    """py-libp2p's relay protocol, with p2pnet's admission in front of both sides."""

    def __init__(
        self,
        host: IHost,
        limits: CircuitLimits,
        *,
        serve: bool,
        may_hop: Callable[[ID], bool],
        may_stop: Callable[[ID], bool],
    ) -> None:
        super().__init__(host, limits=limits._libp2p(), allow_hop=serve)
        self._may_hop = may_hop
        self._may_stop = may_stop

    async def _handle_hop_stream(self, stream: INetStream) -> None:
        if not self._may_hop(stream.muxed_conn.peer_id):
            refusal = HopMessage(
                type=HopMessage.STATUS, status=to_proto_status(StatusCode.PERMISSION_DENIED)
            )
            await _answer_and_close(stream, refusal)
            return
        await super()._handle_hop_stream(stream)

    async def _handle_stop_stream(self, stream: INetStream) -> None:
        if not self._may_stop(stream.muxed_conn.peer_id):
            refusal = StopMessage(
                type=StopMessage.STATUS, status=to_proto_status(StatusCode.PERMISSION_DENIED)
            )
            await _answer_and_close(stream, refusal)
            return
        await super()._handle_stop_stream(stream)

    async def handle_incoming_connection(self, stream: INetStream, remote_peer_id: bytes) -> None:
        await super().handle_incoming_connection(stream, remote_peer_id)
        # py-libp2p 0.8.1 labels an incoming circuit /p2p/<us>/p2p-circuit/p2p/<peer>:
        # name the relay that sent the STOP instead.
        peer = ID(remote_peer_id)
        wrong = multiaddr.Multiaddr(circuit_address(PeerInfo(self.host.get_id(), []), peer))
        right = multiaddr.Multiaddr(circuit_address(PeerInfo(stream.muxed_conn.peer_id, []), peer))
        for conn in self.host.get_network().get_connections(peer):
            setter = getattr(conn, "set_transport_info", None)
            if setter is not None and conn.get_transport_addresses() == [wrong]:
                setter([right], ConnectionType.RELAYED)


@asynccontextmanager
async def circuits(
    host: IHost,
    *,
    serve: CircuitLimits | None,
    may_hop: Callable[[ID], bool],
    may_stop: Callable[[ID], bool],
) -> AsyncIterator[CircuitV2Protocol]:
    """Run the circuit relay protocol on a running ``host`` for the block.

    ``serve``: act as a relay with these limits (``None``: do not). ``may_hop``: a peer
    whose RESERVE or CONNECT the relay may serve; ``may_stop``: a relay whose relayed
    connections we accept. Refused requests get PERMISSION_DENIED.
    """
    limits = serve or CircuitLimits()
    protocol = _MemberCircuits(
        host, limits, serve=serve is not None, may_hop=may_hop, may_stop=may_stop
    )
    async with background_trio_service(protocol):
        await protocol.event_started.wait()
        yield protocol


# -- the client side -------------------------------------------------------------------


async def reserve(host: IHost, relay: PeerInfo) -> Reservation:
    """Reserve a slot on ``relay`` (connecting to it if need be); the slot lasts while
    this connection to the relay does, and at most ``expires_in`` seconds.

    Raises:
        RelayError: the relay refused or did not answer in time.
        Exception: py-libp2p's errors when the relay cannot be reached.
    """
    await host.connect(relay)
    stream = await host.new_stream(relay.peer_id, [HOP_PROTOCOL])
    try:
        answer = await _ask(stream, HopMessage(type=HopMessage.RESERVE))
    finally:
        await _close(stream)
    if not answer.HasField("reservation"):
        raise RelayError("the relay accepted without a reservation")
    # The expiry is a Unix time on the relay's clock: ours may differ a little.
    expires_in = max(0.0, answer.reservation.expire - time.time())
    return Reservation(relay.peer_id, circuit_address(relay, host.get_id()), expires_in)


async def dial_through(host: IHost, address: multiaddr.Multiaddr, peer: ID) -> INetConn:
    """Connect to ``peer`` through the relay of the circuit ``address``, upgraded as any
    connection of ``host``: the host's private-network layer (if it has a PSK), Noise
    with ``peer`` end to end, yamux. The connection joins the host's swarm.

    Raises:
        RelayError: a bad address, or the relay refused or did not answer in time.
        Exception: py-libp2p's errors when the relay or the upgrade fails.
    """
    relay = relay_of(address)
    if address.protocols()[-1].code == P_P2P and address.get_peer_id() != str(peer):
        raise RelayError(f"{address} is the address of another peer than {peer}")
    await host.connect(relay)
    stream = await host.new_stream(relay.peer_id, [HOP_PROTOCOL])
    try:
        request = HopMessage(type=HopMessage.CONNECT, peer=CircuitPeer(id=peer.to_bytes()))
        await _ask(stream, request)
        raw = RawConnection(
            stream=stream,
            initiator=True,
            connection_type=ConnectionType.RELAYED,
            addresses=[multiaddr.Multiaddr(circuit_address(relay, peer))],
        )
        # What the swarm does to every connection it accepts, the relayed ones included
        # (the peer's STOP side goes through it), so both ends speak pnet.
        psk: str | None = getattr(host.get_network(), "psk", None)
        protected = pnet.protect(raw, bytes.fromhex(psk)) if psk else raw
        return await host.upgrade_outbound_connection(protected, peer)
    except BaseException:
        with trio.CancelScope(shield=True):
            await _close(stream, reset=True)
        raise


async def _ask(stream: INetStream, request: HopMessage) -> HopMessage:
    try:
        with trio.fail_after(HOP_S):
            await write_delimited_msg(stream, request)
            answer = await read_delimited_msg(stream, HopMessage)
    except trio.TooSlowError:
        raise RelayError("the relay did not answer in time") from None
    except DecodeError:
        raise RelayError("the relay sent a malformed answer") from None
    except Exception as exc:  # py-libp2p's stream errors: resets, EOF, a bad varint
        raise RelayError(f"the relay broke off: {type(exc).__name__}") from None
    status = answer.status if answer.HasField("status") else StatusCode.UNUSED
    if answer.type != HopMessage.STATUS or status != StatusCode.OK:
        raise RelayError(f"the relay refused: status {status}", status=status)
    return answer


async def _answer_and_close(stream: INetStream, message: HopMessage | StopMessage) -> None:
    try:
        with trio.move_on_after(1):
            await write_delimited_msg(stream, message)
    except Exception:  # the requester is gone: nothing to tell it
        await _close(stream, reset=True)
        return
    await _close(stream)


async def _close(stream: INetStream, *, reset: bool = False) -> None:
    try:
        with trio.move_on_after(1):
            await (stream.reset() if reset else stream.close())
    except Exception:  # already broken
        return
