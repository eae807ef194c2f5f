"""Chunked authenticated encryption for files (bundles): libsodium's secretstream.

A file is a 24-byte header and a sequence of chunks, each authenticated with its
position in the stream; the last carries the FINAL tag. Reordering, dropping or
duplicating chunks fails authentication, and a truncated file is recognised as such
(no FINAL) while every chunk before the cut still opens, so a half-copied USB stick
yields what was copied, never anything forged.
"""

from __future__ import annotations

import nacl.bindings as _sodium
import nacl.exceptions as _nacl_exc

from crypto._errors import DecryptionFailed
from crypto._primitives import KEY_BYTES, check_length

__all__ = ["STREAM_HEADER_BYTES", "STREAM_OVERHEAD", "StreamOpener", "StreamSealer"]

STREAM_HEADER_BYTES = _sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
STREAM_OVERHEAD = _sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_FINAL = _sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_MESSAGE = _sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE


class StreamSealer:
    """Encrypts a stream of chunks under ``key``; read :attr:`header` first."""

    def __init__(self, key: bytes) -> None:
        key = check_length("stream key", key, KEY_BYTES)
        self._state = _sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header: bytes = _sodium.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, key
        )
        self._finished = False

    def seal(self, chunk: bytes, *, final: bool, aad: bytes = b"") -> bytes:
        """Encrypt the next chunk (``final`` for the last one)."""
        if self._finished:
            raise ValueError("the stream is already finished")
        self._finished = final
        return _sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, chunk, aad or None, _FINAL if final else _MESSAGE
        )


class StreamOpener:
    """Decrypts a stream sealed by :class:`StreamSealer`.

    Raises (from the constructor and :meth:`open`):
        DecryptionFailed: wrong key, altered, reordered or out-of-place chunk.
    """

    def __init__(self, key: bytes, header: bytes) -> None:
        key = check_length("stream key", key, KEY_BYTES)
        self._state = _sodium.crypto_secretstream_xchacha20poly1305_state()
        try:
            _sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
        except (_nacl_exc.CryptoError, ValueError, TypeError):
            raise DecryptionFailed("decryption failed") from None
        self.finished = False

    def open(self, chunk: bytes, *, aad: bytes = b"") -> bytes:
        """Decrypt the next chunk; :attr:`finished` turns true at the FINAL chunk."""
        if self.finished:
            raise DecryptionFailed("data after the end of the stream")
        try:
            plaintext, tag = _sodium.crypto_secretstream_xchacha20poly1305_pull(
                self._state, chunk, aad or None
            )
        except (_nacl_exc.CryptoError, ValueError, TypeError, RuntimeError):
            raise DecryptionFailed("decryption failed") from None
        self.finished = tag == _FINAL
        return bytes(plaintext)
