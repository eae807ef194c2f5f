"""libp2p private networks (PSK v1) for py-libp2p hosts, as the specification says.

Why this module exists
----------------------
A p2pnet network's libp2p hosts form a *private network*: every connection is wrapped,
below multistream-select and Noise, in a stream cipher keyed by the network's PSK
(:attr:`crypto.NetworkSecret.psk`), so someone without the PSK cannot even start a
libp2p handshake with a member, and an observer sees no libp2p protocol names.

py-libp2p 0.8.1 has a pnet layer of its own (``libp2p.security.pnet``) but it does not
follow the specification (libp2p/specs ``pnet/Private-Networks-PSK-V1.md``): it uses
Salsa20 with an 8-byte nonce, sent only with the first write. It cannot talk to go-, js-
or rust-libp2p private networks, and random 8-byte nonces are likely to repeat within
about 2**32 connections under one PSK, which repeats keystream. :func:`install` therefore replaces
the name ``new_protected_conn`` in the namespace of ``libp2p.network.swarm`` (where the
swarm calls it for every dialled and accepted connection when a host was created with
``new_host(psk=<64 hex characters>)``) by this module's spec-conformant layer.

The patch depends on the exact py-libp2p release that pyproject.toml pins (0.8.1):
:func:`install` checks the version and the patch point and raises
:class:`PnetUnavailable` rather than run a host whose connections might silently go out
with py-libp2p's own layer. Revisit this module whenever the pin moves.

Theory of operation
-------------------
Each side draws a random 24-byte nonce and sends it in the clear before anything else;
from then on, everything it sends is XORed with the XSalsa20 keystream of (PSK, its own
nonce), and everything it receives with the keystream of (PSK, the peer's nonce). Both
keystreams continue across writes and reads of any size: each direction keeps its byte
offset into the keystream.

The specification wants both nonces on the wire as soon as the connection opens. py-libp2p
builds the protected connection in a synchronous factory, where nothing can be sent, and
starts using it (multistream-select) straight away; so the nonce goes out on the first
read *or* write, whichever comes first. A side whose first move is to read therefore still
sends its nonce before it waits for the peer's: two such sides cannot deadlock.

Writes are serialised under a lock, because the keystream offset is taken when a chunk is
encrypted and the chunks must reach the wire in that order. Reads of the peer's nonce loop
over short reads; a connection that ends before 24 bytes is a :class:`PnetError`.

Security caveats
----------------
- pnet is access control and obfuscation, not a secure channel: the XOR stream has no
  authentication, so bit flips by an active attacker pass this layer unnoticed. Noise,
  above it, authenticates and encrypts everything; never run a host without it.
- A wrong PSK is never detected here (nothing in the specification checks the key): the
  peer's bytes decrypt to noise and the layer above fails. py-libp2p 0.8.1 mostly waits
  for more of that noise: the listener gives up after ``ConnectionConfig.
  inbound_upgrade_timeout`` and closes, which ends the dial; the dialer's own security
  negotiation waits up to 30 s, and its swarm retries a failed dial 3 times. Bound dials.
- The PSK lives as long as the network secret, so a removed member keeps it; pnet only
  keeps out people who never joined.
- Nonces are 24 random bytes from the operating system, so keystream reuse between two
  connections under one PSK is negligible for any realistic number of connections.
- Lengths and timing of the traffic remain visible to an observer.

XSalsa20 comes from the libsodium that PyNaCl bundles: PyNaCl's cffi binding does not
declare ``crypto_stream_xsalsa20_xor_ic``, so a second cffi handle over the same
extension module declares it (the symbol is exported on Linux and macOS builds).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Final

import cffi  # type: ignore[import-untyped]  # cffi ships no type information
import libp2p
import libp2p.network.swarm as _swarm
import libp2p.security.pnet.protector as _libp2p_pnet
import nacl.bindings  # noqa: F401  # imported for its sodium_init() before the first call
import trio
from libp2p.abc import IMuxedConn, IRawConnection
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.connection.raw_connection import RawConnection
from multiaddr import Multiaddr
from nacl import _sodium

from crypto import KeyLengthError
from p2pnet.errors import P2pnetError

__all__ = [
    "NONCE_BYTES",
    "PSK_BYTES",
    "PnetConnection",
    "PnetError",
    "PnetUnavailable",
    "install",
    "protect",
    "psk_hex",
]

PSK_BYTES: Final = 32
NONCE_BYTES: Final = 24
PINNED_LIBP2P: Final = "0.8.1"

# Salsa20 works on 64-byte blocks; libsodium's ``_ic`` call starts at a block counter.
_BLOCK_BYTES: Final = 64
# The largest read passed down. A caller may ask for any ``n`` (py-libp2p reads a
# length prefix and then asks for that many bytes), and trio's receive_some allocates
# ``n`` bytes up front: with a wrong PSK the "length" is noise, up to 2**64. A read may
# always return fewer bytes than asked, so asking for at most this many is safe.
_MAX_READ: Final = 65536

_PATCH_MODULE: Final = "libp2p.network.swarm"
_PATCH_NAME: Final = "new_protected_conn"


class PnetError(P2pnetError, RawConnError):
    """A private-network connection failed: the peer did not send a whole nonce, or the
    connection broke while a chunk was on its way (the keystreams are then out of step).

    A :class:`libp2p.network.connection.exceptions.RawConnError` too, so py-libp2p's
    upgrade code treats it as the broken connection it is.
    """


class PnetUnavailable(P2pnetError, RuntimeError):
    """The pnet layer cannot be installed: another py-libp2p release, or a libsodium
    without XSalsa20."""


def psk_hex(psk: bytes) -> str:
    """The PSK as py-libp2p's ``new_host(psk=...)`` takes it: 64 lowercase hex characters.

    Raises:
        KeyLengthError: ``psk`` is not 32 bytes.
    """
    return _check_psk(psk).hex()


def protect(conn: IRawConnection, psk: bytes) -> PnetConnection:
    """Wrap ``conn`` in the private-network layer keyed by ``psk``.

    Raises:
        KeyLengthError: ``psk`` is not 32 bytes.
        PnetUnavailable: the bundled libsodium does not export XSalsa20.
    """
    return PnetConnection(conn, psk)


class PnetConnection(RawConnection):
    """A raw connection protected by a libp2p PSK v1 private network.

    Usable wherever py-libp2p expects an ``IRawConnection``. The nonce is sent on the first
    read or write; see the module docstring for the protocol and its limits.

    Raises (from :meth:`read` and :meth:`write`):
        PnetError: the peer closed before its whole nonce, or an earlier write broke off.
        RawConnError: the underlying connection failed (as from any raw connection).
    """

    def __init__(self, conn: IRawConnection, psk: bytes) -> None:
        # RawConnection.__init__ is not called: there is no trio stream of our own; every
        # RawConnection method that would use one is overridden to go to ``conn``.
        self._conn = conn
        self._psk = _check_psk(psk)
        _libsodium()  # PnetUnavailable now rather than at the first byte
        self.is_initiator = conn.is_initiator
        self._local_nonce = os.urandom(NONCE_BYTES)
        self._write_offset = 0
        self._nonce_sent = False
        self._nonce_lock = trio.Lock()
        self._write_broken = False
        self._write_lock = trio.Lock()
        self._remote_nonce: bytes | None = None
        self._read_offset = 0
        self._read_lock = trio.Lock()

    async def write(self, data: bytes) -> None:
        """Encrypt ``data`` and send it, after our nonce if it has not gone out yet.

        Raises:
            PnetError: an earlier write broke off mid-way.
            RawConnError: the underlying connection failed.
        """
        async with self._write_lock:
            await self._send_nonce()
            if not data:
                return
            ciphertext = self._xor(data, self._local_nonce, self._write_offset)
            self._write_offset += len(data)
            await self._send_locked(ciphertext)

    async def read(self, n: int | None = None) -> bytes:
        """Read and decrypt up to ``n`` bytes (any amount if ``None``); ``b""`` at the end.

        The first call sends our nonce if no write has, then reads the peer's.

        Raises:
            PnetError: the peer's nonce was cut short, or our nonce could not be sent.
            RawConnError: the underlying connection failed.
        """
        await self._send_nonce()
        async with self._read_lock:
            if self._remote_nonce is None:
                self._remote_nonce = await self._read_nonce()
            if n is not None and n <= 0:
                return b""
            ciphertext = await self._conn.read(_MAX_READ if n is None else min(n, _MAX_READ))
            if not ciphertext:
                return b""
            plaintext = self._xor(ciphertext, self._remote_nonce, self._read_offset)
            self._read_offset += len(ciphertext)
            return plaintext

    async def close(self) -> None:
        """Close the underlying connection."""
        await self._conn.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        """The peer's (host, port), as the underlying connection reports it."""
        return self._conn.get_remote_address()

    def get_transport_addresses(self) -> list[Multiaddr]:
        """The underlying connection's transport multiaddrs."""
        return list(self._conn.get_transport_addresses())

    def get_connection_type(self) -> ConnectionType:
        """The underlying connection's type (direct, relayed)."""
        return self._conn.get_connection_type()

    async def _send_nonce(self) -> None:
        # A lock of its own, not the write lock: a first read must not wait behind a
        # long write, only behind the 24 bytes that every write sends first. Ciphertext is
        # written only after this returned, so the two locks never write at once.
        if self._nonce_sent:
            return
        async with self._nonce_lock:
            if not self._nonce_sent:
                await self._send_locked(self._local_nonce)
                self._nonce_sent = True

    async def _send_locked(self, data: bytes) -> None:
        if self._write_broken:
            raise PnetError("an earlier write to this connection broke off; close it")
        # Until the chunk is fully on the wire the peer's keystream offset is unknown, so
        # a failed or cancelled send leaves the connection unusable for writing.
        self._write_broken = True
        await self._conn.write(data)
        self._write_broken = False

    async def _read_nonce(self) -> bytes:
        nonce = b""
        while len(nonce) < NONCE_BYTES:
            chunk = await self._conn.read(NONCE_BYTES - len(nonce))
            if not chunk:
                raise PnetError(
                    f"the peer closed the connection after {len(nonce)} of the "
                    f"{NONCE_BYTES} bytes of its private-network nonce"
                )
            nonce += chunk
        return nonce

    def _xor(self, data: bytes, nonce: bytes, offset: int) -> bytes:
        # libsodium starts at a block boundary: prepend the bytes of the current block
        # already used, XOR from that block, and drop them again.
        skip = offset % _BLOCK_BYTES
        out = _xsalsa20_xor_ic(bytes(skip) + bytes(data), nonce, offset // _BLOCK_BYTES, self._psk)
        return out[skip:]


def install() -> None:
    """Make py-libp2p's swarm use this layer for ``new_host(psk=...)``. Idempotent.

    Call it before creating hosts; it changes the process-wide ``libp2p.network.swarm``
    module, so every host of the process that has a PSK speaks the specification.

    Raises:
        PnetUnavailable: py-libp2p is not the pinned release, its patch point is gone,
            or the bundled libsodium does not export XSalsa20.
    """
    current = getattr(_swarm, _PATCH_NAME, None)
    if current is _new_protected_conn:
        return
    version = getattr(libp2p, "__version__", "unknown")
    if version != PINNED_LIBP2P:
        raise PnetUnavailable(
            f"p2pnet.net.pnet patches py-libp2p {PINNED_LIBP2P} and found {version}: "
            "check that libp2p/network/swarm.py still protects connections through "
            f"{_PATCH_NAME}(raw_conn, psk) and update PINNED_LIBP2P"
        )
    if current is None or current is not getattr(_libp2p_pnet, _PATCH_NAME, None):
        raise PnetUnavailable(
            f"{_PATCH_MODULE}.{_PATCH_NAME} is missing or not py-libp2p's own: "
            "cannot install the specification's private-network layer"
        )
    _libsodium()
    setattr(_swarm, _PATCH_NAME, _new_protected_conn)


def _new_protected_conn(conn: IRawConnection, psk: str) -> PnetConnection:
    """The swarm's ``new_protected_conn(raw_conn, psk)``, with the PSK in hex."""
    if isinstance(conn, IMuxedConn):
        # QUIC and other pre-multiplexed transports have no byte stream to wrap; go-libp2p
        # refuses them in a private network too. Failing beats an unprotected connection.
        raise PnetError("a private network cannot protect a pre-multiplexed (QUIC) connection")
    try:
        key = bytes.fromhex(psk)
    except (TypeError, ValueError):
        raise KeyLengthError("the libp2p PSK must be 64 hex characters") from None
    return PnetConnection(conn, key)


def _check_psk(psk: bytes) -> bytes:
    if not isinstance(psk, bytes | bytearray) or len(psk) != PSK_BYTES:
        raise KeyLengthError(f"a libp2p PSK must be {PSK_BYTES} bytes")
    return bytes(psk)


def _xsalsa20_xor_ic(data: bytes, nonce: bytes, block: int, key: bytes) -> bytes:
    """``data`` XORed with the XSalsa20 keystream of (``key``, ``nonce``) from 64-byte block
    ``block`` on. Lengths are the caller's to check (the PSK at construction, nonces by size).
    """
    ffi, lib = _libsodium()
    out = ffi.new("unsigned char[]", len(data) or 1)
    lib.crypto_stream_xsalsa20_xor_ic(out, data, len(data), nonce, block, key)
    result: bytes = ffi.buffer(out, len(data))[:]
    return result


@functools.cache
def _libsodium() -> tuple[Any, Any]:
    """A cffi handle on the libsodium PyNaCl bundles, declaring
    ``crypto_stream_xsalsa20_xor_ic`` (PyNaCl's own binding does not). Cached, which also
    keeps the library handle alive.

    Raises:
        PnetUnavailable: that libsodium does not export the function.
    """
    ffi = cffi.FFI()
    ffi.cdef(
        "int crypto_stream_xsalsa20_xor_ic(unsigned char *c, const unsigned char *m,"
        " unsigned long long mlen, const unsigned char *n, uint64_t ic,"
        " const unsigned char *k);"
    )
    try:
        lib = ffi.dlopen(_sodium.__file__)
        lib.crypto_stream_xsalsa20_xor_ic  # noqa: B018  # resolve the symbol now
    except (OSError, AttributeError) as error:
        raise PnetUnavailable(
            "PyNaCl's libsodium does not export crypto_stream_xsalsa20_xor_ic "
            f"(needed for libp2p private networks): {error}"
        ) from None
    return ffi, lib
