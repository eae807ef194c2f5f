"""Invites carried by hand: the invite code, the join request and the welcome.

Theory of operation
-------------------
1. The inviter makes an **invite code**: text (``P2P1-`` and base32) of the canonical
   msgpack ``[1, network_id, inviter_key, secret, [address, …]]``. ``secret`` is 16 random
   bytes known only to the inviter's node and the code; the code carries neither the
   network secret nor any epoch key, so a leaked code reads nothing, and once used or
   expired it admits no one (the inviter's node keeps the count and the expiry).
2. The joiner writes a **join request** for the inviter: a sealed box to the inviter's
   key of ``[body, signature, mac]``, ``body`` = canonical msgpack of the joiner's key,
   display name, kind, the network id and the invite id; the signature (domain
   ``join-request``) proves the joiner holds that key, and ``mac`` = keyed BLAKE2b-256
   of ``body`` under the invite secret proves the joiner holds the code. Only the
   inviter can open it.
3. Once the joiner is admitted, the inviter writes a **welcome**: a kind-2 envelope
   sealed to the joiner carrying ``[payload, signature]``, ``payload`` =
   ``["p2pnet-welcome", network_id, network_secret, genesis_id, [[epoch_id, key], …],
   inviter_key, joiner_key]`` signed by the inviter (domain ``welcome``). A welcome file
   is ``"P2PNETWL" | 0x01 | u32 length | sealed box to the joiner of that envelope | a
   bundle of the network`` (sealed once more so the file carries no route tag in clear).
   The welcome envelope also travels by sync, so any member can deliver it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from crypto import (
    CryptoError,
    EpochKey,
    Identity,
    NetworkSecret,
    PublicIdentity,
    is_valid_public_key,
    verify_signature,
)
from protocol import wire
from protocol._errors import RemoteProtocolError
from protocol.envelope import (
    SealedEnvelope,
    open_sealed,
    pad,
    parse_envelope,
    seal_to_member,
    unpad,
)

__all__ = [
    "WELCOME_MAGIC",
    "InviteCode",
    "JoinRequest",
    "Welcome",
    "invite_id",
    "open_join_request",
    "open_welcome",
    "parse_invite_code",
    "seal_join_request",
    "seal_welcome",
    "split_welcome_file",
    "welcome_file",
]

_PREFIX = "P2P1-"
_SECRET = 16
_MAX_ADDRESSES = 4
_MAX_CODE = 1024
_REQUEST_MAGIC = b"P2PNETJR\x01"
_REQUEST_PADDED = 1024
WELCOME_MAGIC = b"P2PNETWL\x01"
_TAG = "p2pnet-welcome"
_LEN = struct.Struct(">I")


def invite_id(secret: bytes) -> bytes:
    """The public id of an invite (what the inviter's node files it under)."""
    return hashlib.blake2b(secret, digest_size=16, person=b"p2pnet-invite").digest()


@dataclass(frozen=True, slots=True)
class InviteCode:
    network_id: bytes
    inviter: bytes
    secret: bytes = field(repr=False)
    addresses: tuple[str, ...] = ()

    @property
    def invite_id(self) -> bytes:
        return invite_id(self.secret)

    def text(self) -> str:
        """The code as text to copy, read out or put in a QR code."""
        raw = wire.encode([1, self.network_id, self.inviter, self.secret, list(self.addresses)])
        return _PREFIX + base64.b32encode(raw).decode().rstrip("=")


def parse_invite_code(text: str) -> InviteCode:
    """Read an invite code (spaces, dashes after the prefix and case are forgiven).

    Raises:
        RemoteProtocolError: not an invite code, or damaged.
    """
    cleaned = "".join(text.split()).upper()
    if not cleaned.startswith(_PREFIX) or len(cleaned) > _MAX_CODE:
        raise RemoteProtocolError("not a p2pnet invite code (it starts with P2P1-)")
    body = cleaned[len(_PREFIX) :].replace("-", "")
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise RemoteProtocolError("the invite code is damaged (a character is wrong)") from None
    obj = wire.decode(raw, max_size=_MAX_CODE, max_items=8)
    if (
        type(obj) is not list
        or len(obj) != 5
        or type(obj[0]) is not int
        or obj[0] != 1
        or not _is_bin(obj[1], 16)
        or not _is_bin(obj[2], 32)
        or not _is_bin(obj[3], _SECRET)
        or type(obj[4]) is not list
        or len(obj[4]) > _MAX_ADDRESSES
        or not all(type(a) is str and 0 < len(a) <= 256 for a in obj[4])
        or not is_valid_public_key(obj[2])
    ):
        raise RemoteProtocolError("the invite code is damaged")
    return InviteCode(obj[1], obj[2], obj[3], tuple(obj[4]))


def _is_bin(value: object, length: int) -> bool:
    return type(value) is bytes and len(value) == length


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A join request, opened and checked against its invite by the inviter."""

    joiner: bytes
    display_name: str
    kind: str
    network_id: bytes
    invite_id: bytes


def seal_join_request(code: InviteCode, joiner: Identity, *, display_name: str, kind: str) -> bytes:
    """The join request file's bytes, for the inviter only."""
    body = wire.encode(
        {
            "display_name": display_name,
            "invite": code.invite_id,
            "joiner": joiner.public.key,
            "kind": kind,
            "network": code.network_id,
        }
    )
    mac = hashlib.blake2b(body, digest_size=32, key=code.secret, person=b"p2pnet-joinmac").digest()
    # Padded to one size (1,024 bytes: a bucket of envelope.pad) whatever the name.
    message = wire.encode([body, joiner.sign(b"join-request", body), mac])
    if len(message) < _REQUEST_PADDED:
        padded = message + b"\x80" + bytes(_REQUEST_PADDED - len(message) - 1)
    else:
        padded = pad(message)
    sealed = PublicIdentity(code.inviter).seal(padded)
    return _REQUEST_MAGIC + sealed


def open_join_request(data: bytes, inviter: Identity, secrets: dict[bytes, bytes]) -> JoinRequest:
    """Open a join request with our identity; ``secrets`` maps our open invites' ids to
    their secrets.

    Raises:
        RemoteProtocolError: not for us, damaged, for an unknown or used invite, or the
            proof of the code or of the joiner's key fails.
    """
    if not data.startswith(_REQUEST_MAGIC) or len(data) > 8192:
        raise RemoteProtocolError("not a p2pnet join request")
    try:
        opened = unpad(inviter.unseal(data[len(_REQUEST_MAGIC) :]))
    except CryptoError:
        raise RemoteProtocolError("this join request is not addressed to you") from None
    outer = wire.decode(opened, max_size=4096, max_items=3)
    if type(outer) is not list or len(outer) != 3 or not all(type(x) is bytes for x in outer):
        raise RemoteProtocolError("the join request is damaged")
    body_bytes, signature, mac = outer
    body = wire.decode(body_bytes, max_size=4096, max_items=8)
    keys = ("display_name", "invite", "joiner", "kind", "network")
    if type(body) is not dict or tuple(body) != keys:
        raise RemoteProtocolError("the join request is damaged")
    secret = secrets.get(body["invite"]) if type(body["invite"]) is bytes else None
    if secret is None:
        raise RemoteProtocolError("this invite was already used, has expired, or is not yours")
    expected = hashlib.blake2b(
        body_bytes, digest_size=32, key=secret, person=b"p2pnet-joinmac"
    ).digest()
    if not hmac.compare_digest(mac, expected):
        raise RemoteProtocolError("the join request does not prove the invite code")
    joiner = body["joiner"]
    if not _is_bin(joiner, 32) or not is_valid_public_key(joiner):
        raise RemoteProtocolError("the join request names an invalid key")
    try:
        verify_signature(joiner, b"join-request", body_bytes, signature)
    except CryptoError:
        raise RemoteProtocolError("the join request's signature does not verify") from None
    if type(body["display_name"]) is not str or type(body["kind"]) is not str:
        raise RemoteProtocolError("the join request is damaged")
    return JoinRequest(joiner, body["display_name"], body["kind"], body["network"], body["invite"])


@dataclass(frozen=True, slots=True)
class Welcome:
    """What a welcome gives the new member."""

    secret: NetworkSecret
    genesis_id: bytes
    epochs: tuple[EpochKey, ...]
    inviter: bytes


def seal_welcome(
    inviter: Identity,
    joiner: bytes,
    *,
    secret: NetworkSecret,
    genesis_id: bytes,
    epochs: list[EpochKey],
) -> bytes:
    """A kind-2 envelope carrying the welcome to ``joiner``."""
    payload = wire.encode(
        [
            _TAG,
            secret.network_id,
            secret.secret,
            genesis_id,
            [[e.epoch_id, e.key] for e in epochs],
            inviter.public.key,
            joiner,
        ]
    )
    signed = wire.encode([payload, inviter.sign(b"welcome", payload)])
    return seal_to_member(PublicIdentity(joiner), signed, route_tag=secret.route_tag)


def open_welcome(envelope: SealedEnvelope, joiner: Identity, *, inviter: bytes) -> Welcome:
    """Open a welcome addressed to us, from the inviter named in our invite code.

    Raises:
        DecryptionFailed: not for us.
        RemoteProtocolError: damaged, from someone else, or for another network.
    """
    outer = wire.decode(open_sealed(envelope, joiner), max_size=1 << 16, max_items=2)
    if type(outer) is not list or len(outer) != 2 or not all(type(x) is bytes for x in outer):
        raise RemoteProtocolError("the welcome is damaged")
    payload_bytes, signature = outer
    payload = wire.decode(payload_bytes, max_size=1 << 16, max_items=4096)
    if type(payload) is not list or len(payload) != 7 or payload[0] != _TAG:
        raise RemoteProtocolError("the welcome is damaged")
    _, network_id, secret_bytes, genesis_id, epochs, signer, addressee = payload
    if signer != inviter or addressee != joiner.public.key:
        raise RemoteProtocolError("the welcome is not from your inviter, or not for you")
    if type(epochs) is not list or not all(
        type(e) is list and len(e) == 2 and all(type(x) is bytes for x in e) for e in epochs
    ):
        raise RemoteProtocolError("the welcome is damaged")
    try:
        verify_signature(inviter, b"welcome", payload_bytes, signature)
        secret = NetworkSecret(secret_bytes)
        keys = tuple(EpochKey(e[0], e[1]) for e in epochs)
    except (CryptoError, TypeError, IndexError):
        raise RemoteProtocolError("the welcome is damaged or forged") from None
    if secret.network_id != network_id or not _is_bin(genesis_id, 32) or not keys:
        raise RemoteProtocolError("the welcome is damaged")
    if parse_envelope(envelope.raw).route_tag != secret.route_tag:
        raise RemoteProtocolError("the welcome is damaged")
    return Welcome(secret, genesis_id, keys, inviter)


def welcome_file(welcome_envelope: bytes, bundle: bytes, *, joiner: bytes) -> bytes:
    """The welcome file: the welcome envelope sealed once more to the joiner (so the file
    shows no route tag that would link it to the network's traffic), then the bundle."""
    sealed = PublicIdentity(joiner).seal(welcome_envelope)
    return WELCOME_MAGIC + _LEN.pack(len(sealed)) + sealed + bundle


def split_welcome_file(data: bytes, joiner: Identity) -> tuple[SealedEnvelope, bytes]:
    """(the welcome envelope, the bundle bytes) of a welcome file addressed to ``joiner``.

    Raises:
        RemoteProtocolError: not a welcome file, damaged, or not for this joiner.
    """
    if not data.startswith(WELCOME_MAGIC) or len(data) < len(WELCOME_MAGIC) + 4:
        raise RemoteProtocolError("not a p2pnet welcome file")
    (length,) = _LEN.unpack_from(data, len(WELCOME_MAGIC))
    start = len(WELCOME_MAGIC) + 4
    if length > 1 << 16 or start + length > len(data):
        raise RemoteProtocolError("the welcome file is damaged")
    try:
        inner = joiner.unseal(data[start : start + length])
    except CryptoError:
        raise RemoteProtocolError("this welcome is not for you") from None
    envelope = parse_envelope(inner)
    if not isinstance(envelope, SealedEnvelope):
        raise RemoteProtocolError("the welcome file is damaged")
    return envelope, data[start + length :]
