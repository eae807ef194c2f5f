"""Op types and their bodies: what each op says, checked strictly before it counts.

Theory of operation
-------------------
:mod:`protocol.signed` checks an op's envelope fields and signature; this module checks
its ``body`` against the schema of its ``type``: exactly the known fields, each of the
right type and within its limit, sets as sorted lists without duplicates (so equal sets
have one encoding). What needs the state — is the author a member, does the proposal
exist, is a stance valid for that proposal's rule — is the fold's job.

Text rules: no control characters except newline and tab in long texts; none at all in
names and titles, and no bidirectional override or isolate characters there (they can
make one name display as another). Limits are in characters; the op size limit
(60,000 bytes) bounds the total.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any

from protocol._errors import LocalProtocolError, RemoteProtocolError
from protocol.vocabulary import (
    AGREEMENT_KINDS,
    CAPABILITIES,
    DECISION_KINDS,
    MEMBER_KINDS,
    NETWORK_TYPES,
)

__all__ = [
    "BODY_RULES",
    "OP_TYPES",
    "body_error",
    "check_body",
    "check_local_body",
]

Check = Callable[[Any], str | None]

# The version of what body_error accepts. A node's store vouches for the bodies it found
# valid under this version (p2pnet/store.py) and a start-up does not check those again;
# bump it with any change to the body rules (here or in protocol/vocabulary.py), so that
# bodies vouched for under other rules are checked again. A test pins these two files'
# source to the version (tests/unit/protocol/test_ops.py).
BODY_RULES = 1

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_IDENT = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _text(max_chars: int, *, min_chars: int = 0, name: bool = False) -> Check:
    forbidden = _NAME_FORBIDDEN if name else _CONTROL

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return "must be text"
        if not min_chars <= len(value) <= max_chars:
            return f"must be {min_chars}-{max_chars} characters"
        if name and value != value.strip():
            return "must not start or end with spaces"
        if forbidden.search(value):
            return "contains control or direction-override characters"
        return None

    return check


def _bin(length: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not bytes or len(value) != length:
            return f"must be {length} bytes"
        return None

    return check


def _enum(values: tuple[str, ...] | Mapping[str, str]) -> Check:
    allowed = frozenset(values)

    def check(value: Any) -> str | None:
        if type(value) is not str or value not in allowed:
            return "must be one of " + ", ".join(sorted(allowed))
        return None

    return check


def _int(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not int or not low <= value <= high:
            return f"must be a whole number from {low} to {high}"
        return None

    return check


def _set_of(item: Check, max_items: int) -> Check:
    as_list = _list_of(item, max_items)

    def check(value: Any) -> str | None:
        problem = as_list(value)
        if problem is None and any(a >= b for a, b in pairwise(value)):
            return "must be sorted, without duplicates"
        return problem

    return check


def _list_of(item: Check, max_items: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not list or len(value) > max_items:
            return f"must be a list of at most {max_items}"
        for element in value:
            problem = item(element)
            if problem:
                return f"element {problem}"
        return None

    return check


def _map(value: Any) -> str | None:
    # Nested maps (rule specs, settings, outcomes) are checked by the fold with the
    # rules module; here only their shape.
    return None if type(value) is dict else "must be a map"


_IDENTS_SEEN: set[str] = set()  # valid ones met (stances, kinds: a few dozen)


def _ident(value: Any) -> str | None:
    if type(value) is not str:
        return "must be a short lowercase identifier"
    if value in _IDENTS_SEEN:  # every position names its stance: skip the regex
        return None
    if not _IDENT.fullmatch(value):
        return "must be a short lowercase identifier"
    if len(_IDENTS_SEEN) < 256:
        _IDENTS_SEEN.add(value)
    return None


_KEY = _bin(32)
_OP_ID = _bin(32)
_NAME = _text(100, min_chars=1, name=True)
_TITLE = _text(200, min_chars=1, name=True)
_LONG_TEXT = _text(20_000)
_REASON = _text(2_000)
_CAPS = _set_of(_enum(CAPABILITIES), len(CAPABILITIES))
_MAX_TIME = (1 << 53) - 1

# type -> field -> (check, required)
OP_TYPES: dict[str, dict[str, tuple[Check, bool]]] = {
    "genesis": {
        "name": (_NAME, True),
        "type": (_enum(NETWORK_TYPES), True),
        "purpose": (_text(2_000), True),
        "settings": (_map, True),
        "epoch": (_bin(16), True),
        "display_name": (_NAME, True),
        "kind": (_enum(MEMBER_KINDS), True),
    },
    "member_admit": {
        "member": (_KEY, True),
        "display_name": (_NAME, True),
        "kind": (_enum(MEMBER_KINDS), True),
    },
    "member_update": {
        "display_name": (_NAME, False),
        "kind": (_enum(MEMBER_KINDS), False),
        "offers": (_CAPS, False),
        "needs": (_CAPS, False),
        "peer_id": (_text(128, min_chars=1, name=True), False),
        "addresses": (_list_of(_text(256, min_chars=1, name=True), 8), False),
    },
    "leave": {},
    "emergency_remove": {
        "subject": (_KEY, True),
        "reason": (_text(2_000, min_chars=1), True),
    },
    "verify": {
        "subject": (_KEY, True),
        "safety": (_bin(32), True),
    },
    "agreement_version": {
        "agreement": (_OP_ID, False),
        "kind": (_enum(AGREEMENT_KINDS), True),
        "title": (_TITLE, True),
        "text": (_text(20_000, min_chars=1), True),
    },
    "endorse": {
        "version": (_OP_ID, True),
    },
    "proposal": {
        "title": (_TITLE, True),
        "text": (_LONG_TEXT, True),
        "kind": (_enum(DECISION_KINDS), True),
        "subject": (lambda v: None, False),  # shape depends on kind: checked below
        "rule": (_map, True),
        "options": (_list_of(_TITLE, 20), True),
        "closes_at": (_int(0, _MAX_TIME), True),
    },
    "position": {
        "proposal": (_OP_ID, True),
        "round": (_OP_ID, True),
        "stance": (_ident, True),
        "reason": (_REASON, True),
    },
    "amendment": {
        "proposal": (_OP_ID, True),
        "text": (_LONG_TEXT, True),
    },
    "withdraw": {
        "proposal": (_OP_ID, True),
    },
    "close": {
        "proposal": (_OP_ID, True),
        "outcome": (_map, True),
    },
    "comment": {
        "target": (_OP_ID, True),
        "text": (_text(5_000, min_chars=1), True),
    },
    "epoch": {
        "epoch": (_bin(16), True),
        "cause": (_OP_ID, True),
    },
}

_ROLE_SUBJECT = {"member": _KEY, "role": _text(64, min_chars=1, name=True)}


def _subject_error(kind: str, subject: Any, present: bool) -> str | None:
    if kind == "general":
        return "a general proposal has no subject" if present else None
    if not present:
        return f"a {kind} proposal needs a subject"
    if kind in ("admission", "removal"):
        return _KEY(subject)
    if kind == "agreement_adoption":
        return _OP_ID(subject)
    if kind == "governance_change":
        return _map(subject)
    # role: {"member": key, "role": name}
    if type(subject) is not dict or tuple(subject) != tuple(sorted(_ROLE_SUBJECT)):
        return "a role subject is {member, role}"
    for field, check in _ROLE_SUBJECT.items():
        problem = check(subject[field])
        if problem:
            return f"{field} {problem}"
    return None


_ALLOWED = {t: frozenset(schema) for t, schema in OP_TYPES.items()}
_REQUIRED = {
    t: frozenset(f for f, (_, req) in schema.items() if req) for t, schema in OP_TYPES.items()
}
_CHECKS = {t: {f: check for f, (check, _) in schema.items()} for t, schema in OP_TYPES.items()}


def body_error(op_type: str, body: Mapping[str, Any]) -> str | None:
    """Why ``body`` is not a valid body for ``op_type``, or None if it is."""
    checks = _CHECKS.get(op_type)
    if checks is None:
        return f"unknown op type {op_type!r}"
    keys = body.keys()
    if not keys <= _ALLOWED[op_type]:
        return f"unknown fields: {', '.join(sorted(keys - _ALLOWED[op_type]))}"
    if not _REQUIRED[op_type] <= keys:
        missing = [f for f in OP_TYPES[op_type] if f in _REQUIRED[op_type] and f not in keys]
        return f"missing field: {missing[0]}"
    for field, value in body.items():
        problem = checks[field](value)
        if problem:
            return f"{field} {problem}"
    if op_type == "member_update" and not body:
        return "a profile update must change something"
    if op_type == "proposal":
        return _subject_error(body["kind"], body.get("subject"), "subject" in body)
    return None


def check_body(op_type: str, body: Mapping[str, Any]) -> None:
    """Validate a received op's body.

    Raises:
        RemoteProtocolError: naming the first problem.
    """
    problem = body_error(op_type, body)
    if problem:
        raise RemoteProtocolError(f"invalid {op_type} op: {problem}")


def check_local_body(op_type: str, body: Mapping[str, Any]) -> None:
    """Validate a body we are about to sign.

    Raises:
        LocalProtocolError: naming the first problem, in words fit for the user.
    """
    problem = body_error(op_type, body)
    if problem:
        raise LocalProtocolError(problem)
