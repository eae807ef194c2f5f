"""Canonical msgpack: the only encoding p2pnet signs, hashes or sends.

Canonical means: maps have ``str`` keys in ascending code-point order with no
duplicates; integers use the shortest msgpack form; byte strings use ``bin``; text uses
``str`` and is valid UTF-8; no floats, no ext types; arrays of at most the stated length;
nesting at most :data:`MAX_DEPTH`. :func:`decode` accepts exactly what :func:`encode`
produces, so one value has one encoding and a signature over it means one thing.
Everything :func:`decode` rejects raises :class:`RemoteProtocolError`.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_DEPTH",
    "Value",
    "bin_header_len",
    "check_canonical",
    "decode",
    "encode",
    "encode_unchecked",
    "unpack",
]

MAX_DEPTH = 8
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1

# What canonical values are made of; maps and arrays nest.
Value = None | bool | int | str | bytes | list[Any] | dict[str, Any]

_SCALARS = frozenset({str, bytes, int, bool, type(None)})
_STR_ONLY = frozenset({str})
_packb = msgpack.packb
_unpackb = msgpack.unpackb


def _canonicalise(obj: Any, depth: int) -> Any:
    if obj is None or isinstance(obj, bool | str | bytes):
        return obj
    if isinstance(obj, int):
        if not _INT_MIN <= obj <= _INT_MAX:
            raise LocalProtocolError("integer out of range")
        return obj
    if depth >= MAX_DEPTH and isinstance(obj, list | tuple | dict):
        raise LocalProtocolError("value nested too deeply")
    if isinstance(obj, list | tuple):
        return [_canonicalise(v, depth + 1) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise LocalProtocolError("map keys must be text")
        return {k: _canonicalise(obj[k], depth + 1) for k in sorted(obj)}
    raise LocalProtocolError(f"cannot encode {type(obj).__name__} canonically")


def encode(obj: Any) -> bytes:
    """Encode ``obj`` canonically.

    Raises:
        LocalProtocolError: ``obj`` holds a float, a non-text map key, or another type
            that has no canonical form.
    """
    try:
        return _packb(_canonicalise(obj, 0), use_bin_type=True)
    except UnicodeEncodeError:
        # Lone surrogates (e.g. undecodable bytes in a command-line argument).
        raise LocalProtocolError("text is not valid Unicode") from None


def check_canonical(obj: Any, depth: int = 0) -> None:
    """Check that a decoded value uses only canonical types and sorted map keys.

    Raises:
        RemoteProtocolError: it does not.
    """
    kind = type(obj)
    if kind in _SCALARS:
        return
    if depth >= MAX_DEPTH:
        raise RemoteProtocolError("value nested too deeply")
    if kind is list:
        values: Any = obj
    elif kind is dict:
        keys = list(obj)
        if not set(map(type, keys)) <= _STR_ONLY or keys != sorted(keys):
            raise RemoteProtocolError("map keys not text in ascending order")
        values = obj.values()
    else:
        raise RemoteProtocolError("non-canonical type")
    for v in values:
        if type(v) not in _SCALARS:
            check_canonical(v, depth + 1)


def reject_ext(code: int, data: bytes) -> Any:
    """An ``ext_hook`` for msgpack that refuses ext types."""
    raise RemoteProtocolError("msgpack ext types are not allowed")


def unpack(data: bytes, *, max_size: int, max_items: int = 4096) -> Any:
    """Strictly unpack one value, *without* the canonical check (callers add their own).

    Floats decode here; :func:`check_canonical` or the caller's exact type checks refuse
    them.

    Raises:
        RemoteProtocolError: malformed, oversized, trailing bytes, ext types, bad UTF-8.
    """
    if not isinstance(data, bytes):
        raise RemoteProtocolError("expected bytes")
    if len(data) > max_size:
        raise RemoteProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        return _unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=reject_ext,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=max_items,
            max_map_len=max_items,
            max_ext_len=0,
        )
    except RemoteProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException):
        # ValueError covers ExtraData, FormatError, StackError and bad UTF-8.
        raise RemoteProtocolError("malformed msgpack") from None


def decode(data: bytes, *, max_size: int, max_items: int = 4096) -> Any:
    """Decode canonical msgpack from an untrusted source.

    Raises:
        RemoteProtocolError: anything but exactly one canonical value within the limits.
    """
    obj = unpack(data, max_size=max_size, max_items=max_items)
    check_canonical(obj)
    if _packb(obj, use_bin_type=True) != data:
        raise RemoteProtocolError("non-canonical encoding")
    return obj


def encode_unchecked(obj: Any) -> bytes:
    """Pack a value already known to be canonical (decoded by :func:`unpack` and checked).

    Used to compare a re-encoding with the received bytes; never to build new messages.
    """
    return _packb(obj, use_bin_type=True)


def bin_header_len(length: int) -> int:
    """Bytes of the shortest msgpack ``bin`` header for a payload of ``length`` bytes."""
    return 2 if length < 0x100 else 3 if length < 0x10000 else 5
