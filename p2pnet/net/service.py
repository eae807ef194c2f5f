"""The node on the network: one libp2p host per joined network, syncing with members.

Theory of operation
-------------------
A :class:`NetworkRuntime` runs one network on trio: a libp2p host (TCP + Noise + yamux,
one connection per peer, short upgrade timeouts) with its own peer key from the store,
listening on the given addresses. It

- **dials** the members it knows (the peer ids and addresses they published inside the
  encrypted state, plus ``--peer`` addresses and LAN finds), with exponential backoff
  and jitter per peer, and re-syncs whenever a connection comes back;
- runs a :class:`~p2pnet.net.session.Session` per peer over ``/p2pnet/sync/1.0.0``,
  after both sides proved membership (p2pnet.net.membership); a connection that opens
  no proven session within :data:`GATE_S` is closed;
- **pushes** what is new in the store (local writes, another process's writes, what one
  peer sent) to every other live session, within about :data:`POLL_S`;
- **enforces removal**: whenever the state changes, sessions of members who are no longer
  active are closed, their peers disconnected and refused from then on;
- publishes its own peer id and addresses in the state when they changed;
- with ``relay=True``, serves as a circuit relay for members holding a session with it;
  with ``relays``, keeps a reservation on each (a member it also syncs with) and
  publishes the circuit addresses; dials circuit addresses through their relay once it
  holds a session with that relay (p2pnet.net.relay).

Everything runs in one trio thread, which also owns the :class:`~p2pnet.node.Node`; the
node's calls are short and synchronous (a batch is folded and committed in one call).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from p2pnet.net.host import DIAL_S, network_host, quiet_auto_connector
from p2pnet.net.invite import INVITE_PROTOCOL, invite_handler
from p2pnet.net.lan import lan_addresses
from p2pnet.net.membership import ProofRefused, check_proof, make_proof
from p2pnet.net.relay import (
    CircuitLimits,
    RelayError,
    circuits,
    dial_through,
    is_circuit,
    relay_of,
    reserve,
)
from p2pnet.net.session import PROTOCOL, Session, StreamEnded, exchange_proofs
from p2pnet.node import Node, NodeEvent
from p2pnet.node import now_ms as now_wall_ms
from p2pnet.peers import PeerScores
from protocol import RemoteProtocolError

__all__ = ["GATE_S", "POLL_S", "NetworkRuntime", "PeerStatus"]

log = logging.getLogger("p2pnet.net")

GATE_S = 5.0
POLL_S = 0.25
PUSH_S = 30.0  # a push round to one peer that takes longer drops its session
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 60.0
RESERVE_RETRY_S = 10.0  # after a relay refused or failed a reservation


@dataclass(slots=True)
class PeerStatus:
    """What ``p2pnet peers`` shows of one peer."""

    peer_id: str
    member: bytes | None = None
    address: str = ""
    connected: bool = False
    last_sync_ms: int | None = None
    received: int = 0
    sent: int = 0
    last_error: str = ""


@dataclass(slots=True)
class _Backoff:
    delay: float = 0.0
    next_at: float = 0.0


@dataclass(slots=True)
class _Target:
    peer: ID
    addrs: list[multiaddr.Multiaddr] = field(default_factory=list)


class _Gate(INotifee):
    """Connection notifications: start the membership deadline of every new peer."""

    def __init__(self, runtime: NetworkRuntime) -> None:
        self._runtime = runtime

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._runtime._connected(conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._runtime._disconnected(conn.muxed_conn.peer_id)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class NetworkRuntime:
    """One network on the network. Start it with ``nursery.start(runtime.run)``."""

    def __init__(
        self,
        node: Node,
        network_id: bytes,
        *,
        listen: Sequence[str] = ("/ip4/0.0.0.0/tcp/0",),
        announce: Sequence[str] | None = None,
        peers: Sequence[str] = (),
        dial_members: bool = True,
        invites: bool = True,
        publish: bool = True,
        private: bool = True,
        now_ms: Callable[[], int] | None = None,
        relay: bool = False,
        relays: Sequence[str] = (),
    ) -> None:
        """``peers``: multiaddrs with ``/p2p/<peer id>`` to dial besides the members'
        published addresses (``dial_members``); circuit addresses
        (``.../p2p/<relay>/p2p-circuit/p2p/<peer id>``) too. ``private``: the host speaks
        only to holders of the network's PSK (libp2p pnet); off only for tests of the
        layers above it. ``invites``: also run the invite host (no PSK). ``publish``:
        write our addresses into the state when they changed (not for a one-shot sync).
        ``relay``: serve as a circuit relay for members (opt-in). ``relays``: members'
        multiaddrs (with ``/p2p/<peer id>``) to sync with, reserve on, and publish circuit
        addresses of."""
        self.node = node
        self.network_id = network_id
        psk = node.network_secret(network_id).psk if private else None
        self.host = network_host(node.peer_seed(network_id), psk=psk)
        self.peer_id = self.host.get_id()
        self._listen = [multiaddr.Multiaddr(a) for a in listen]
        self._announce = list(announce) if announce is not None else None
        self._extra = [info_from_p2p_addr(multiaddr.Multiaddr(a)) for a in peers]
        self._dial_members = dial_members
        # A one-shot sync must not replace, in the permanent log, the addresses a running
        # node published with a port that dies when the command exits.
        self._publishes = publish
        self._now_ms = now_ms or now_wall_ms  # wall clock: shown to people as "last sync"
        self.sessions: dict[ID, Session] = {}
        self.status: dict[ID, PeerStatus] = {}
        self.scores = PeerScores()
        self.refused: set[bytes] = set()  # member keys no longer active: never again
        self._backoff: dict[ID, _Backoff] = {}
        self._dialing: set[ID] = set()
        self._nudge = trio.Event()
        self._dirty = False  # a session received something since the last push round
        self._relay: list[tuple[Session, list[bytes]]] = []  # to pass on to other sessions
        self._position = node.last_position(network_id)
        self._nursery: trio.Nursery | None = None
        self._synced = 0  # sessions that finished their initial exchange
        self.synced = trio.Event()  # set when the first session caught up
        self.lan_found: dict[ID, list[multiaddr.Multiaddr]] = {}
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        # -- circuit relay (p2pnet.net.relay) --
        self._serve_relay = relay
        self._relays = [info_from_p2p_addr(multiaddr.Multiaddr(a)) for a in relays]
        self._extra.extend(self._relays)  # members: we sync with them, which admits us
        self._reserved: dict[ID, tuple[Session, float]] = {}  # relay -> (under, renew at)
        self.circuit_addresses: dict[ID, str] = {}  # relay -> ours through it, once held
        self.host.set_stream_handler(TProtocol(PROTOCOL), self._inbound)
        self.host.get_network().register_notifee(_Gate(self))
        # The host that answers invite codes: no PSK (joiners do not know the secret
        # yet), its own key, and nothing but the invite protocol.
        self.invite_host: IHost | None = None
        if invites:
            self.invite_host = network_host(node.peer_seed(network_id, purpose="invite"))
            handler = invite_handler(node, network_id)
            self.invite_host.set_stream_handler(TProtocol(INVITE_PROTOCOL), handler)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial, sync and push until cancelled; closes the host on the way out."""
        unsubscribe = self.node.subscribe(self._on_event)
        try:
            with self._scope:
                async with self.host.run(listen_addrs=self._listen), self._invites_running():
                    try:
                        await quiet_auto_connector(self.host)
                        async with self._circuits_running(), trio.open_nursery() as nursery:
                            self._nursery = nursery
                            self._publish()
                            nursery.start_soon(self._dial_loop)
                            nursery.start_soon(self._push_loop)
                            if self._relays:
                                nursery.start_soon(self._reserve_loop)
                            task_status.started()
                            await trio.sleep_forever()
                    finally:
                        # Closing the host closes every connection and socket
                        # (cancelling its context alone leaves them open).
                        with trio.CancelScope(shield=True), trio.move_on_after(3):
                            await self._close_hosts()
        finally:
            unsubscribe()
            self._nursery = None
            self._stopped.set()

    @contextlib.asynccontextmanager
    async def _invites_running(self) -> AsyncIterator[None]:
        if self.invite_host is None:
            yield
            return
        # The same interfaces on ports of its own: sharing the sync host's port (the OS
        # lets both bind it) would hand members' connections to the host without the PSK.
        listen = [multiaddr.Multiaddr(_any_port(str(a))) for a in self._listen]
        async with self.invite_host.run(listen_addrs=listen):
            await quiet_auto_connector(self.invite_host)
            yield

    async def _close_hosts(self) -> None:
        await self.host.close()
        if self.invite_host is not None:
            await self.invite_host.close()

    async def stop(self) -> None:
        """Stop :meth:`run` and wait until the host is closed."""
        # Close the host while its tasks still run: cancelled first, py-libp2p 0.8.1 can
        # leave a connection's socket open.
        with trio.CancelScope(shield=True), trio.move_on_after(3):
            await self._close_hosts()
        self._scope.cancel()
        await self._stopped.wait()

    @property
    def addresses(self) -> list[str]:
        """Our dialable addresses, each with ``/p2p/<peer id>``; circuit addresses last."""
        if self._announce is not None:
            own = [f"{a}/p2p/{self.peer_id}" if "/p2p/" not in a else a for a in self._announce]
        else:
            own = _dialable(self.host.get_addrs())
        return own + list(self.circuit_addresses.values())

    @property
    def invite_addresses(self) -> list[str]:
        """Where joiners reach our invite host (these go into invite codes)."""
        if self.invite_host is None:
            return []
        if self._announce is not None:
            # The announced hosts, on the invite host's own port.
            port = next((a.value_for_protocol("tcp") for a in self.invite_host.get_addrs()), None)
            peer = self.invite_host.get_id()
            return [f"{a.split('/tcp/')[0]}/tcp/{port}/p2p/{peer}" for a in self._announce if port]
        return _dialable(self.invite_host.get_addrs())

    def _publish(self) -> None:
        if not self._publishes:
            return
        direct = [a.split("/p2p/")[0] for a in self.addresses if "/p2p-circuit" not in a]
        relayed = [a.removesuffix(f"/p2p/{self.peer_id}") for a in self.circuit_addresses.values()]
        bare = direct[: max(0, 8 - len(relayed))] + relayed  # the state keeps 8
        try:
            if self.node.publish_addresses(self.network_id, str(self.peer_id), bare):
                log.info("published our addresses to the network")
        except Exception as exc:  # a member who cannot write still syncs
            log.warning("could not publish our addresses: %s", exc)

    def nudge(self) -> None:
        """Look at the store for something new to push, now."""
        self._nudge.set()

    def found_on_lan(self, peer_id: str, addresses: list[str]) -> None:
        """LAN discovery saw a member's advert: dial it (membership is proven as ever)."""
        try:
            peer = ID.from_base58(peer_id)
            parsed = [multiaddr.Multiaddr(a) for a in addresses]
        except Exception:  # a member's advert we cannot use
            log.debug("an unusable LAN advert")
            return
        self.lan_found[peer] = parsed
        self.nudge()

    def add_peer(self, address: str) -> None:
        """Dial this multiaddr (with ``/p2p/<peer id>``) from now on."""
        self._extra.append(info_from_p2p_addr(multiaddr.Multiaddr(address)))
        self.nudge()

    # -- events from the node ------------------------------------------------------------

    def _on_event(self, event: NodeEvent) -> None:
        if event.network_id in (None, self.network_id):
            self._nudge.set()

    # -- dialing -------------------------------------------------------------------------

    def targets(self) -> list[_Target]:
        targets: dict[ID, _Target] = {}
        for info in self._extra:
            targets.setdefault(info.peer_id, _Target(info.peer_id)).addrs.extend(info.addrs)
        if self._dial_members:
            for peer_text, published in self.node.published_peers(self.network_id).values():
                try:
                    peer = ID.from_base58(peer_text)
                    parsed = [multiaddr.Multiaddr(a) for a in published]
                except Exception:  # a member's junk address is skipped
                    log.debug("skipping a member's unusable address")
                    continue
                targets.setdefault(peer, _Target(peer)).addrs.extend(parsed)
        for peer, found in self.lan_found.items():
            targets.setdefault(peer, _Target(peer)).addrs.extend(found)
        # The relay of a circuit address is a member too: syncing with it admits us.
        for target in list(targets.values()):
            for address in target.addrs:
                via = _relay_info(address)
                if via is not None:
                    targets.setdefault(via.peer_id, _Target(via.peer_id)).addrs.extend(via.addrs)
        targets.pop(self.peer_id, None)
        return [t for t in targets.values() if t.addrs]

    async def _dial_loop(self) -> None:
        while True:
            now = trio.current_time()
            for target in self.targets():
                peer = target.peer
                if peer in self.sessions or peer in self._dialing:
                    continue
                backoff = self._backoff.get(peer)
                if backoff is not None and backoff.next_at > now:
                    continue
                if self.scores.banned(peer.to_bytes(), now):
                    continue
                if not self._dialable(target):  # only through relays not ready yet
                    continue
                self._dialing.add(peer)
                assert self._nursery is not None
                self._nursery.start_soon(self._dial, target)
            await trio.sleep(0.5)

    async def _dial(self, target: _Target) -> None:
        peer = target.peer
        relayed = any(is_circuit(a) for a in target.addrs)
        try:
            with trio.fail_after(DIAL_S * (2 if relayed else 1)):
                await self._connect(target)
                stream = await self.host.new_stream(peer, [TProtocol(PROTOCOL)])
        except Exception as exc:  # every dial failure means "try later"
            self._dialing.discard(peer)
            self._failed(peer, f"cannot reach: {type(exc).__name__}")
            return
        try:
            await self._serve(stream, initiator=True)
        finally:
            # Only now: while the proofs are exchanged the peer is in neither set, and the
            # dial loop would open more streams to it.
            self._dialing.discard(peer)

    # -- circuit relay -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _circuits_running(self) -> AsyncIterator[None]:
        if not self._serve_relay and not self._relays:
            yield
            return
        ours = {info.peer_id for info in self._relays}
        async with circuits(
            self.host,
            serve=CircuitLimits() if self._serve_relay else None,
            may_hop=lambda peer: peer in self.sessions,  # proven members only
            may_stop=lambda peer: peer in ours,
        ):
            yield

    def _dialable(self, target: _Target) -> bool:
        """A direct address, or a circuit through a relay that holds our session."""
        for address in target.addrs:
            via = _relay_info(address)
            if via is None or (via.peer_id in self.sessions and via.peer_id != self.peer_id):
                return True
        return False

    async def _connect(self, target: _Target) -> None:
        """Directly if we can (within :data:`DIAL_S`), else through the relays."""
        direct = [a for a in target.addrs if not is_circuit(a)]
        relayed = [a for a in target.addrs if is_circuit(a)]
        if not relayed:
            await self.host.connect(PeerInfo(target.peer, direct))
            return
        if direct:
            with trio.move_on_after(DIAL_S):
                try:
                    await self.host.connect(PeerInfo(target.peer, direct))
                    return
                except Exception as exc:  # not reachable directly: through a relay then
                    log.debug("peer %s: no direct connection: %s", target.peer, exc)
        failure: Exception = ConnectionError("no relay of this peer holds our session")
        for address in relayed:
            via = _relay_info(address)
            if via is None or via.peer_id not in self.sessions or via.peer_id == self.peer_id:
                continue
            try:
                await dial_through(self.host, address, target.peer)
                return
            except Exception as exc:  # the next relay may do
                failure = exc
        raise failure

    async def _reserve_loop(self) -> None:
        """Hold a reservation on every relay we have a session with; renew it halfway
        through its time and whenever the session (so the connection) is new."""
        while True:
            for info in self._relays:
                session = self.sessions.get(info.peer_id)
                held = self._reserved.get(info.peer_id)
                if session is None:
                    self._reserved.pop(info.peer_id, None)
                    continue
                now = trio.current_time()
                if held is not None and held[0] is session and held[1] > now:
                    continue
                try:
                    with trio.fail_after(DIAL_S):
                        reservation = await reserve(self.host, info)
                except Exception as exc:  # refused or unreachable: try again later
                    log.info("relay %s: no reservation: %s", info.peer_id, exc)
                    self._reserved[info.peer_id] = (session, now + RESERVE_RETRY_S)
                    continue
                renew = max(reservation.expires_in / 2, RESERVE_RETRY_S)
                self._reserved[info.peer_id] = (session, now + renew)
                if self.circuit_addresses.get(info.peer_id) != reservation.address:
                    self.circuit_addresses[info.peer_id] = reservation.address
                    log.info("reachable through relay %s", info.peer_id)
                    self._publish()
            await trio.sleep(0.5)

    def _failed(self, peer: ID, reason: str) -> None:
        backoff = self._backoff.setdefault(peer, _Backoff())
        backoff.delay = min(max(backoff.delay * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
        backoff.next_at = trio.current_time() + backoff.delay * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not secrecy
        self._status(peer).last_error = reason
        log.info("peer %s: %s (next try in %.1f s)", peer, reason, backoff.delay)

    # -- sessions ------------------------------------------------------------------------

    async def _inbound(self, stream: INetStream) -> None:
        await self._serve(stream, initiator=False)

    async def _refuse(self, stream: INetStream, peer: ID, exc: Exception, now: float) -> None:
        reason = str(exc) or "no membership proof in time"
        log.info("peer %s refused: %s", peer, reason)
        if not isinstance(exc, ProofRefused) or exc.forged:
            # A valid proof of a key we do not know may only mean that our state has not
            # seen their admission yet: no penalty for that.
            self.scores.misbehaved(peer.to_bytes(), now)
        if peer in self.status:  # never a new entry: peer ids cost nothing to make
            self.status[peer].last_error = reason
        await _reset(stream)
        await self._disconnect(peer)

    async def _serve(self, stream: INetStream, *, initiator: bool) -> None:
        peer = stream.muxed_conn.peer_id
        now = trio.current_time()
        if self.scores.banned(peer.to_bytes(), now):
            await _reset(stream)
            return
        proof = make_proof(
            self.node.identity.public.key,
            self.node.sign_peer(self.network_id, self.peer_id.to_bytes()),
        )
        try:
            member = await exchange_proofs(
                stream,
                proof,
                lambda data: check_proof(
                    data,
                    network_id=self.network_id,
                    peer_id=peer.to_bytes(),
                    is_active=self._may_sync,
                ),
            )
        except (ProofRefused, trio.TooSlowError, StreamEnded) as exc:
            await self._refuse(stream, peer, exc, now)
            return
        opener = self.peer_id if initiator else peer
        session = Session(
            stream,
            self.node.sync_holdings(self.network_id),
            route_tag=self.node.network_secret(self.network_id).route_tag,
            member=member,
            initiator=opener.to_bytes(),
            on_received=self._received,
        )
        existing = self.sessions.get(peer)
        if existing is not None:
            # Both sides dialled at once: keep the session opened by the smaller peer id
            # (both nodes apply the same rule, so they keep the same one).
            if existing.initiator <= session.initiator:
                await session.close()
                return
            await existing.close()
        self.sessions[peer] = session
        status = self._status(peer)
        status.member, status.connected, status.last_error = member, True, ""
        status.address = _remote_address(stream)
        self._backoff.pop(peer, None)
        try:
            await self._run_session(session, peer)
            self.scores.completed(peer.to_bytes(), trio.current_time())
        except RemoteProtocolError as exc:
            log.warning("peer %s broke the sync protocol: %s", peer, exc)
            self.scores.misbehaved(peer.to_bytes(), trio.current_time())
            status.last_error = f"protocol error: {exc}"
            await session.close()
            await self._disconnect(peer)
        except StreamEnded as exc:
            status.last_error = f"connection ended: {exc}"
        except Exception as exc:
            # Anything else (the store busy past its timeout, a bug): this session ends,
            # the host and the other sessions do not (an exception out of a stream handler
            # would cancel py-libp2p's whole swarm).
            log.error("session with peer %s failed: %s", peer, type(exc).__name__)
            status.last_error = f"session failed: {type(exc).__name__}"
            await session.close()
        finally:
            status.received, status.sent = session.received_new, session.sent
            if self.sessions.get(peer) is session:
                del self.sessions[peer]
                status.connected = False
                self._failed(peer, status.last_error or "session ended")

    async def _run_session(self, session: Session, peer: ID) -> None:
        """:meth:`Session.run`, watching for its catch-up meanwhile.

        Raises what :meth:`Session.run` raises, bare: trio wraps an exception leaving a
        nursery in an ExceptionGroup, which ``except StreamEnded`` would not catch (the
        error then ended the whole host).
        """
        failure: RemoteProtocolError | StreamEnded | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_caught_up, session, peer)
            try:
                await session.run()
            except (RemoteProtocolError, StreamEnded) as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _watch_caught_up(self, session: Session, peer: ID) -> None:
        await session.caught_up.wait()
        status = self._status(peer)
        status.received, status.sent = session.received_new, session.sent
        status.last_sync_ms = self._now_ms()
        self._synced += 1
        self.synced.set()

    def _may_sync(self, member: bytes) -> bool:
        return member not in self.refused and self.node.is_active(self.network_id, member)

    def _received(
        self, session: Session, batches: list[tuple[list[bytes], tuple[int, int]]]
    ) -> None:
        """A session stored new envelopes: relay them to the other sessions as they are
        (no need to read them back from the store)."""
        for envelopes, (before, after) in batches:
            if before == self._position:
                self._position = after
            self._relay.append((session, envelopes))
        self._dirty = True
        self._nudge.set()

    # -- pushing and enforcing -----------------------------------------------------------

    async def _push_loop(self) -> None:
        while True:
            with trio.move_on_after(POLL_S):
                await self._nudge.wait()
            self._nudge = trio.Event()
            try:
                await self._push_once()
            except Exception:  # one bad round must not stop the node
                log.exception("push round failed")

    async def _push_once(self) -> None:
        node = self.node
        if self._dirty:
            self._dirty = False
            node.after_sync(self.network_id)
        node.refresh(self.network_id)
        # Removals first: nothing new may go to a member the state no longer holds.
        for peer, session in list(self.sessions.items()):
            self._status(peer).received = session.received_new
            if not node.is_active(self.network_id, session.member):
                self.refused.add(session.member)
                self.sessions.pop(peer, None)
                log.info("peer %s is no longer a member: disconnected", peer)
                await session.close()
                await self._disconnect(peer)
        relay, self._relay = self._relay, []
        batches: list[tuple[list[bytes], Session | None]] = [
            (envelopes, origin) for origin, envelopes in relay
        ]
        if node.last_position(self.network_id) != self._position:
            self._position, envelopes = node.envelopes_after(self.network_id, self._position)
            batches.append((envelopes, None))
        if batches:
            await self._push(batches)

    async def _push(self, batches: list[tuple[list[bytes], Session | None]]) -> None:
        """Send each batch to every session but the one it came from (``None``: to all).
        One task per session: each gets its batches in order, and a slow or stuck peer
        delays no one else."""
        async with trio.open_nursery() as nursery:
            for peer, session in list(self.sessions.items()):
                mine = [envelopes for envelopes, origin in batches if origin is not session]
                if mine:
                    nursery.start_soon(self._push_to, peer, session, mine)

    async def _push_to(self, peer: ID, session: Session, batches: list[list[bytes]]) -> None:
        # Never raises: one session's trouble must not cancel the others' writes (a
        # write cancelled mid-frame would break their streams).
        try:
            with trio.fail_after(PUSH_S):
                for envelopes in batches:
                    await session.push(envelopes)
        except StreamEnded:
            return
        except trio.TooSlowError:
            reason = "stopped reading (a push took too long)"
        except Exception as exc:  # a store error while reading what to send, …
            log.warning("push to peer %s failed", peer, exc_info=True)
            reason = f"a push failed ({type(exc).__name__})"
        else:
            self._status(peer).sent = session.sent
            return
        await self._drop(peer, session, reason)

    async def _drop(self, peer: ID, session: Session, reason: str) -> None:
        """End a session whose stream can no longer be used (cut mid-frame), as a failed
        one: status, backoff, disconnect (it may reconnect and catch up by summaries)."""
        if self.sessions.get(peer) is session:
            del self.sessions[peer]
        self._status(peer).connected = False
        self._failed(peer, reason)
        await session.close()
        await self._disconnect(peer)

    # -- connections ---------------------------------------------------------------------

    def _connected(self, peer: ID) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._gate, peer)

    def _disconnected(self, peer: ID) -> None:
        status = self.status.get(peer)
        if status is not None:
            status.connected = False

    async def _gate(self, peer: ID) -> None:
        await trio.sleep(GATE_S)
        if peer not in self.sessions and self.host.get_network().get_connections(peer):
            log.info("peer %s opened no member session in time: disconnected", peer)
            await self._disconnect(peer)

    async def _disconnect(self, peer: ID) -> None:
        try:
            with trio.move_on_after(2):
                await self.host.disconnect(peer)
        except Exception:  # already gone
            return

    def _status(self, peer: ID) -> PeerStatus:
        return self.status.setdefault(peer, PeerStatus(str(peer)))


