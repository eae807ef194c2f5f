"""Signed ops: the unit of authorship.

``op_bytes`` is the canonical msgpack map
``{author, body, lamport, net, parents, seq, time, type}``; a signed op is the canonical
msgpack array ``[op_bytes, signature]``, the Ed25519 signature covering
``b"p2pnet/op\\x00" + op_bytes``; ``op_id = BLAKE2b-256(signed op bytes)``.

Verification hashes and checks the exact bytes received and never re-encodes them to
verify (STYLE.md rule 7). Only :func:`verify_signed_op` makes a :class:`VerifiedOp`.
What this module checks: structure, field types, limits, canonical encoding, signature.
What it leaves to the DAG and the state fold: parents exist, the author's chain, lamport,
the body's schema for its type, and authorisation.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgpack

from crypto import Identity, verify_signature
from protocol import wire
from protocol._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_OP_BYTES",
    "MAX_PARENTS",
    "MAX_SIGNED_OP_BYTES",
    "NETWORK_ID_BYTES",
    "OP_ID_BYTES",
    "VerifiedOp",
    "op_id_of",
    "sign_op",
    "verify_signed_op",
]

NETWORK_ID_BYTES = 16
OP_ID_BYTES = 32
AUTHOR_BYTES = 32
SIGNATURE_BYTES = 64
MAX_PARENTS = 32
MAX_OP_BYTES = 60_000
MAX_SIGNED_OP_BYTES = MAX_OP_BYTES + 80
MAX_COUNTER = (1 << 53) - 1
_TYPE_RE = re.compile(r"[a-z][a-z_]{0,31}")
_VALID_TYPES: set[str] = set()
_FIELDS = ("author", "body", "lamport", "net", "parents", "seq", "time", "type")
_DOMAIN = b"op"
_packb = msgpack.packb
_unpackb = msgpack.unpackb
_TEXT = frozenset({str})
_SCALARS = frozenset({str, bytes, int, bool, type(None)})
_blake2b = hashlib.blake2b  # op_id = BLAKE2b-256, as crypto.hash256; inlined on the hot path


def op_id_of(signed_bytes: bytes) -> bytes:
    """The op id: BLAKE2b-256 of the signed op bytes."""
    return _blake2b(signed_bytes, digest_size=32).digest()


class VerifiedOp(tuple[Any, ...]):
    """An op whose encoding, limits and signature have been checked.

    Made only by :func:`verify_signed_op` (or :func:`sign_op`, which builds it from the
    bytes it signed); calling ``VerifiedOp(...)`` raises. A tuple underneath, because
    opening envelopes is the hot path of catch-up. Equal and hashed by ``op_id``.
    """

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> VerifiedOp:
        raise TypeError("VerifiedOp can only be made by verify_signed_op")

    @property
    def op_id(self) -> bytes:
        return self[0]  # type: ignore[no-any-return]

    @property
    def net(self) -> bytes:
        return self[1]  # type: ignore[no-any-return]

    @property
    def author(self) -> bytes:
        return self[2]  # type: ignore[no-any-return]

    @property
    def seq(self) -> int:
        return self[3]  # type: ignore[no-any-return]

    @property
    def lamport(self) -> int:
        return self[4]  # type: ignore[no-any-return]

    @property
    def parents(self) -> tuple[bytes, ...]:
        return self[5]  # type: ignore[no-any-return]

    @property
    def time(self) -> int:
        return self[6]  # type: ignore[no-any-return]

    @property
    def type(self) -> str:
        return self[7]  # type: ignore[no-any-return]

    @property
    def body(self) -> dict[str, Any]:
        return self[8]  # type: ignore[no-any-return]

    @property
    def signed(self) -> bytes:
        """The signed op exactly as received: what is stored, hashed and forwarded."""
        return self[9]  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifiedOp) and self[0] == other[0]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self[0])

    def __repr__(self) -> str:
        return (
            f"VerifiedOp(op_id={self.op_id.hex()[:16]}, type={self.type!r}, "
            f"author={self.author.hex()[:16]}, seq={self.seq}, lamport={self.lamport})"
        )


_make_verified = tuple.__new__


def _check_fields(op: Any) -> None:
    if type(op) is not dict or tuple(op) != _FIELDS:
        raise RemoteProtocolError("op must have exactly the op fields, in canonical order")
    net, author, seq, lamport = op["net"], op["author"], op["seq"], op["lamport"]
    if type(net) is not bytes or len(net) != NETWORK_ID_BYTES:
        raise RemoteProtocolError("bad op field: net")
    if type(author) is not bytes or len(author) != AUTHOR_BYTES:
        raise RemoteProtocolError("bad op field: author")
    if type(seq) is not int or not 1 <= seq <= MAX_COUNTER:
        raise RemoteProtocolError("bad op field: seq")
    if type(lamport) is not int or not 1 <= lamport <= MAX_COUNTER:
        raise RemoteProtocolError("bad op field: lamport")
    parents = op["parents"]
    if type(parents) is not list or len(parents) > MAX_PARENTS:
        raise RemoteProtocolError("bad op field: parents (sorted, unique 32-byte ids)")
    previous = b""
    for parent in parents:
        if type(parent) is not bytes or len(parent) != OP_ID_BYTES or parent <= previous:
            raise RemoteProtocolError("bad op field: parents (sorted, unique 32-byte ids)")
        previous = parent
    if type(op["time"]) is not int or not 0 <= op["time"] <= MAX_COUNTER:
        raise RemoteProtocolError("bad op field: time")
    op_type = op["type"]
    if type(op_type) is not str or op_type not in _VALID_TYPES:
        if type(op_type) is not str or not _TYPE_RE.fullmatch(op_type):
            raise RemoteProtocolError("bad op field: type")
        if len(_VALID_TYPES) < 256:  # a bounded memo: op types are few
            _VALID_TYPES.add(op_type)
    body = op["body"]
    if type(body) is not dict:
        raise RemoteProtocolError("bad op field: body")
    keys = list(body)
    if not set(map(type, keys)) <= _TEXT or keys != sorted(keys):
        raise RemoteProtocolError("body keys must be text in ascending order")
    for value in body.values():
        if type(value) not in _SCALARS:
            wire.check_canonical(value, 2)


def verify_signed_op(signed: bytes) -> VerifiedOp:
    """Decode and verify a signed op exactly as received.

    Raises:
        RemoteProtocolError: malformed, non-canonical, or over a limit.
        BadSignature: the signature does not verify.
    """
    # The outer array [bin op_bytes, bin64 signature] has one canonical layout: read it by
    # position (the hot path of every received op), refusing anything else.
    if type(signed) is not bytes or len(signed) < 70 or signed[0] != 0x92:
        raise RemoteProtocolError("a signed op is [op_bytes, 64-byte signature]")
    if signed[1] == 0xC4:
        n, start = signed[2], 3
    elif signed[1] == 0xC5:
        n, start = int.from_bytes(signed[2:4], "big"), 4
        if n < 0x100:
            raise RemoteProtocolError("non-canonical op encoding")
    else:
        raise RemoteProtocolError("a signed op is [op_bytes, 64-byte signature]")
    end = start + n
    if (
        n > MAX_OP_BYTES
        or len(signed) != end + 2 + SIGNATURE_BYTES
        or signed[end : end + 2] != (b"\xc4\x40")
    ):
        raise RemoteProtocolError("a signed op is [op_bytes, 64-byte signature]")
    op_bytes = signed[start:end]
    try:  # the size is bounded above, so msgpack's own length limits (<= n) suffice
        op = _unpackb(op_bytes, raw=False, strict_map_key=False, ext_hook=wire.reject_ext)
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException):
        raise RemoteProtocolError("malformed msgpack") from None
    _check_fields(op)
    # The op map is re-packed once and compared (its keys were checked sorted above).
    if _packb(op, use_bin_type=True) != op_bytes:
        raise RemoteProtocolError("non-canonical op encoding")
    verify_signature(op["author"], _DOMAIN, op_bytes, signed[end + 2 :])
    # _verified(op, signed), written out: this is the hot path of every received op, and
    # the call costs about a percent of the whole (bench_crypto's open_ratio).
    return _make_verified(
        VerifiedOp,
        (
            _blake2b(signed, digest_size=32).digest(),
            op["net"],
            op["author"],
            op["seq"],
            op["lamport"],
            tuple(op["parents"]),
            op["time"],
            op["type"],
            op["body"],
            signed,
        ),
    )


def reload_verified_op(signed: bytes, *, op_id: bytes | None = None) -> VerifiedOp:
    """Rebuild a :class:`VerifiedOp` from bytes this node verified before, *without*
    checking the signature again.

    Only for ops read back from the node's own store, where every row is authenticated
    under the profile key (so it can only hold what this profile wrote after verifying
    it). The structure is still checked; a damaged row raises. ``op_id``: the op id, when
    the caller has already hashed ``signed`` (see :func:`op_id_of`).

    Raises:
        RemoteProtocolError: the bytes are not a well-formed signed op.
    """
    if type(signed) is not bytes or len(signed) < 70 or signed[0] != 0x92:
        raise RemoteProtocolError("a stored op is damaged")
    if signed[1] == 0xC4:
        n, start = signed[2], 3
    elif signed[1] == 0xC5:
        n, start = int.from_bytes(signed[2:4], "big"), 4
    else:
        raise RemoteProtocolError("a stored op is damaged")
    try:
        op = _unpackb(signed[start : start + n], raw=False, strict_map_key=False)
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException):
        raise RemoteProtocolError("a stored op is damaged") from None
    _check_fields(op)
    return _verified(op, signed, op_id)


def reload_kept_op(signed: bytes, op_id: bytes) -> VerifiedOp:
    """Rebuild a :class:`VerifiedOp` that this node checked and then kept, sealed under its
    profile key (the store's op column), without checking its signature or its body's
    keys and encoding again.

    Everything was checked before it was sealed (by :func:`verify_signed_op`, or by
    :func:`sign_op` for our own), and the profile key's authentication tag proves these
    are the same bytes, so the checks cannot fail again (docs/decisions.md, "The node").
    The op's fields and limits are still checked, cheaply: the DAG relies on them, and
    damaged bytes must be refused, never crash it. ``op_id`` is the caller's
    :func:`op_id_of` of ``signed``.

    Raises:
        RemoteProtocolError: the bytes are not a well-formed op.
    """
    if len(signed) < 70 or signed[0] != 0x92:
        raise RemoteProtocolError("a stored op is damaged")
    if signed[1] == 0xC4:
        n, start = signed[2], 3
    else:
        n, start = int.from_bytes(signed[2:4], "big"), 4
    try:
        op = _unpackb(signed[start : start + n], raw=False, strict_map_key=False)
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException):
        raise RemoteProtocolError("a stored op is damaged") from None
    if type(op) is not dict or tuple(op) != _FIELDS:
        raise RemoteProtocolError("a stored op is damaged")
    author, body, lamport, net, parents, seq, time, op_type = op.values()  # _FIELDS order
    # The types and bounds the DAG and the fold rely on (a few comparisons), so that bytes
    # no check would pass are refused, never a crash.
    if (
        type(net) is not bytes
        or type(author) is not bytes
        or type(seq) is not int
        or not 1 <= seq <= MAX_COUNTER
        or type(lamport) is not int
        or not 1 <= lamport <= MAX_COUNTER
        or type(time) is not int
        or type(op_type) is not str
        or type(body) is not dict
        or type(parents) is not list
    ):
        raise RemoteProtocolError("a stored op is damaged")
    for parent in parents:
        if type(parent) is not bytes:
            raise RemoteProtocolError("a stored op is damaged")
    return _make_verified(
        VerifiedOp,
        (op_id, net, author, seq, lamport, tuple(parents), time, op_type, body, signed),
    )


def _verified(op: dict[str, Any], signed: bytes, op_id: bytes | None = None) -> VerifiedOp:
    return _make_verified(
        VerifiedOp,
        (
            op_id or _blake2b(signed, digest_size=32).digest(),
            op["net"],
            op["author"],
            op["seq"],
            op["lamport"],
            tuple(op["parents"]),
            op["time"],
            op["type"],
            op["body"],
            signed,
        ),
    )


def sign_op(
    identity: Identity,
    *,
    net: bytes,
    seq: int,
    lamport: int,
    parents: list[bytes] | tuple[bytes, ...],
    time: int,
    type: str,
    body: dict[str, Any],
) -> VerifiedOp:
    """Build, encode and sign an op by ``identity``.

    Raises:
        LocalProtocolError: a field is invalid or the op is too large.
    """
    if not isinstance(parents, list | tuple) or not all(isinstance(p, bytes) for p in parents):
        raise LocalProtocolError("parents must be a list of op ids (bytes)")
    op = {
        "author": identity.public.key,
        "body": body,
        "lamport": lamport,
        "net": net,
        "parents": sorted(parents),
        "seq": seq,
        "time": time,
        "type": type,
    }
    op_bytes = wire.encode(op)
    if len(op_bytes) > MAX_OP_BYTES:
        raise LocalProtocolError(f"op of {len(op_bytes)} bytes exceeds {MAX_OP_BYTES}")
    decoded = wire.unpack(op_bytes, max_size=MAX_OP_BYTES, max_items=MAX_OP_BYTES)
    try:
        _check_fields(decoded)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(str(exc)) from None
    signed = wire.encode_unchecked([op_bytes, identity.sign(_DOMAIN, op_bytes)])
    return _verified(decoded, signed)
