"""The libp2p private-network layer (p2pnet.net.pnet) against the PSK v1 specification.

The reference XSalsa20 here is the test's own: libsodium called through ctypes, checked
against NaCl's published test vector, never the code under test.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Awaitable, Callable
from unittest import mock

import libp2p
import libp2p.network.swarm as libp2p_swarm
import multiaddr
import nacl.bindings
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p import create_yamux_muxer_option, new_host
from libp2p.abc import IHost, IMuxedConn, INetStream, IRawConnection
from libp2p.connection_types import ConnectionType
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from nacl import _sodium

from crypto import KeyLengthError, NetworkSecret
from p2pnet.net import pnet
from p2pnet.net.pnet import NONCE_BYTES, PnetConnection, PnetError, PnetUnavailable

pytestmark = pytest.mark.timeout(30)

PSK = bytes(range(32))
OTHER_PSK = bytes(range(1, 33))
LOOPBACK = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
ECHO = TProtocol("/p2pnet-test/echo/1.0.0")
MULTISTREAM = b"\x13/multistream/1.0.0\n"  # uvarint length, then the line with its \n
NOISE_LINE = b"\x07/noise\n"


# -- the reference XSalsa20 ----------------------------------------------------------------

_LIBSODIUM = ctypes.CDLL(_sodium.__file__)
_LIBSODIUM.crypto_stream_xsalsa20_xor.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulonglong,
    ctypes.c_char_p,
    ctypes.c_char_p,
]
_LIBSODIUM.crypto_stream_xsalsa20_xor.restype = ctypes.c_int


def xsalsa20(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """``data`` XORed with the XSalsa20 keystream of (key, nonce) from its first byte."""
    assert len(key) == 32
    assert len(nonce) == 24
    out = ctypes.create_string_buffer(len(data) or 1)
    assert _LIBSODIUM.crypto_stream_xsalsa20_xor(out, data, len(data), nonce, key) == 0
    return out.raw[: len(data)]


def test_the_reference_is_xsalsa20() -> None:
    # NaCl's tests/stream3.c: the first 32 bytes of crypto_stream_xsalsa20.
    key = bytes.fromhex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
    nonce = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
    expected = "eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880"
    assert xsalsa20(key, nonce, bytes(32)).hex() == expected
    # From byte 32 on, the keystream is what PyNaCl's secretbox XORs with the message.
    boxed = nacl.bindings.crypto_secretbox(bytes(500), nonce, key)
    assert xsalsa20(key, nonce, bytes(532))[32:] == boxed[16:]


# -- an in-memory connection ---------------------------------------------------------------


class StreamConn(IRawConnection):
    """A raw connection over a trio stream that records what it sends and is asked."""

    def __init__(self, stream: trio.abc.Stream, *, initiator: bool) -> None:
        self.stream = stream
        self.is_initiator = initiator
        self.wire = bytearray()
        self.asked: list[int | None] = []

    async def write(self, data: bytes) -> None:
        self.wire += data
        await self.stream.send_all(data)

    async def read(self, n: int | None = None) -> bytes:
        self.asked.append(n)
        return await self.stream.receive_some(n)

    async def close(self) -> None:
        await self.stream.aclose()

    def get_remote_address(self) -> tuple[str, int] | None:
        return ("192.0.2.1", 4001)

    def get_transport_addresses(self) -> list[multiaddr.Multiaddr]:
        return [multiaddr.Multiaddr("/ip4/192.0.2.1/tcp/4001")]

    def get_connection_type(self) -> ConnectionType:
        return ConnectionType.DIRECT


def raw_pair() -> tuple[StreamConn, StreamConn]:
    left, right = trio.testing.memory_stream_pair()
    return StreamConn(left, initiator=True), StreamConn(right, initiator=False)


def protected_pair(
    psk_a: bytes = PSK, psk_b: bytes = PSK
) -> tuple[PnetConnection, PnetConnection, StreamConn, StreamConn]:
    raw_a, raw_b = raw_pair()
    return PnetConnection(raw_a, psk_a), PnetConnection(raw_b, psk_b), raw_a, raw_b


class ScriptedConn(StreamConn):
    """Reads serve ``chunks`` one by one (split further if a read asks for less)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.is_initiator = True
        self.wire = bytearray()
        self.asked = []

    async def write(self, data: bytes) -> None:
        self.wire += data

    async def read(self, n: int | None = None) -> bytes:
        self.asked.append(n)
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if n is not None and len(chunk) > n:
            chunk, rest = chunk[:n], chunk[n:]
            self.chunks.insert(0, rest)
        return chunk

    async def close(self) -> None:
        self.chunks = []


