"""Group keys: the network secret, what is derived from it, and key epochs.

Theory of operation
-------------------
Each network has one random 32-byte *network secret*, held by every member. It never
encrypts anything itself; keyed BLAKE2b with a distinct personalisation derives one key
per purpose (route tag, libp2p PSK, LAN-discovery token), so no derived value reveals
another or the secret.

Shared-state ops are encrypted under an *epoch key* (random 32 bytes, with a 16-byte
epoch id derived from it: :meth:`EpochKey.id_for`). A removal starts a new epoch whose
key is sealed to each remaining member; the removed member never learns it.

AEAD is XChaCha20-Poly1305 with a fresh random 24-byte nonce per message: random nonces
of that size are safe for any realistic number of messages under one key. The header
of the envelope is the associated data, so moving a ciphertext into another header fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from crypto._primitives import (
    KEY_BYTES,
    XNONCE_BYTES,
    aead_decrypt,
    aead_encrypt,
    aead_opener,
    check_length,
    hash256,
)

__all__ = [
    "EPOCH_ID_BYTES",
    "ROUTE_TAG_BYTES",
    "EpochKey",
    "LocalKey",
    "NetworkSecret",
    "random_bytes",
]

ROUTE_TAG_BYTES = 16
EPOCH_ID_BYTES = 16


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG."""
    return os.urandom(n)


@dataclass(frozen=True, slots=True)
class NetworkSecret:
    """The root secret of one network. Never leaves members' keystores."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "secret", check_length("network secret", self.secret, KEY_BYTES))

    @classmethod
    def generate(cls) -> NetworkSecret:
        return cls(random_bytes(KEY_BYTES))

    def _derive(self, purpose: bytes, size: int = 32, context: bytes = b"") -> bytes:
        return hash256(context, person=purpose, key=self.secret)[:size]

    @property
    def network_id(self) -> bytes:
        """A public 16-byte id of the network (in op ``net``, invite codes)."""
        return self._derive(b"p2pnet-netid", 16)

    @property
    def route_tag(self) -> bytes:
        """16 bytes that label this network's envelopes for relays and sync."""
        return self._derive(b"p2pnet-route", ROUTE_TAG_BYTES)

    @property
    def psk(self) -> bytes:
        """The 32-byte libp2p private-network pre-shared key."""
        return self._derive(b"p2pnet-psk")

    @property
    def export_key(self) -> EpochKey:
        """The key for exported files every member can open (decision logs).

        An :class:`EpochKey` whose id is derived too, so a file names which key it needs
        without revealing the network.
        """
        return EpochKey(self._derive(b"p2pnet-exportid", 16), self._derive(b"p2pnet-export"))

    @property
    def bundle_key(self) -> EpochKey:
        """The key for bundle files and bundle summaries carried by hand (its id is never
        written: readers try their networks' keys, so bundles cannot be linked by it)."""
        return EpochKey(self._derive(b"p2pnet-bundleid", 16), self._derive(b"p2pnet-bundle"))

    def lan_token(self, period: int) -> bytes:
        """The LAN-discovery token for time period ``period`` (the caller picks the clock).

        Unlinkable across periods without the secret.
        """
        if not 0 <= period < 1 << 64:
            raise ValueError("period must be from 0 to 2**64 - 1")
        return self._derive(b"p2pnet-lan", 16, period.to_bytes(8, "big"))

    def __repr__(self) -> str:
        return "NetworkSecret(<hidden>)"


@dataclass(frozen=True, slots=True)
class EpochKey:
    """A symmetric key for one key epoch of a network, with its public id."""

    epoch_id: bytes
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "epoch_id", check_length("epoch id", self.epoch_id, EPOCH_ID_BYTES)
        )
        object.__setattr__(self, "key", check_length("epoch key", self.key, KEY_BYTES))

    @classmethod
    def generate(cls) -> EpochKey:
        """A new random key, with the epoch id that belongs to it (:meth:`id_for`)."""
        key = random_bytes(KEY_BYTES)
        return cls(cls.id_for(key), key)

    @staticmethod
    def id_for(key: bytes) -> bytes:
        """The epoch id of a key: its first 16 bytes of BLAKE2b-256 under the person
        ``p2pnet-epoch-id``. Binding the id to the key means that no one can hand out
        another key under an epoch's id (docs/protocol.md §5.2); the id reveals nothing
        of the key."""
        return hash256(check_length("epoch key", key, KEY_BYTES), person=b"p2pnet-epoch-id")[
            :EPOCH_ID_BYTES
        ]

    @property
    def id_matches(self) -> bool:
        """Whether :attr:`epoch_id` is the id of :attr:`key` (:meth:`id_for`)."""
        return self.epoch_id == self.id_for(self.key)

    def encrypt(self, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
        """Encrypt with the caller's fresh nonce (see :func:`random_bytes`)."""
        nonce = check_length("nonce", nonce, XNONCE_BYTES)
        return aead_encrypt(self.key, nonce, plaintext, aad)

    def decrypt(self, ciphertext: bytes, aad: bytes, nonce: bytes) -> bytes:
        """Authenticate and decrypt.

        Raises:
            DecryptionFailed: wrong key, wrong header, or tampered ciphertext.
        """
        return aead_decrypt(self.key, nonce, ciphertext, aad)

    def __repr__(self) -> str:
        return f"EpochKey(epoch_id={self.epoch_id.hex()!r})"


@dataclass(frozen=True, slots=True)
class LocalKey:
    """The profile key: encrypts local data at rest (store rows, state cache).

    ``seal`` prepends a random nonce; ``aad`` must name what the value is (table and
    row key), so a ciphertext cannot be swapped into another row.
    """

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", check_length("profile key", self.key, KEY_BYTES))

    @classmethod
    def generate(cls) -> LocalKey:
        return cls(random_bytes(KEY_BYTES))

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = random_bytes(XNONCE_BYTES)
        return nonce + aead_encrypt(self.key, nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """Raises :class:`DecryptionFailed` on any mismatch."""
        return aead_decrypt(self.key, sealed[:XNONCE_BYTES], sealed[XNONCE_BYTES:], aad)

    def opener(self) -> Callable[[bytes, bytes], bytes]:
        """:meth:`open` for many values in one loop (a start-up reading every row), at
        about half the cost per small value. The function it returns reuses one buffer:
        use it from one thread only.
        """
        return aead_opener(self.key)

    def index(self, value: bytes) -> bytes:
        """A keyed 16-byte hash, for local lookups that must not reveal ``value``."""
        return hash256(value, person=b"p2pnet-localidx", key=self.key)[:16]

    def __repr__(self) -> str:
        return "LocalKey(<hidden>)"
