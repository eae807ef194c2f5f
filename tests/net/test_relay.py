"""Circuit relay v2 between members on 127.0.0.1: a member that listens on nothing is
reached through another member that opted in to relay (p2pnet.net.relay)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.connection_types import ConnectionType
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr.protocols import P_P2P

from p2pnet.net.host import network_host, quiet_auto_connector
from p2pnet.net.relay import (
    CircuitLimits,
    RelayError,
    circuit_address,
    circuits,
    dial_through,
    is_circuit,
    relay_of,
    reserve,
)
from p2pnet.net.service import NetworkRuntime
from p2pnet.node import Node
from tests.net.world import LOOPBACK, close_all, make_nodes, wait_for

pytestmark = pytest.mark.timeout(60)


def _titles(node: Node) -> set[str]:
    return {d.title for d in node.state("Net").decisions.values()}


@asynccontextmanager
async def _started(runtimes: Sequence[NetworkRuntime]) -> AsyncIterator[None]:
    """Start the runtimes in order; stop them all (one after the other) on the way out."""
    started: list[NetworkRuntime] = []
    async with trio.open_nursery() as nursery:
        try:
            for runtime in runtimes:
                await nursery.start(runtime.run)
                started.append(runtime)
            yield
        finally:
            with trio.CancelScope(shield=True):
                for runtime in reversed(started):
                    await runtime.stop()


def _connections(runtime: NetworkRuntime, peer: ID) -> list[INetConn]:
    return list(runtime.host.get_network().get_connections(peer))


def test_relay_a_reaches_c_only_through_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ana, ben, cyd = nodes = make_nodes(tmp_path, ["Ana", "Ben", "Cyd"])
    net = ana.network_id("Net")
    rb = NetworkRuntime(ben, net, listen=LOOPBACK, dial_members=False, relay=True)

    async def main() -> None:
        async with _started([rb]):
            # Cyd listens on nothing (as if behind a NAT) and reserves on Ben.
            rc = NetworkRuntime(
                cyd, net, listen=(), dial_members=False, invites=False, relays=rb.addresses[:1]
            )
            async with _started([rc]):
                assert not rc.host.get_addrs()
                await wait_for(lambda: rb.peer_id in rc.circuit_addresses, 10, "reserved")
                circuit = rc.circuit_addresses[rb.peer_id]
                assert rc.addresses == [circuit]  # all that Cyd can be reached at
                # ...and what it publishes to the members (its peer id goes apart).
                mine = cyd.state("Net").members[cyd.identity.public.key]
                assert mine.peer_id == str(rc.peer_id)
                assert mine.addresses == (circuit.removesuffix(f"/p2p/{rc.peer_id}"),)
                # Ana is told Cyd's circuit address and nothing else.
                ra = NetworkRuntime(ana, net, listen=LOOPBACK, dial_members=False, peers=[circuit])
                async with _started([ra]):
                    took = await wait_for(
                        lambda: rc.peer_id in ra.sessions and ra.peer_id in rc.sessions,
                        15,
                        "Ana and Cyd in session",
                    )
                    print(f"Ana-Cyd session through Ben after {took:.2f} s")
                    await _check_relayed(ra, rb, rc)
                    await _sync_only_through_the_circuit((ra, rb, rc), monkeypatch)

    try:
        trio.run(main)
    finally:
        close_all(nodes)


async def _check_relayed(ra: NetworkRuntime, rb: NetworkRuntime, rc: NetworkRuntime) -> None:
    a, b, c = ra.peer_id, rb.peer_id, rc.peer_id
    # Ana's and Cyd's only connection to each other is a circuit through Ben...
    for here, there in ((ra, c), (rc, a)):
        (conn,) = _connections(here, there)
        assert conn.get_connection_type() is ConnectionType.RELAYED
        (address,) = conn.get_transport_addresses()
        assert is_circuit(address)
        assert relay_of(address).peer_id == b
        # ...whose Noise session ends at the other member, not at Ben: Noise checked the
        # other member's static key against its peer id.
        assert conn.muxed_conn.secured_conn.get_remote_peer() == there  # type: ignore[attr-defined]
    # Ben holds plain (direct) connections to both and nothing else; its sync sessions are
    # its own, with each of them, and carry no session of Ana with Cyd.
    assert set(rb.host.get_network().connections) == {a, c}
    for peer in (a, c):
        (conn,) = _connections(rb, peer)
        assert conn.get_connection_type() is ConnectionType.DIRECT
    assert set(rb.sessions) == {a, c}
    assert {s.member for s in rb.sessions.values()} == {
        ra.node.identity.public.key,
        rc.node.identity.public.key,
    }
    # Ana's status shows the circuit's first hop: Ben's TCP address.
    (ben_conn,) = _connections(ra, b)
    host, port = ben_conn.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
    assert ra.status[c].address == f"{host}:{port}"


async def _sync_only_through_the_circuit(
    runtimes: tuple[NetworkRuntime, NetworkRuntime, NetworkRuntime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ra, rb, rc = runtimes
    ana, cyd = ra.node, rc.node
    for runtime in (ra, rb, rc):
        await wait_for(
            lambda r=runtime: all(s.caught_up.is_set() for s in r.sessions.values()),
            10,
            "initial exchanges done",
        )

    # Ben is a member and syncs with both; so that what reaches Cyd can only have come
    # over the circuit, Ben forwards nothing from now on (it still relays bytes).
    async def no_push(envelopes: list[bytes], skip: object = None) -> None:
        return None

    monkeypatch.setattr(rb, "_push", no_push)
    from_ana = rc.sessions[ra.peer_id]
    from_cyd = ra.sessions[rc.peer_id]

    ana.propose("Net", title="Ana to Cyd")
    took = await wait_for(lambda: "Ana to Cyd" in _titles(cyd), 3, "Ana's proposal at Cyd")
    print(f"Ana -> Cyd through the relay: {took * 1000:.0f} ms")
    assert from_ana.received_new >= 1

    cyd.propose("Net", title="Cyd to Ana")
    took = await wait_for(lambda: "Cyd to Ana" in _titles(ana), 3, "Cyd's proposal at Ana")
    print(f"Cyd -> Ana through the relay: {took * 1000:.0f} ms")
    assert from_cyd.received_new >= 1
    assert rc.sessions[ra.peer_id] is from_ana  # one session all along


def test_the_relay_serves_members_in_session_only(tmp_path: Path) -> None:
    (ben,) = nodes = make_nodes(tmp_path, ["Ben"])
    net = ben.network_id("Net")
    rb = NetworkRuntime(ben, net, listen=LOOPBACK, dial_members=False, relay=True)
    psk = ben.network_secret(net).psk

    async def main() -> None:
        async with _started([rb]):
            relay = relay_of(multiaddr.Multiaddr(f"{rb.addresses[0]}/p2p-circuit"))
            # A host with the network's PSK (a removed member keeps it) but no member
            # session with Ben: its reservation is refused.
            stranger = network_host(os.urandom(32), psk=psk)
            async with _host_running(stranger):
                with pytest.raises(RelayError) as refused:
                    await reserve(stranger, relay)
                assert refused.value.status == 202  # PERMISSION_DENIED

    try:
        trio.run(main)
    finally:
        close_all(nodes)


def test_relaying_is_off_unless_opted_in(tmp_path: Path) -> None:
    ana, ben = nodes = make_nodes(tmp_path, ["Ana", "Ben"])
    net = ana.network_id("Net")
    rb = NetworkRuntime(ben, net, listen=LOOPBACK, dial_members=False)  # relay not asked for

    async def main() -> None:
        async with _started([rb]):
            ra = NetworkRuntime(ana, net, listen=LOOPBACK, dial_members=False, relays=rb.addresses)
            async with _started([ra]):
                await wait_for(lambda: rb.peer_id in ra.sessions, 10, "Ana syncs with Ben")
                relay = PeerInfo(rb.peer_id, [])
                with pytest.raises(StreamFailure, match="failed to open a stream"):
                    await reserve(ra.host, relay)  # Ben does not even speak the protocol
                assert not ra.circuit_addresses

    try:
        trio.run(main)
    finally:
        close_all(nodes)


@asynccontextmanager
async def _host_running(host: IHost) -> AsyncIterator[None]:
    async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK[0])]):
        await quiet_auto_connector(host)
        try:
            yield
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                await host.close()


def test_circuit_addresses_parse_one_hop_only() -> None:
    relay = ID.from_base58("12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq")
    peer = ID.from_base58("12D3KooWRndVhVZPCiQwHBBBdg769GyrPUW13zxwqQyf9r3ANaba")
    info = PeerInfo(relay, [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/4001")])
    text = circuit_address(info, peer)
    assert text == f"/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}"
    for address in (text, text.removesuffix(f"/p2p/{peer}")):
        parsed = relay_of(multiaddr.Multiaddr(address))
        assert parsed.peer_id == relay
        assert [str(a) for a in parsed.addrs] == ["/ip4/127.0.0.1/tcp/4001"]
    assert not is_circuit(multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/4001/p2p/{relay}"))
    for bad in (
        f"/ip4/127.0.0.1/tcp/4001/p2p-circuit/p2p/{peer}",  # no relay id
        f"/p2p/{relay}/p2p-circuit/p2p/{relay}/p2p-circuit/p2p/{peer}",  # two hops
        f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}",  # not a circuit
    ):
        with pytest.raises(RelayError):
            relay_of(multiaddr.Multiaddr(bad))


def test_the_relay_limits_reservations_and_circuit_bytes() -> None:
    psk = os.urandom(32)
    relay_host, c1, c2, dialer = (network_host(os.urandom(32), psk=psk) for _ in range(4))
    limits = CircuitLimits(reservations=1, circuit_bytes=64 * 1024)
    got = bytearray()

    async def sink(stream: INetStream) -> None:
        while chunk := await stream.read(65536):
            got.extend(chunk)

    c1.set_stream_handler(ECHO, sink)

    async def main() -> None:
        async with (
            _host_running(relay_host),
            _host_running(c1),
            _host_running(c2),
            _host_running(dialer),
        ):
            relay_id = relay_host.get_id()
            relay = PeerInfo(relay_id, [relay_host.get_addrs()[0].decapsulate_code(P_P2P)])
            async with (
                circuits(relay_host, serve=limits, may_hop=lambda _: True, may_stop=_never),
                circuits(c1, serve=None, may_hop=_never, may_stop=lambda p: p == relay_id),
            ):
                held = await reserve(c1, relay)
                with pytest.raises(RelayError) as full:
                    await reserve(c2, relay)
                assert full.value.status == 201  # RESOURCE_LIMIT_EXCEEDED
                await dial_through(dialer, multiaddr.Multiaddr(held.address), c1.get_id())
                stream = await dialer.new_stream(c1.get_id(), [ECHO])
                sent = await _send_until_cut(stream, total=4 * limits.circuit_bytes)
                print(f"circuit cut after {sent} bytes sent, {len(got)} delivered")
                # Cut within its byte budget (Noise and yamux overhead included).
                assert sent <= limits.circuit_bytes
                assert len(got) <= limits.circuit_bytes

    trio.run(main)


ECHO = TProtocol("/p2pnet-test/sink/1")


async def _send_until_cut(stream: INetStream, *, total: int) -> int:
    """Write 4 KiB chunks until the stream fails; returns the bytes written before."""
    sent = 0
    with trio.fail_after(10):
        while sent < total:
            try:
                await stream.write(bytes(4096))
            except Exception:  # the relay reset the circuit: what we wait for
                return sent
            sent += 4096
            await trio.sleep(0.005)
    raise AssertionError(f"the relay let {sent} bytes through")


def _never(_: ID) -> bool:
    return False