async def read_exactly(conn: IRawConnection, n: int, *, size: int | None = None) -> bytes:
    got = b""
    while len(got) < n:
        chunk = await conn.read(size if size is not None else n - len(got))
        assert chunk, f"end of stream after {len(got)} of {n} bytes"
        got += chunk
    return got


def run(main: Callable[[], Awaitable[None]], timeout: float = 10) -> None:
    async def bounded() -> None:
        with trio.fail_after(timeout):
            await main()

    trio.run(bounded)


# -- the stream layer ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=3000),
    st.binary(max_size=3000),
    st.lists(st.integers(1, 400), min_size=1, max_size=30),
    st.lists(st.integers(1, 400), min_size=1, max_size=30),
)
def test_round_trip_over_any_chunk_sizes(
    data_ab: bytes, data_ba: bytes, writes: list[int], reads: list[int]
) -> None:
    async def send(conn: PnetConnection, data: bytes) -> None:
        at, i = 0, 0
        while at < len(data):
            size = writes[i % len(writes)]
            await conn.write(data[at : at + size])
            at, i = at + size, i + 1

    async def receive(conn: PnetConnection, n: int, into: list[bytes]) -> None:
        got, i = b"", 0
        while len(got) < n:
            chunk = await conn.read(reads[i % len(reads)])
            assert chunk
            got, i = got + chunk, i + 1
        into.append(got)

    async def main() -> None:
        a, b, _, _ = protected_pair()
        at_b: list[bytes] = []
        at_a: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, a, data_ab)
            nursery.start_soon(send, b, data_ba)
            nursery.start_soon(receive, b, len(data_ab), at_b)
            nursery.start_soon(receive, a, len(data_ba), at_a)
        assert at_b == [data_ab]
        assert at_a == [data_ba]

    run(main)


def test_the_wire_is_the_nonce_then_the_xsalsa20_keystream_of_it() -> None:
    chunks = [b"a", b"b" * 63, b"c" * 64, b"d" * 65, b"e" * 200, os.urandom(1000)]
    plaintext = b"".join(chunks)

    async def main() -> None:
        a, b, raw_a, _ = protected_pair()
        for chunk in chunks:
            await a.write(chunk)
        wire = bytes(raw_a.wire)
        assert len(wire) == NONCE_BYTES + len(plaintext)
        nonce = wire[:NONCE_BYTES]
        assert wire[NONCE_BYTES:] == xsalsa20(PSK, nonce, plaintext)
        assert wire[NONCE_BYTES:] != plaintext
        assert await read_exactly(b, len(plaintext)) == plaintext

    run(main)


def test_each_connection_and_direction_has_its_own_nonce() -> None:
    async def main() -> None:
        a, b, raw_a, raw_b = protected_pair()
        c, _, raw_c, _ = protected_pair()
        for conn in (a, b, c):
            await conn.write(b"x")
        nonces = {bytes(raw.wire[:NONCE_BYTES]) for raw in (raw_a, raw_b, raw_c)}
        assert len(nonces) == 3

    run(main)


def test_a_side_that_reads_first_sends_its_nonce_at_once() -> None:
    # Both sides only read: each must still send its nonce, or both wait for ever.
    async def main() -> None:
        a, b, raw_a, raw_b = protected_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.read, 10)
            nursery.start_soon(b.read, 10)
            await trio.testing.wait_all_tasks_blocked()
            assert len(raw_a.wire) == NONCE_BYTES
            assert len(raw_b.wire) == NONCE_BYTES
            await a.write(b"ping")
            await b.write(b"pong")
        assert len(raw_a.wire) == len(raw_b.wire) == NONCE_BYTES + 4

    run(main)


