"""Op body schemas: exact fields, types, limits, sets in canonical form, safe text."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import LocalProtocolError, RemoteProtocolError
from protocol.ops import BODY_RULES, OP_TYPES, body_error, check_body, check_local_body

KEY = b"k" * 32
OP = b"o" * 32

VALID: dict[str, dict[str, Any]] = {
    "genesis": {
        "name": "Teachers' Solidarity",
        "type": "coordination",
        "purpose": "Align our campaigns.",
        "settings": {},
        "epoch": b"e" * 16,
        "display_name": "Shirin",
        "kind": "civil_society_org",
    },
    "member_admit": {"member": KEY, "display_name": "Reza", "kind": "individual"},
    "member_update": {"offers": ["expertise_legal", "meeting_space"], "needs": ["funding"]},
    "leave": {},
    "emergency_remove": {"subject": KEY, "reason": "phone seized"},
    "verify": {"subject": KEY, "safety": b"s" * 32},
    "agreement_version": {"kind": "charter", "title": "Charter", "text": "We agree…"},
    "endorse": {"version": OP},
    "proposal": {
        "title": "Adopt the charter",
        "text": "",
        "kind": "agreement_adoption",
        "subject": OP,
        "rule": {"rule": "consent"},
        "options": [],
        "closes_at": 1_700_000_000_000,
    },
    "position": {"proposal": OP, "round": OP, "stance": "block", "reason": "not yet"},
    "amendment": {"proposal": OP, "text": "New text"},
    "withdraw": {"proposal": OP},
    "close": {"proposal": OP, "outcome": {}},
    "comment": {"target": OP, "text": "مخالفم، چون…"},
    "epoch": {"epoch": b"e" * 16, "cause": OP},
}


def test_every_type_has_a_valid_example() -> None:
    assert set(VALID) == set(OP_TYPES)
    for op_type, body in VALID.items():
        assert body_error(op_type, body) is None, op_type
        check_body(op_type, body)


@pytest.mark.parametrize("op_type", sorted(VALID))
def test_unknown_field_rejected(op_type: str) -> None:
    body = {**VALID[op_type], "extra": 1}
    with pytest.raises(RemoteProtocolError, match="unknown fields: extra"):
        check_body(op_type, body)
    with pytest.raises(LocalProtocolError):
        check_local_body(op_type, body)


@pytest.mark.parametrize(
    ("op_type", "field"),
    [(t, f) for t, schema in OP_TYPES.items() for f, (_, required) in schema.items() if required],
)
def test_missing_required_field_rejected(op_type: str, field: str) -> None:
    body = {k: v for k, v in VALID[op_type].items() if k != field}
    assert body_error(op_type, body) == f"missing field: {field}"


@pytest.mark.parametrize(
    ("op_type", "field", "value"),
    [
        ("genesis", "type", "book_club"),
        ("genesis", "name", ""),
        ("genesis", "name", " padded "),
        ("genesis", "name", "x" * 101),
        ("genesis", "name", "evil\u202ename"),  # right-to-left override
        ("genesis", "name", "line\nbreak"),
        ("genesis", "epoch", b"short"),
        ("member_admit", "member", b"k" * 31),
        ("member_admit", "kind", "government"),
        ("member_update", "offers", ["meeting_space", "expertise_legal"]),  # unsorted
        ("member_update", "offers", ["funding", "funding"]),  # duplicate
        ("member_update", "needs", ["weapons"]),
        ("member_update", "addresses", ["/ip4/1.2.3.4/tcp/1"] * 9),
        ("emergency_remove", "reason", ""),
        ("emergency_remove", "subject", b"k"),
        ("position", "stance", "Block!"),
        ("position", "reason", "x" * 2001),
        ("comment", "text", "bell\x07"),
        ("proposal", "options", ["a"] * 21),
        ("proposal", "closes_at", 1.5),
    ],
)
def test_bad_values_rejected(op_type: str, field: str, value: Any) -> None:
    body = {**VALID[op_type], field: value}
    problem = body_error(op_type, body)
    assert problem is not None
    assert problem.startswith(field)


def test_persian_and_newlines_in_long_text_are_fine() -> None:
    body = {**VALID["agreement_version"], "text": "منشور شبکه\nبند ۱: همبستگی\tو احترام"}
    assert body_error("agreement_version", body) is None


def test_empty_profile_update_rejected() -> None:
    assert body_error("member_update", {}) == "a profile update must change something"


@pytest.mark.parametrize(
    ("kind", "subject", "ok"),
    [
        ("general", None, True),
        ("general", KEY, False),
        ("admission", KEY, True),
        ("admission", None, False),
        ("removal", b"short", False),
        ("agreement_adoption", OP, True),
        ("governance_change", {"default_rule": {}}, True),
        ("governance_change", KEY, False),
        ("role", {"member": KEY, "role": "treasurer"}, True),
        ("role", {"role": "treasurer", "member": KEY}, False),  # not canonical order
        ("role", {"member": KEY}, False),
    ],
)
def test_proposal_subject_depends_on_kind(kind: str, subject: Any, ok: bool) -> None:
    body = {**VALID["proposal"], "kind": kind}
    body.pop("subject")
    if subject is not None:
        body["subject"] = subject
    assert (body_error("proposal", body) is None) == ok


def test_unknown_type_rejected() -> None:
    assert body_error("launch_missiles", {}) == "unknown op type 'launch_missiles'"


@settings(max_examples=300)
@given(
    op_type=st.sampled_from(sorted(OP_TYPES)),
    body=st.dictionaries(
        st.text(max_size=12),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(), st.binary(), st.lists(st.text())
        ),
        max_size=8,
    ),
)
def test_random_bodies_give_a_reason_or_pass(op_type: str, body: dict[str, Any]) -> None:
    # Never raises anything but our typed error.
    with contextlib.suppress(RemoteProtocolError):
        check_body(op_type, body)


# The source of the body rules, pinned to their version. A node's store vouches for the
# bodies that passed the rules of BODY_RULES, and start-ups do not check those again: a
# change to what body_error accepts without a new BODY_RULES would make a restarted node
# fold differently from its peers.
_RULES_SOURCES = ("protocol/ops.py", "protocol/vocabulary.py")
_PINNED = {1: "c4d4cab9e90776a55518f80a55aa0d5b2b90c93782b02f367816643fc77b0856"}


def test_the_body_rules_are_pinned_to_their_version() -> None:
    root = Path(__file__).resolve().parents[3]
    digest = hashlib.sha256()
    for name in _RULES_SOURCES:
        digest.update((root / name).read_bytes())
    assert _PINNED.get(BODY_RULES) == digest.hexdigest(), (
        "protocol/ops.py or protocol/vocabulary.py changed. If what body_error accepts "
        "changed, bump BODY_RULES (stores vouched for bodies under the old rules); then "
        "pin the new digest here, under the version."
    )
