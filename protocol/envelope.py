"""Envelopes: what travels between nodes, what relays store, what bundles carry.

Wire forms (canonical msgpack arrays)::

    kind 1, group:  [1, route_tag:bin16, epoch_id:bin16, nonce:bin24, ciphertext:bin]
    kind 2, sealed: [2, route_tag:bin16, sealed_box:bin]

Kind 1: ``ciphertext = XChaCha20-Poly1305(epoch_key, nonce, pad(signed_op), aad)`` with
``aad = msgpack([1, route_tag, epoch_id, nonce])``, so the header cannot be changed or
the ciphertext moved under another header. Kind 2: ``sealed_box`` is a libsodium sealed
box of ``pad(payload)`` to one member's X25519 key; members try to open each one.
``envelope_id = BLAKE2b-256(envelope bytes)``.

Padding: ``pad(p) = p || 0x80 || 0x00*``, up to the smallest bucket (a power of two from
256 to 65,536 bytes) that fits. Unpadding requires an exact bucket size and that form.

Opening a group envelope authenticates the ciphertext (epoch key), then verifies the
op's signature (author key) and that the op claims this network. Authorisation — may
this author write, is this epoch still valid for it — belongs to the state fold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import NamedTuple

from crypto import (
    EPOCH_ID_BYTES,
    ROUTE_TAG_BYTES,
    EpochKey,
    Identity,
    PublicIdentity,
    hash256,
)
from protocol import wire
from protocol._errors import LocalProtocolError, MissingEpochKey, RemoteProtocolError
from protocol.signed import VerifiedOp, verify_signed_op

__all__ = [
    "BUCKETS",
    "MAX_ENVELOPE_BYTES",
    "Envelope",
    "GroupEnvelope",
    "SealedEnvelope",
    "decrypt_group",
    "open_group",
    "open_sealed",
    "pad",
    "parse_envelope",
    "seal_group",
    "seal_to_member",
    "unpad",
]

KIND_GROUP = 1
KIND_SEALED = 2
NONCE_BYTES = 24
BUCKETS = tuple(1 << n for n in range(8, 17))  # 256 B … 64 KiB
MAX_PADDED = BUCKETS[-1]
MAX_ENVELOPE_BYTES = MAX_PADDED + 200
_SEALED_OVERHEAD = 48
_HEADER_END = 2 + (2 + ROUTE_TAG_BYTES) + (2 + EPOCH_ID_BYTES) + (2 + NONCE_BYTES)
_AEAD_TAG = 16


def pad(plaintext: bytes) -> bytes:
    """Pad to the smallest bucket that holds ``plaintext`` plus the 0x80 marker.

    Raises:
        LocalProtocolError: larger than the largest bucket allows.
    """
    needed = len(plaintext) + 1
    for size in BUCKETS:
        if needed <= size:
            return plaintext + b"\x80" + bytes(size - needed)
    raise LocalProtocolError(f"{len(plaintext)} bytes is too large to pad")


def unpad(padded: bytes) -> bytes:
    """Reverse :func:`pad`.

    Raises:
        RemoteProtocolError: not a bucket size or not padded as :func:`pad` does.
    """
    size = len(padded)
    if size not in BUCKETS:
        raise RemoteProtocolError("padded plaintext is not a bucket size")
    end = padded.rfind(0x80)
    # Everything after the last 0x80 must be zero (count() checks that without a copy).
    if end < 0 or padded.count(0, end + 1) != size - end - 1:
        raise RemoteProtocolError("bad padding")
    return padded[:end]


class GroupEnvelope(NamedTuple):
    """A kind-1 envelope as parsed from bytes (not yet decrypted)."""

    route_tag: bytes
    epoch_id: bytes
    nonce: bytes
    ciphertext: bytes
    raw: bytes
    envelope_id: bytes

    @property
    def aad(self) -> bytes:
        # The canonical header [1, route_tag, epoch_id, nonce] is the canonical envelope's
        # prefix with a 4-element array marker instead of the 5-element one.
        return b"\x94" + self.raw[1:_HEADER_END]


class SealedEnvelope(NamedTuple):
    """A kind-2 envelope: sealed to one member's key (welcome, rekey)."""

    route_tag: bytes
    sealed: bytes
    raw: bytes
    envelope_id: bytes


