"""Thin, private wrappers over libsodium (via PyNaCl) and BLAKE2b.

Everything outside crypto/ uses the recipes in the public modules instead. Every function
here checks key lengths and maps library errors to our opaque exceptions.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as _sodium
import nacl.exceptions as _nacl_exc

from crypto._errors import BadSignature, DecryptionFailed, KeyLengthError

KEY_BYTES = 32
XNONCE_BYTES = 24
AEAD_TAG_BYTES = 16
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
SEALED_BOX_OVERHEAD = _sodium.crypto_box_SEALBYTES

_aead_encrypt = _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt
_sign_open = _sodium.crypto_sign_open
_blake2b = hashlib.blake2b


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
    return _aead_encrypt(plaintext, aad, nonce, key)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """XChaCha20-Poly1305-IETF decryption; any failure is :class:`DecryptionFailed`."""
    try:
        return _aead_decrypt(ciphertext, aad, nonce, key)
    except (_nacl_exc.CryptoError, ValueError, TypeError):
        raise DecryptionFailed("decryption failed") from None


def ed25519_verify(
    public_key: bytes, message: bytes, signature: bytes, prefix: bytes = b""
) -> None:
    """Verify a detached Ed25519 signature over ``prefix + message``.

    Raises:
        BadSignature: it does not verify (or a length is wrong).
    """
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        raise BadSignature("bad signature")
    try:
        _sign_open(b"".join((signature, prefix, message)), public_key)
    except (_nacl_exc.CryptoError, ValueError, TypeError):
        raise BadSignature("bad signature") from None