def test_the_nonce_goes_out_once_before_concurrent_writes() -> None:
    async def main() -> None:
        a, b, raw_a, _ = protected_pair()
        messages = [bytes([i]) * (50 + i) for i in range(20)]
        async with trio.open_nursery() as nursery:
            for message in messages:
                nursery.start_soon(a.write, message)
            nursery.start_soon(a.read, 1)  # a first read races the writes to the nonce
            nursery.start_soon(b.write, b"!")
        received = await read_exactly(b, sum(map(len, messages)))
        assert len(raw_a.wire) == NONCE_BYTES + len(received)
        # Each write reaches the peer whole (in some order), never interleaved.
        at = 0
        seen = []
        while at < len(received):
            size = 50 + received[at]
            assert received[at : at + size] == bytes([received[at]]) * size
            seen.append(received[at])
            at += size
        assert sorted(seen) == list(range(20))

    run(main)


def test_a_wrong_psk_reads_garbage() -> None:
    plaintext = b"/multistream/1.0.0\n" * 20

    async def main() -> None:
        a, b, raw_a, _ = protected_pair(PSK, OTHER_PSK)
        await a.write(plaintext)
        garbage = await read_exactly(b, len(plaintext))
        assert garbage != plaintext
        nonce = bytes(raw_a.wire[:NONCE_BYTES])
        # Exactly what the other key's keystream makes of the ciphertext: noise.
        assert garbage == xsalsa20(OTHER_PSK, nonce, xsalsa20(PSK, nonce, plaintext))

    run(main)


@pytest.mark.parametrize("sent", [b"", b"\x01" * 10, b"\x01" * 23])
def test_a_short_nonce_is_a_clear_error(sent: bytes) -> None:
    async def main() -> None:
        conn = PnetConnection(ScriptedConn([sent] if sent else []), PSK)
        with pytest.raises(PnetError, match=f"after {len(sent)} of the 24 bytes"):
            await conn.read(100)

    run(main)


def test_the_nonce_is_read_over_short_reads() -> None:
    nonce = os.urandom(NONCE_BYTES)
    plaintext = b"hello, private network"
    ciphertext = xsalsa20(PSK, nonce, plaintext)
    chunks = [bytes([x]) for x in nonce[:5]] + [nonce[5:17], nonce[17:] + ciphertext[:3]]

    async def main() -> None:
        raw = ScriptedConn([*chunks, ciphertext[3:]])
        conn = PnetConnection(raw, PSK)
        assert await read_exactly(conn, len(plaintext), size=4) == plaintext
        # The nonce reads never asked for more than the nonce's remaining bytes.
        assert raw.asked[:8] == [24, 23, 22, 21, 20, 19, 7, 4]
        assert await conn.read(10) == b""

    run(main)


def test_a_huge_read_asks_the_connection_for_a_bounded_amount() -> None:
    # With a wrong PSK a length prefix is noise; trio would allocate what it is asked for.
    async def main() -> None:
        a, b, _, raw_b = protected_pair()
        await a.write(b"x" * 100_000)
        chunk = await b.read(2**62)
        assert 0 < len(chunk) <= 65536
        assert max(n for n in raw_b.asked if n is not None) <= 65536

    run(main)


def test_a_write_that_broke_off_leaves_the_connection_unusable() -> None:
    class FailingConn(ScriptedConn):
        fail = True

        async def write(self, data: bytes) -> None:
            if self.fail and self.wire:
                raise trio.BrokenResourceError("reset")
            self.wire += data

    async def main() -> None:
        raw = FailingConn([])
        conn = PnetConnection(raw, PSK)
        with pytest.raises(trio.BrokenResourceError):
            await conn.write(b"first")  # the nonce went out, the chunk did not
        raw.fail = False
        with pytest.raises(PnetError, match="broke off"):
            await conn.write(b"second")

    run(main)