Envelope = GroupEnvelope | SealedEnvelope


def _group_aad(route_tag: bytes, epoch_id: bytes, nonce: bytes) -> bytes:
    return wire.encode_unchecked([KIND_GROUP, route_tag, epoch_id, nonce])


def _is_bin(value: object, length: int) -> bool:
    return type(value) is bytes and len(value) == length


def parse_envelope(data: bytes) -> Envelope:
    """Parse and strictly check an envelope's structure; needs no key.

    Raises:
        RemoteProtocolError: malformed, non-canonical or oversized.
    """
    if type(data) is bytes and data[:4] == _GROUP_PREFIX:
        return _parse_group(data)
    obj = wire.unpack(data, max_size=MAX_ENVELOPE_BYTES, max_items=5)
    if type(obj) is not list or not obj:
        raise RemoteProtocolError("an envelope is a msgpack array")
    kind = obj[0]
    if kind == KIND_GROUP and type(kind) is int and len(obj) == 5:
        _, route_tag, epoch_id, nonce, ciphertext = obj
        if not (
            _is_bin(route_tag, ROUTE_TAG_BYTES)
            and _is_bin(epoch_id, EPOCH_ID_BYTES)
            and _is_bin(nonce, NONCE_BYTES)
            and type(ciphertext) is bytes
            and len(ciphertext) - _AEAD_TAG in BUCKETS
        ):
            raise RemoteProtocolError("malformed group envelope")
        env: Envelope = GroupEnvelope(route_tag, epoch_id, nonce, ciphertext, data, hash256(data))
    elif kind == KIND_SEALED and type(kind) is int and len(obj) == 3:
        _, route_tag, sealed = obj
        if not (
            _is_bin(route_tag, ROUTE_TAG_BYTES)
            and type(sealed) is bytes
            and len(sealed) - _SEALED_OVERHEAD in BUCKETS
        ):
            raise RemoteProtocolError("malformed sealed envelope")
        env = SealedEnvelope(route_tag, sealed, data, hash256(data))
    else:
        raise RemoteProtocolError("unknown envelope kind")
    if len(data) != _canonical_len(env):
        raise RemoteProtocolError("non-canonical envelope encoding")
    return env


def _envelope_id(data: bytes) -> bytes:
    return _blake2b(data, digest_size=32).digest()  # = crypto.hash256, without a call


_blake2b = hashlib.blake2b
_GROUP_PREFIX = b"\x95\x01\xc4\x10"  # [1, bin16 …: every canonical kind-1 envelope starts so
_BIN_HEADERS = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def _parse_group(data: bytes) -> GroupEnvelope:
    # The hot path of receiving: a kind-1 envelope has one canonical layout, so it is read
    # by position (fixed-size fields, then the shortest bin header for the ciphertext)
    # instead of through the general decoder. Anything else is refused exactly as the
    # decoder would.
    size = len(data)
    if (
        size > MAX_ENVELOPE_BYTES
        or size < _HEADER_END + 3
        or data[20:22] != b"\xc4\x10"
        or data[38:40] != b"\xc4\x18"
    ):
        raise RemoteProtocolError("malformed group envelope")
    width = _BIN_HEADERS.get(data[_HEADER_END])
    if width is None:
        raise RemoteProtocolError("malformed group envelope")
    start = _HEADER_END + 1 + width
    length = int.from_bytes(data[_HEADER_END + 1 : start], "big")
    if start + length != size or length - _AEAD_TAG not in BUCKETS:
        raise RemoteProtocolError("malformed group envelope")
    if wire.bin_header_len(length) != 1 + width:
        raise RemoteProtocolError("non-canonical envelope encoding")
    return GroupEnvelope(
        data[4:20], data[22:38], data[40:_HEADER_END], data[start:], data, _envelope_id(data)
    )


