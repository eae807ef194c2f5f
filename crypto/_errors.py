"""Exceptions of the crypto layer.

Failures are deliberately opaque: a caller (or an attacker probing us) learns that
something failed, never which check failed.
"""

from __future__ import annotations

__all__ = [
    "BadSignature",
    "CryptoError",
    "DecryptionFailed",
    "KeyLengthError",
    "KeystoreCorrupt",
    "KeystoreLocked",
    "KeystoreMissing",
]


class CryptoError(Exception):
    """Root of every error raised by the crypto package."""


class BadSignature(CryptoError):
    """A signature did not verify."""


class DecryptionFailed(CryptoError):
    """A ciphertext could not be authenticated or decrypted (wrong key or tampered bytes)."""


class KeyLengthError(CryptoError, ValueError):
    """Key material of the wrong length was given."""


class KeystoreLocked(CryptoError):
    """The keystore could not be opened with the given passphrase."""


class KeystoreCorrupt(CryptoError):
    """The keystore file is damaged or not a p2pnet keystore."""


class KeystoreMissing(CryptoError, FileNotFoundError):
    """There is no keystore at the given path."""
