"""Thin, private wrappers over libsodium (via PyNaCl) and BLAKE2b.

Everything outside crypto/ uses the recipes in the public modules instead. Every function
here checks key lengths and maps library errors to our opaque exceptions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import nacl.bindings as _sodium

# PyNaCl's own cffi binding of its bundled libsodium (PyNaCl is pinned). The AEAD calls
# go to it directly: PyNaCl's Python wrappers format an error message for every check
# on every call, which doubled the cost of a decryption (3.6 against 1.8 us for a
# 400-byte envelope), and a store rebuild decrypts twice per op.
from nacl._sodium import ffi as _ffi  # type: ignore[import-not-found]
from nacl._sodium import lib as _lib

from crypto._errors import BadSignature, DecryptionFailed, KeyLengthError

KEY_BYTES = 32
XNONCE_BYTES = 24
AEAD_TAG_BYTES = 16
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
SEALED_BOX_OVERHEAD = _sodium.crypto_box_SEALBYTES

_aead_encrypt = _lib.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = _lib.crypto_aead_xchacha20poly1305_ietf_decrypt
_new = _ffi.new
_buffer = _ffi.buffer
_NULL = _ffi.NULL
_sign_open = _lib.crypto_sign_open
_blake2b = hashlib.blake2b
_OPENER_START = 4096


def check_length(name: str, value: bytes, length: int) -> bytes:
    """Return ``value`` as bytes if it has exactly ``length`` bytes, else raise."""
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        raise KeyLengthError(f"{name} must be {length} bytes")
    return bytes(value)


def hash256(data: bytes, *, person: bytes = b"", key: bytes = b"") -> bytes:
    """BLAKE2b-256, optionally keyed and personalised (person at most 16 bytes)."""
    return _blake2b(data, digest_size=32, person=person, key=key).digest()


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """XChaCha20-Poly1305-IETF encryption. The caller guarantees nonce uniqueness."""
    key, nonce = check_length("key", key, KEY_BYTES), check_length("nonce", nonce, XNONCE_BYTES)
    plaintext, aad = bytes(plaintext), bytes(aad)
    out = _new("unsigned char[]", len(plaintext) + AEAD_TAG_BYTES)
    out_len = _new("unsigned long long *")
    _aead_encrypt(out, out_len, plaintext, len(plaintext), aad, len(aad), _NULL, nonce, key)
    return bytes(_buffer(out, out_len[0]))


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """XChaCha20-Poly1305-IETF decryption; any failure is :class:`DecryptionFailed`."""
    if (
        not isinstance(key, bytes | bytearray)
        or len(key) != KEY_BYTES
        or not isinstance(nonce, bytes | bytearray)
        or len(nonce) != XNONCE_BYTES
        or not isinstance(ciphertext, bytes | bytearray | memoryview)
        or not isinstance(aad, bytes | bytearray | memoryview)
        or len(ciphertext) < AEAD_TAG_BYTES
    ):
        raise DecryptionFailed("decryption failed")
    ciphertext, aad = bytes(ciphertext), bytes(aad)
    out = _new("unsigned char[]", len(ciphertext) - AEAD_TAG_BYTES or 1)
    out_len = _new("unsigned long long *")
    if _aead_decrypt(
        out, out_len, _NULL, ciphertext, len(ciphertext), aad, len(aad), bytes(nonce), bytes(key)
    ):
        raise DecryptionFailed("decryption failed")
    return bytes(_buffer(out, out_len[0]))


def aead_opener(key: bytes) -> Callable[[bytes, bytes], bytes]:
    """:func:`aead_decrypt` for many values ``nonce || ciphertext`` in one loop: the
    returned function reuses one output buffer (about 1 us less per call, half the cost
    of a small value), so it must not be shared between threads.

    The function raises :class:`DecryptionFailed` on any failure, as aead_decrypt does.
    """
    key = check_length("key", key, KEY_BYTES)
    out = _new("unsigned char[]", _OPENER_START)
    size = _OPENER_START
    out_len = _new("unsigned long long *")

    def open_(sealed: bytes, aad: bytes) -> bytes:
        nonlocal out, size
        if (
            type(sealed) is not bytes
            or type(aad) is not bytes
            or len(sealed) < XNONCE_BYTES + AEAD_TAG_BYTES
        ):
            raise DecryptionFailed("decryption failed")
        n = len(sealed) - XNONCE_BYTES
        if n > size:
            out = _new("unsigned char[]", n)
            size = n
        ciphertext = sealed[XNONCE_BYTES:]
        # The nonce is the first 24 bytes of ``sealed``: libsodium reads exactly that many.
        if _aead_decrypt(out, out_len, _NULL, ciphertext, n, aad, len(aad), sealed, key):
            raise DecryptionFailed("decryption failed")
        return bytes(_buffer(out, out_len[0]))

    return open_


def ed25519_verify(
    public_key: bytes, message: bytes, signature: bytes, prefix: bytes = b""
) -> None:
    """Verify a detached Ed25519 signature over ``prefix + message``.

    Raises:
        BadSignature: it does not verify (or a length is wrong).
    """
    if (
        not isinstance(signature, bytes | bytearray)
        or not isinstance(public_key, bytes | bytearray)
        or not isinstance(message, bytes | bytearray | memoryview)
        or not isinstance(prefix, bytes | bytearray)
        or len(signature) != SIGNATURE_BYTES
        or len(public_key) != PUBLIC_KEY_BYTES
    ):
        raise BadSignature("bad signature")
    signed = b"".join((signature, prefix, message))
    # crypto_sign_open accepts NULL for the message copy and its length (libsodium checks
    # both): the check alone, as crypto_sign_verify_detached, which PyNaCl does not bind.
    if _sign_open(_NULL, _NULL, signed, len(signed), bytes(public_key)):
        raise BadSignature("bad signature")