def test_the_connection_forwards_what_libp2p_asks_of_a_raw_connection() -> None:
    async def main() -> None:
        a, b, raw_a, _ = protected_pair()
        assert a.is_initiator
        assert not b.is_initiator
        assert a.get_remote_address() == ("192.0.2.1", 4001)
        assert a.get_transport_addresses() == raw_a.get_transport_addresses()
        assert a.get_connection_type() is ConnectionType.DIRECT
        await a.write(b"hi")
        assert await b.read(10) == b"hi"
        await a.close()
        assert await b.read(10) == b""

    run(main)


def test_psk_hex_and_bad_keys() -> None:
    secret = NetworkSecret(bytes(32))
    assert pnet.psk_hex(secret.psk) == secret.psk.hex()
    assert len(pnet.psk_hex(secret.psk)) == 64
    for bad in (b"", bytes(31), bytes(33), "00" * 32):
        with pytest.raises(KeyLengthError):
            pnet.psk_hex(bad)  # type: ignore[arg-type]
        with pytest.raises(KeyLengthError):
            pnet.protect(ScriptedConn([]), bad)  # type: ignore[arg-type]


# -- the patch of py-libp2p ----------------------------------------------------------------


def test_install_replaces_py_libp2p_s_pnet_and_is_idempotent() -> None:
    pnet.install()
    pnet.install()
    factory = getattr(libp2p_swarm, "new_protected_conn")  # noqa: B009  # not exported
    assert factory is not libp2p.security.pnet.protector.new_protected_conn
    conn = factory(ScriptedConn([]), PSK.hex())
    assert isinstance(conn, PnetConnection)
    with pytest.raises(KeyLengthError):
        factory(ScriptedConn([]), "not hex")
    with pytest.raises(PnetError, match="pre-multiplexed"):
        factory(mock.Mock(spec=IMuxedConn), PSK.hex())


def test_install_refuses_another_py_libp2p(monkeypatch: pytest.MonkeyPatch) -> None:
    original = libp2p.security.pnet.protector.new_protected_conn
    monkeypatch.setattr(libp2p_swarm, "new_protected_conn", original)
    monkeypatch.setattr(libp2p, "__version__", "0.9.0")
    with pytest.raises(PnetUnavailable, match=r"patches py-libp2p 0\.8\.1 and found 0\.9\.0"):
        pnet.install()
    assert getattr(libp2p_swarm, "new_protected_conn") is original  # noqa: B009


def test_install_refuses_a_missing_patch_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(libp2p_swarm, "new_protected_conn")
    with pytest.raises(PnetUnavailable, match="new_protected_conn is missing"):
        pnet.install()
    monkeypatch.setattr(libp2p_swarm, "new_protected_conn", lambda c, k: c, raising=False)
    with pytest.raises(PnetUnavailable, match="not py-libp2p's own"):
        pnet.install()


# -- real hosts on 127.0.0.1 ---------------------------------------------------------------


def make_host(psk: bytes, *, upgrade_s: float = 1.0) -> IHost:
    """TCP + Noise + yamux, one connection per peer, no dial retries, short upgrades."""
    pnet.install()
    key_pair = create_new_key_pair()
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt=create_yamux_muxer_option(),
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            inbound_upgrade_timeout=upgrade_s,
            outbound_upgrade_timeout=upgrade_s,
        ),
        psk=pnet.psk_hex(psk),
    )
    # A wrong PSK fails every attempt alike: py-libp2p's 3 retries only multiply the wait.
    swarm: Swarm = host.get_network()  # type: ignore[assignment]  # typed as the interface
    swarm.retry_config = RetryConfig(max_retries=0)
    return host


async def echo(stream: INetStream) -> None:
    try:
        await stream.write(await stream.read(1000))
    finally:
        await stream.close()


async def close_hosts(*hosts: IHost) -> None:
    # Close hosts before their run() contexts are cancelled: cancelled first,
    # py-libp2p 0.8.1 can leave a socket open.
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        for host in hosts:
            await host.close()


async def connect_and_echo(dialer: IHost, listener: IHost) -> float:
    """Connect, then echo over a new stream; returns the seconds the connect took."""
    start = time.monotonic()
    await dialer.connect(info_from_p2p_addr(listener.get_addrs()[0]))
    took = time.monotonic() - start
    stream = await dialer.new_stream(listener.get_id(), [ECHO])
    await stream.write(b"over the private network")
    assert await stream.read(1000) == b"over the private network"
    await stream.close()
    return took


