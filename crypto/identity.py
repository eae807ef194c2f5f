"""Member identities: an Ed25519 signing key, with X25519 derived from it for sealing.

Security notes:
- Signatures are always domain-separated: ``sign(domain, message)`` signs
  ``b"p2pnet/" + domain + b"\\x00" + message``, so a signature made for one purpose
  (an op, an invite proof) can never be replayed as another.
- ``Identity`` holds the 32-byte seed; its ``repr`` never shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.bindings as _sodium
import nacl.exceptions as _nacl_exc
import nacl.public
import nacl.signing

from crypto._errors import DecryptionFailed, KeyLengthError
from crypto._primitives import (
    KEY_BYTES,
    PUBLIC_KEY_BYTES,
    check_length,
    ed25519_verify,
    hash256,
)

__all__ = [
    "Identity",
    "PublicIdentity",
    "is_valid_public_key",
    "signing_input",
    "verify_signature",
]

_DOMAIN_MAX = 32


def signing_input(domain: bytes, message: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers for ``domain``."""
    if not domain or len(domain) > _DOMAIN_MAX or b"\x00" in domain:
        raise ValueError("bad signature domain")
    return b"p2pnet/" + domain + b"\x00" + message


def is_valid_public_key(key: bytes) -> bool:
    """Whether ``key`` is an Ed25519 public key we can verify with and seal to."""
    try:
        PublicIdentity(key).x25519()
    except (KeyLengthError, TypeError):
        return False
    return True


def verify_signature(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> None:
    """Check a domain-separated signature by the raw 32-byte ``public_key``.

    The same check as :meth:`PublicIdentity.verify`, without building the object: for
    hot paths that verify many ops.

    Raises:
        BadSignature: it does not verify (or a length is wrong).
    """
    ed25519_verify(public_key, message, signature, _PREFIXES.get(domain) or _prefix(domain))


def _prefix(domain: bytes) -> bytes:
    prefix = _PREFIXES.get(domain)
    if prefix is None:
        prefix = signing_input(domain, b"")
        if len(_PREFIXES) < 64:
            _PREFIXES[domain] = prefix
    return prefix


_PREFIXES: dict[bytes, bytes] = {}


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """A member's public key (Ed25519). Safe to share and to show."""

    key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", check_length("public key", self.key, PUBLIC_KEY_BYTES))

    @property
    def fingerprint(self) -> str:
        """Short hex fingerprint for display (16 hex digits, grouped)."""
        digest = hash256(self.key, person=b"p2pnet-fpr").hex()[:16]
        return " ".join(digest[i : i + 4] for i in range(0, 16, 4))

    def x25519(self) -> bytes:
        """The X25519 public key used to seal messages to this member.

        Raises:
            KeyLengthError: the Ed25519 key is not a valid curve point.
        """
        try:
            return bytes(_sodium.crypto_sign_ed25519_pk_to_curve25519(self.key))
        except (_nacl_exc.CryptoError, ValueError, TypeError, RuntimeError):
            raise KeyLengthError("not a valid Ed25519 public key") from None

    def verify(self, domain: bytes, message: bytes, signature: bytes) -> None:
        """Check a domain-separated signature.

        Raises:
            BadSignature: the signature does not verify.
        """
        ed25519_verify(self.key, signing_input(domain, message), signature)

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt anonymously to this member (libsodium sealed box to its X25519 key)."""
        return bytes(nacl.public.SealedBox(nacl.public.PublicKey(self.x25519())).encrypt(plaintext))


@dataclass(frozen=True, slots=True)
class Identity:
    """A member's private identity. Created from a 32-byte seed; never printed."""

    seed: bytes = field(repr=False)
    _signing: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)
    _unsealer: nacl.public.SealedBox[nacl.public.PrivateKey] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", check_length("identity seed", self.seed, KEY_BYTES))
        signing = nacl.signing.SigningKey(self.seed)
        object.__setattr__(self, "_signing", signing)
        object.__setattr__(
            self, "_unsealer", nacl.public.SealedBox(signing.to_curve25519_private_key())
        )

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity from the operating system's CSPRNG."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def public(self) -> PublicIdentity:
        """The public half."""
        return PublicIdentity(bytes(self._signing.verify_key))

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """A detached Ed25519 signature over ``signing_input(domain, message)``."""
        return bytes(self._signing.sign(signing_input(domain, message)).signature)

    def unseal(self, sealed: bytes) -> bytes:
        """Open a sealed box addressed to this identity.

        Raises:
            DecryptionFailed: not for us, or tampered.
        """
        try:
            return bytes(self._unsealer.decrypt(sealed))
        except (_nacl_exc.CryptoError, ValueError, TypeError):
            raise DecryptionFailed("decryption failed") from None

    def __repr__(self) -> str:
        return f"Identity(public={self.public.fingerprint!r})"
