"""Only current members sync: forged or foreign proofs, silent peers and removed members
are refused and disconnected, quickly."""

from __future__ import annotations

from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from crypto import Identity, random_bytes
from p2pnet.net import service
from p2pnet.net.host import network_host
from p2pnet.net.membership import make_proof
from p2pnet.net.session import PROTOCOL
from tests.net.world import close_all, make_nodes, running, wait_for

pytestmark = pytest.mark.timeout(60)


async def _outsider_session(address: str, proof: bytes, psk: bytes) -> tuple[bytes, float]:
    """An outsider who knows the network's PSK (a former member, a leaked secret) opens
    the sync protocol and sends ``proof``; returns what it read back before the stream
    ended, and how long that took."""
    host = network_host(random_bytes(32), psk=psk)
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [TProtocol(PROTOCOL)])
        start = trio.current_time()
        await stream.write(len(proof).to_bytes(2, "big") + proof)
        received = bytearray()
        with trio.move_on_after(10):
            while True:
                try:
                    chunk = await stream.read(4096)
                except Exception:  # reset by the node: the refusal
                    break
                if not chunk:
                    break
                received += chunk
        took = trio.current_time() - start
        await host.close()
    return bytes(received), took


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda net_id, peer: b"\x93\x01garbage", id="garbage"),
        pytest.param(
            lambda net_id, peer: make_proof(
                Identity(b"\x05" * 32).public.key,
                Identity(b"\x05" * 32).sign(b"peer", net_id + peer),
            ),
            id="a stranger's valid signature",
        ),
    ],
)
def test_a_non_member_is_refused_at_once(tmp_path: Path, make: object) -> None:
    (_ana,) = nodes = make_nodes(tmp_path, ["Ana"])

    async def main() -> None:
        async with running(nodes) as (ra,):
            net_id = ra.network_id
            outsider_peer = b"unused"  # the proof is checked against the real peer id anyway
            received, took = await _outsider_session(
                ra.addresses[0],
                make(net_id, outsider_peer),  # type: ignore[operator]
                _ana.network_secret(net_id).psk,
            )
            # The node sent its own proof (it speaks first) and nothing of the sync.
            assert len(received) < 200
            assert took < 3
            await wait_for(lambda: not ra.host.get_connected_peers(), 3, "disconnected")
            assert not ra.sessions

    try:
        trio.run(main)
    finally:
        close_all(nodes)


def test_a_host_without_the_network_psk_cannot_even_connect(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["Ana"])

    async def main() -> None:
        async with running(nodes) as (ra,):
            for psk in (None, random_bytes(32)):  # no private network, another one
                host = network_host(random_bytes(32), psk=psk)
                async with host.run(listen_addrs=[]):
                    start = trio.current_time()
                    info = info_from_p2p_addr(multiaddr.Multiaddr(ra.addresses[0]))
                    with pytest.raises(Exception):  # noqa: B017, PT011 - libp2p's own
                        await _dial_sync(host, info)
                    took = trio.current_time() - start
                    assert took < 3.0, f"a wrong key took {took:.1f} s to fail"
                    await host.close()
                assert not ra.sessions
                assert not ra.host.get_connected_peers()

    try:
        trio.run(main)
    finally:
        close_all(nodes)


async def _dial_sync(host: object, info: object) -> None:
    with trio.fail_after(10):
        await host.connect(info)  # type: ignore[attr-defined]
        await host.new_stream(info.peer_id, [TProtocol(PROTOCOL)])  # type: ignore[attr-defined]


def test_a_members_proof_replayed_by_another_peer_is_refused(tmp_path: Path) -> None:
    ana, ben = nodes = make_nodes(tmp_path, ["Ana", "Ben"])

    async def main() -> None:
        async with running([ana]) as (ra,):
            net_id = ra.network_id
            # Ben's genuine proof, but for his own peer id: the outsider's host has another.
            ben_peer = network_host(ben.peer_seed(net_id)).get_id().to_bytes()
            stolen = make_proof(ben.identity.public.key, ben.sign_peer(net_id, ben_peer))
            received, took = await _outsider_session(
                ra.addresses[0], stolen, ana.network_secret(net_id).psk
            )
            assert len(received) < 200
            assert took < 3
            assert not ra.sessions

    try:
        trio.run(main)
    finally:
        close_all(nodes)


def test_a_peer_that_opens_no_session_is_disconnected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "GATE_S", 0.5)
    nodes = make_nodes(tmp_path, ["Ana"])

    async def main() -> None:
        async with running(nodes) as (ra,):
            host = network_host(random_bytes(32), psk=nodes[0].network_secret(ra.network_id).psk)
            async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(ra.addresses[0])))
                assert ra.host.get_connected_peers()
                took = await wait_for(lambda: not ra.host.get_connected_peers(), 3, "gated")
                assert took < 2
                await host.close()

    try:
        trio.run(main)
    finally:
        close_all(nodes)


def test_a_removed_member_is_cut_off_and_gets_nothing_new(tmp_path: Path) -> None:
    ana, ben, cyd = nodes = make_nodes(tmp_path, ["Ana", "Ben", "Cyd"])

    async def main() -> None:
        async with running(nodes) as (ra, _rb, rc):
            await wait_for(lambda: len(ra.sessions) == 2, 5, "both connected to Ana")
            topic = ana.propose("Net", title="Topic")
            await wait_for(lambda: topic.op_id in cyd.state("Net").decisions, 3, "Cyd has it")
            first = ana.emergency_remove("Net", "Cyd", "phone seized")
            ben_dag = ben._networks[ra.network_id].holdings.replica.dag
            await wait_for(lambda: first.op_id in ben_dag, 3, "Ben has Ana's signature")
            ben.emergency_remove("Net", "Cyd", "phone seized")  # the second signature
            cyd_key = cyd.identity.public.key
            await wait_for(
                lambda: not ana.state("Net").members[cyd_key].active, 3, "Ana sees the removal"
            )
            await wait_for(lambda: cyd_key in ra.refused and len(ra.sessions) == 1, 3, "cut off")
            after = ana.comment("Net", "Topic", "The meeting moved")
            await wait_for(lambda: after.op_id in ben_dag, 3, "Ben has the new comment")
            await trio.sleep(2)  # Cyd keeps dialling Ana meanwhile
            assert all(s.member != ana.identity.public.key for s in rc.sessions.values())
            cyd_net = cyd._networks[cyd.network_id("Net")]
            assert after.op_id not in cyd_net.holdings.replica.dag

    try:
        trio.run(main)
    finally:
        close_all(nodes)