def test_hosts_with_the_same_psk_connect_and_open_a_stream() -> None:
    psk = NetworkSecret.generate().psk

    async def main() -> None:
        listener, dialer = make_host(psk), make_host(psk)
        listener.set_stream_handler(ECHO, echo)
        async with listener.run(LOOPBACK), dialer.run(LOOPBACK):
            try:
                took = await connect_and_echo(dialer, listener)
                assert took < 3
                assert len(dialer.get_network().get_connections(listener.get_id())) == 1
            finally:
                await close_hosts(dialer, listener)

    run(main, timeout=20)


def test_a_wrong_psk_fails_the_dial_fast_and_the_listener_stays_healthy() -> None:
    psk = NetworkSecret.generate().psk

    async def main() -> None:
        listener, stranger, member = make_host(psk), make_host(OTHER_PSK), make_host(psk)
        listener.set_stream_handler(ECHO, echo)
        async with listener.run(LOOPBACK), stranger.run(LOOPBACK), member.run(LOOPBACK):
            try:
                start = time.monotonic()
                with pytest.raises(SwarmException) as failure:
                    await stranger.connect(info_from_p2p_addr(listener.get_addrs()[0]))
                took = time.monotonic() - start
                assert took < 3, f"a wrong PSK took {took:.2f} s to fail"
                # It failed at the security upgrade (TCP was fine), not at dialling.
                assert "security" in _chain(failure.value)
                assert not listener.get_network().get_connections(stranger.get_id())
                # A raw client that sends half a nonce and leaves must not hurt either.
                port = int(listener.get_addrs()[0].value_for_protocol("tcp"))
                async with await trio.open_tcp_stream("127.0.0.1", port) as raw:
                    await raw.send_all(b"\x00" * 10)
                assert await connect_and_echo(member, listener) < 3
            finally:
                await close_hosts(member, stranger, listener)

    run(main, timeout=20)


def _chain(error: BaseException) -> str:
    """The messages of ``error`` and everything it was raised from."""
    messages = []
    seen: BaseException | None = error
    while seen is not None:
        messages.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(messages)


def test_the_host_speaks_the_specification_on_the_wire() -> None:
    """An independent client: plain trio sockets and the reference XSalsa20."""

    async def main() -> None:
        host = make_host(PSK)
        async with host.run(LOOPBACK):
            try:
                port = int(host.get_addrs()[0].value_for_protocol("tcp"))
                async with await trio.open_tcp_stream("127.0.0.1", port) as tcp:
                    # The host sends its nonce at once, though we have sent nothing yet.
                    their_nonce = b""
                    with trio.fail_after(3):
                        while len(their_nonce) < NONCE_BYTES:
                            chunk = await tcp.receive_some(NONCE_BYTES - len(their_nonce))
                            assert chunk, "the host closed before sending its nonce"
                            their_nonce += chunk
                    our_nonce = os.urandom(NONCE_BYTES)
                    hello = MULTISTREAM + NOISE_LINE
                    await tcp.send_all(our_nonce + xsalsa20(PSK, our_nonce, hello))
                    received = b""
                    with trio.fail_after(3):
                        while len(received) < len(hello):
                            chunk = await tcp.receive_some()
                            assert chunk, f"the host closed after {received!r}"
                            received += chunk
                    plaintext = xsalsa20(PSK, their_nonce, received)
                    assert plaintext[: len(MULTISTREAM)] == MULTISTREAM
                    assert plaintext[len(MULTISTREAM) : len(hello)] == NOISE_LINE
            finally:
                await close_hosts(host)

    run(main, timeout=20)


def test_a_libsodium_without_xsalsa20_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pnet, "_sodium", mock.Mock(__file__=ctypes.util.find_library("c")))
    pnet._libsodium.cache_clear()
    try:
        with pytest.raises(PnetUnavailable, match="does not export"):
            PnetConnection(ScriptedConn([]), PSK)
    finally:
        monkeypatch.undo()
        pnet._libsodium.cache_clear()
    assert isinstance(PnetConnection(ScriptedConn([]), PSK), PnetConnection)