def _canonical_len(env: Envelope) -> int:
    # Every element has one minimal encoding and unpack() refused trailing bytes, so the
    # input is canonical exactly when its length is the minimal one (fixarray, fixint,
    # fixed-size bins, shortest header for the variable bin).
    if isinstance(env, GroupEnvelope):
        return _HEADER_END + wire.bin_header_len(len(env.ciphertext)) + len(env.ciphertext)
    return 2 + (2 + ROUTE_TAG_BYTES) + wire.bin_header_len(len(env.sealed)) + len(env.sealed)


def seal_group(op: VerifiedOp, *, epoch: EpochKey, route_tag: bytes, nonce: bytes) -> bytes:
    """Encrypt a signed op into a kind-1 envelope. ``nonce``: 24 fresh random bytes."""
    if len(route_tag) != ROUTE_TAG_BYTES or len(nonce) != NONCE_BYTES:
        raise LocalProtocolError("bad route tag or nonce length")
    aad = _group_aad(route_tag, epoch.epoch_id, nonce)
    ciphertext = epoch.encrypt(pad(op.signed), aad, nonce)
    return wire.encode_unchecked([KIND_GROUP, route_tag, epoch.epoch_id, nonce, ciphertext])


def open_group(
    env: GroupEnvelope,
    *,
    epochs: Mapping[bytes, EpochKey],
    network_id: bytes,
    route_tag: bytes,
) -> VerifiedOp:
    """Decrypt and verify a group envelope of the network with ``network_id``/``route_tag``.

    Raises:
        RemoteProtocolError: the envelope carries another network's route tag.
        MissingEpochKey: we hold no key for its epoch (yet).
        DecryptionFailed: the ciphertext or its header was altered.
        RemoteProtocolError: the plaintext is malformed or the op claims another network.
        BadSignature: the op's signature does not verify.
    """
    op = verify_signed_op(decrypt_group(env, epochs=epochs, route_tag=route_tag))
    if op.net != network_id:
        raise RemoteProtocolError("op belongs to another network")
    return op


def decrypt_group(
    env: GroupEnvelope, *, epochs: Mapping[bytes, EpochKey], route_tag: bytes
) -> bytes:
    """The first half of :func:`open_group`: the signed op bytes, *not yet verified*.

    For callers that verify many signatures at once (in parallel); pass the result to
    :func:`~protocol.signed.verify_signed_op` and check the op's network.

    Raises:
        RemoteProtocolError: another network's route tag, or bad padding.
        MissingEpochKey: we hold no key for its epoch (yet).
        DecryptionFailed: the ciphertext or its header was altered.
    """
    if env.route_tag != route_tag:
        raise RemoteProtocolError("envelope belongs to another network")
    key = epochs.get(env.epoch_id)
    if key is None:
        raise MissingEpochKey(f"no key for epoch {env.epoch_id.hex()}")
    raw = env.raw
    return unpad(key.decrypt(env.ciphertext, b"\x94" + raw[1:_HEADER_END], raw[40:_HEADER_END]))


def seal_to_member(recipient: PublicIdentity, payload: bytes, *, route_tag: bytes) -> bytes:
    """A kind-2 envelope carrying ``payload`` to one member only."""
    if len(route_tag) != ROUTE_TAG_BYTES:
        raise LocalProtocolError("bad route tag length")
    return wire.encode_unchecked([KIND_SEALED, route_tag, recipient.seal(pad(payload))])


def open_sealed(env: SealedEnvelope, identity: Identity) -> bytes:
    """Open a kind-2 envelope addressed to ``identity``.

    Raises:
        DecryptionFailed: not addressed to us, or altered.
        RemoteProtocolError: badly padded payload.
    """
    return unpad(identity.unseal(env.sealed))
