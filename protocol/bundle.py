"""Bundle files and bundle summaries: sync carried by hand (pure formats).

Theory of operation
-------------------
A *bundle* carries envelopes of one network on a USB stick or any other channel. It is
opaque without the network secret: everything after a fixed 9-byte preamble is one
libsodium secretstream under the network's bundle key, cut into fixed-size chunks, so
an observer learns only the size in 256 KiB steps — not the network, not how many
envelopes, not their sizes::

    "P2PNETBN" | version 0x01 | stream header (24) | chunk ciphertext * n

Each chunk is exactly ``CHUNK + 17`` bytes: ``secretstream(pad(body))`` with the
preamble as associated data, the last chunk tagged FINAL. ``pad(body) = u32(len(body))
| body | zeros`` to ``CHUNK`` bytes; ``body`` is canonical msgpack
``[network_id, [envelope, ...]]``. A reader opens chunks in order: a truncated file
yields every complete chunk before the cut and is reported as truncated; an altered
chunk stops the reading there. Nothing is trusted because it was in a bundle: every
envelope is validated like a synced one.

A *bundle summary* tells a member with the stick what the recipient already holds, so
the bundle carries only the difference. It is small enough for a QR code for a typical
network (about 30 bytes per author)::

    "P2PNETSM" | version 0x01 | nonce (24) | XChaCha20-Poly1305(bundle key, nonce,
        pad256(msgpack [network_id, summary]), aad = the 33 bytes before)

``pad256`` is the same length-prefixed padding to a multiple of 256 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from crypto import (
    STREAM_HEADER_BYTES,
    STREAM_OVERHEAD,
    CryptoError,
    EpochKey,
    StreamOpener,
    StreamSealer,
)
from protocol import wire
from protocol._errors import LocalProtocolError, RemoteProtocolError
from protocol.envelope import MAX_ENVELOPE_BYTES
from protocol.reconcile import Summary

__all__ = [
    "BUNDLE_MAGIC",
    "CHUNK",
    "CHUNK_BYTES",
    "PREAMBLE",
    "SUMMARY_MAGIC",
    "BundleReader",
    "open_summary",
    "seal_bundle",
    "seal_summary",
]

BUNDLE_MAGIC = b"P2PNETBN"
SUMMARY_MAGIC = b"P2PNETSM"
VERSION = 1
PREAMBLE = BUNDLE_MAGIC + bytes([VERSION])
CHUNK = 256 * 1024
CHUNK_BYTES = CHUNK + STREAM_OVERHEAD
HEADER_BYTES = len(PREAMBLE) + STREAM_HEADER_BYTES
_LEN = struct.Struct(">I")
_MAX_SUMMARY = 1 << 20
_NONCE = 24


def _pad(body: bytes, size: int) -> bytes:
    return _LEN.pack(len(body)) + body + bytes(size - _LEN.size - len(body))


def _unpad(padded: bytes) -> bytes:
    if len(padded) < _LEN.size:
        raise RemoteProtocolError("bad padding")
    (length,) = _LEN.unpack_from(padded)
    end = _LEN.size + length
    if end > len(padded) or any(padded[end:]):
        raise RemoteProtocolError("bad padding")
    return padded[_LEN.size : end]


def seal_bundle(network_id: bytes, envelopes: Iterable[bytes], *, key: EpochKey) -> Iterator[bytes]:
    """The bundle's bytes, piece by piece (preamble and header, then each chunk).

    Raises:
        LocalProtocolError: an envelope larger than any envelope may be.
    """
    sealer = StreamSealer(key.key)
    yield PREAMBLE + sealer.header
    pending: list[bytes] = []
    size = 64  # the body's msgpack framing, generously
    budget = CHUNK - _LEN.size
    for envelope in envelopes:
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise LocalProtocolError("envelope too large for a bundle")
        cost = len(envelope) + 5
        if pending and size + cost > budget:
            body = _pad(wire.encode([network_id, pending]), CHUNK)
            yield sealer.seal(body, final=False, aad=PREAMBLE)
            pending, size = [], 64
        pending.append(envelope)
        size += cost
    body = _pad(wire.encode([network_id, pending]), CHUNK)
    yield sealer.seal(body, final=True, aad=PREAMBLE)


class BundleReader:
    """Reads a bundle chunk by chunk once a key has opened its first chunk."""

    def __init__(self, head: bytes, keys: Mapping[bytes, EpochKey], first_chunk: bytes) -> None:
        """Find which of ``keys`` (network id -> bundle key) opens this bundle.

        Raises:
            RemoteProtocolError: not a bundle, a newer version, or none of our networks'.
        """
        if len(head) != HEADER_BYTES or head[: len(BUNDLE_MAGIC)] != BUNDLE_MAGIC:
            raise RemoteProtocolError("not a p2pnet bundle")
        if head[len(BUNDLE_MAGIC)] != VERSION:
            raise RemoteProtocolError("a bundle from a newer version of p2pnet")
        header = head[len(PREAMBLE) :]
        for network_id, key in keys.items():
            opener = StreamOpener(key.key, header)
            try:
                plaintext = opener.open(first_chunk, aad=PREAMBLE)
            except CryptoError:
                continue
            self.network_id = network_id
            self._opener = opener
            self._first: list[bytes] | None = self._envelopes(plaintext)
            return
        raise RemoteProtocolError(
            "this bundle is not for any network of this profile, or it is damaged"
        )

    @property
    def finished(self) -> bool:
        """Whether the FINAL chunk has been read."""
        return self._opener.finished

    def first(self) -> list[bytes]:
        """The envelopes of the first chunk (once)."""
        envelopes, self._first = self._first or [], None
        return envelopes

    def next_chunk(self, chunk: bytes) -> list[bytes]:
        """The envelopes of the next chunk.

        Raises:
            RemoteProtocolError: the chunk was altered, reordered or is incomplete.
        """
        if len(chunk) != CHUNK_BYTES:
            raise RemoteProtocolError("the bundle is truncated")
        try:
            return self._envelopes(self._opener.open(chunk, aad=PREAMBLE))
        except CryptoError:
            raise RemoteProtocolError("a bundle chunk was altered") from None

    def _envelopes(self, plaintext: bytes) -> list[bytes]:
        body = wire.decode(_unpad(plaintext), max_size=CHUNK, max_items=CHUNK // 16)
        if (
            type(body) is not list
            or len(body) != 2
            or body[0] != self.network_id
            or type(body[1]) is not list
            or not all(type(e) is bytes for e in body[1])
        ):
            raise RemoteProtocolError("malformed bundle chunk")
        return list(body[1])


def seal_summary(network_id: bytes, summary: Summary, *, key: EpochKey, nonce: bytes) -> bytes:
    """A bundle summary file's bytes."""
    head = SUMMARY_MAGIC + bytes([VERSION]) + nonce
    body = wire.encode([network_id, summary.to_wire()])
    size = -(-(len(body) + _LEN.size) // 256) * 256
    return head + key.encrypt(_pad(body, size), head, nonce)


def open_summary(data: bytes, keys: Mapping[bytes, EpochKey]) -> tuple[bytes, Summary]:
    """Open a bundle summary with whichever network key fits.

    Raises:
        RemoteProtocolError: not a summary, damaged, or for none of our networks.
    """
    head_len = len(SUMMARY_MAGIC) + 1 + _NONCE
    if len(data) > _MAX_SUMMARY or len(data) < head_len + 16 or data[:8] != SUMMARY_MAGIC:
        raise RemoteProtocolError("not a p2pnet bundle summary")
    if data[8] != VERSION:
        raise RemoteProtocolError("a bundle summary from a newer version of p2pnet")
    head = data[:head_len]
    for network_id, key in keys.items():
        try:
            padded = key.decrypt(data[head_len:], head, head[9:])
        except CryptoError:
            continue
        obj: Any = wire.decode(_unpad(padded), max_size=_MAX_SUMMARY, max_items=20_000)
        if type(obj) is not list or len(obj) != 2 or obj[0] != network_id:
            raise RemoteProtocolError("malformed bundle summary")
        return network_id, Summary.from_wire(obj[1])
    raise RemoteProtocolError("this summary is not for any network of this profile, or damaged")