def _dialable(addrs: Sequence[multiaddr.Multiaddr]) -> list[str]:
    """Listening addresses as others can dial them: an unspecified host (0.0.0.0, what
    the default --listen binds) becomes this machine's interface addresses."""
    out: list[str] = []
    for addr in addrs:
        text = str(addr)
        if text.startswith("/ip4/0.0.0.0/"):
            out += [text.replace("/ip4/0.0.0.0/", f"/ip4/{ip}/", 1) for ip in lan_addresses()]
        elif not text.startswith("/ip6/::/"):
            out.append(text)
    return out


def _any_port(address: str) -> str:
    """``address`` with its TCP port replaced by 0 (any free port)."""
    head, sep, tail = address.partition("/tcp/")
    if not sep:
        return address
    rest = tail.split("/", 1)
    return f"{head}/tcp/0" + (f"/{rest[1]}" if len(rest) > 1 else "")


def _relay_info(address: multiaddr.Multiaddr) -> PeerInfo | None:
    """The relay of a circuit address; ``None`` for a direct or unusable one."""
    if not is_circuit(address):
        return None
    try:
        return relay_of(address)
    except RelayError:  # a member's junk address
        return None


def _remote_address(stream: INetStream) -> str:
    try:
        addr = stream.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
    except Exception:  # informational only
        return ""
    return f"{addr[0]}:{addr[1]}" if addr else ""


async def _reset(stream: INetStream) -> None:
    try:
        with trio.move_on_after(1):
            await stream.reset()
    except Exception:  # already broken
        return
