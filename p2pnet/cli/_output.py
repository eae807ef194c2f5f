"""What the command line prints: one JSON view per reading command (plain text: _text).

Every reading command builds a JSON-ready dict first (ids and member keys as full hex,
times as milliseconds since 1970 UTC, absent values as ``null``) and renders its plain
text from that same dict, so the two forms never disagree. The field names are a
stable interface, documented in docs/cli.md; add fields, never rename them.

Names and titles from other members pass the protocol's checks (no control or
direction-override characters), but the text renderer still replaces any such
character: a terminal must never interpret what a peer wrote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from crypto import PublicIdentity
from p2pnet.bundle import ImportReport
from protocol import LogReport, NetworkState
from protocol.matching import Match
from protocol.rules import RuleSpec, Tally
from protocol.settings import Settings
from protocol.state import Agreement, Decision, Member, Position
from protocol.vocabulary import NETWORK_TYPES

__all__ = [
    "agreement_list",
    "agreement_view",
    "decision_list",
    "decision_view",
    "import_view",
    "log_view",
    "match_view",
    "member_list",
    "member_view",
    "network_list",
    "network_view",
    "rule_spec",
    "rule_view",
    "tally_view",
    "verify_view",
]

Json = dict[str, Any]
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SHORT = 8  # hex digits of an id shown in tables: enough to type back as a reference


def _clean(value: object) -> str:
    return _UNSAFE.sub("\ufffd", str(value))


def _short(hex_id: str | None) -> str:
    return hex_id[:_SHORT] if hex_id else "-"


def _ratio(value: Any) -> str:
    return f"{value.num}/{value.den}"


# -- rules and tallies ------------------------------------------------------------------


def rule_spec(rule: RuleSpec) -> str:
    """The ``--rule`` form of a rule: ``consent`` or ``supermajority:2/3:eligible``."""
    if rule.rule == "supermajority" and rule.threshold is not None:
        return f"supermajority:{_ratio(rule.threshold)}:{rule.base}"
    return rule.rule


def rule_view(rule: RuleSpec) -> Json:
    return {
        "spec": rule_spec(rule),
        "rule": rule.rule,
        "quorum": _ratio(rule.quorum),
        "threshold": _ratio(rule.threshold) if rule.threshold is not None else None,
        "base": rule.base,
        "block_threshold": rule.block_threshold,
    }


def tally_view(tally: Tally | Mapping[str, Any] | None) -> Json | None:
    if tally is None:
        return None
    wire = tally.to_wire() if isinstance(tally, Tally) else dict(tally)
    return {**wire, "counts": dict(wire["counts"])}


def _settings(settings: Settings) -> Json:
    return {
        "admission": settings.admission,
        "admission_rule": rule_view(settings.admission_rule),
        "ordinary_rule": rule_view(settings.ordinary_rule),
        "removal_rule": rule_view(settings.removal_rule),
        "charter_rule": rule_view(settings.charter_rule),
        "money_rule": rule_view(settings.money_rule),
        "emergency_k": settings.emergency_k,
        "grace_ms": settings.grace_ms,
        "closes_in_ms": settings.closes_in_ms,
    }


def _jsonable(value: Any) -> Any:
    """Op body values (a decision's subject) as JSON: bytes become hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _name(state: NetworkState, key: bytes | None) -> str | None:
    if key is None:
        return None
    member = state.members.get(key)
    return member.display_name if member is not None else None


def _label(name: str | None, key: str | None) -> str:
    return f"{name or '(unnamed)'} ({_short(key)})"


# -- networks ---------------------------------------------------------------------------


def _network_row(state: NetworkState) -> Json:
    return {
        "id": state.network_id.hex(),
        "name": state.name,
        "type": state.network_type,
        "purpose": state.purpose,
        "active_members": len(state.active_members()),
        "open_decisions": sum(1 for d in state.decisions.values() if d.status == "open"),
    }


def network_list(states: Sequence[NetworkState]) -> Json:
    return {"networks": [_network_row(s) for s in states]}


def network_view(state: NetworkState) -> Json:
    statuses = [d.status for d in state.decisions.values()]
    return {
        **_network_row(state),
        "type_description": NETWORK_TYPES.get(state.network_type, ""),
        "genesis_id": state.genesis_id.hex(),
        "members_total": len(state.members),
        "agreement_count": len(state.agreements),
        "decision_counts": {s: statuses.count(s) for s in ("open", "closed", "withdrawn")},
        "settings": _settings(state.settings),
        "epoch_count": len(state.epochs),
        "equivocators": sorted(k.hex() for k in state.equivocators),
        "ops_applied": state.applied,
        "ops_invalid": state.invalid,
    }


# -- members ----------------------------------------------------------------------------


def _member_row(member: Member, me: bytes) -> Json:
    return {
        "key": member.key.hex(),
        "name": member.display_name,
        "kind": member.kind,
        "status": member.status,
        "roles": list(member.roles),
        "offers": list(member.offers),
        "needs": list(member.needs),
        "verified_by": sorted(k.hex() for k in member.verified_by),
        "verified_by_me": me in member.verified_by,
        "me": member.key == me,
    }


def member_list(state: NetworkState, me: bytes) -> Json:
    members = sorted(state.members.values(), key=lambda m: (m.status, m.display_name, m.key))
    return {"network": state.network_id.hex(), "members": [_member_row(m, me) for m in members]}


def member_view(state: NetworkState, key: bytes, me: bytes) -> Json:
    member = state.members[key]
    return {
        **_member_row(member, me),
        "network": state.network_id.hex(),
        "fingerprint": PublicIdentity(member.key).fingerprint,
        "admitted_by": member.admitted_by.hex(),
        "invited_by": member.invited_by.hex() if member.invited_by else None,
        "invited_by_name": _name(state, member.invited_by),
        "exit_op": member.exit_op.hex() if member.exit_op else None,
        "peer_id": member.peer_id,
        "addresses": list(member.addresses),
    }


def match_view(state: NetworkState, found: Sequence[Match]) -> Json:
    return {
        "network": state.network_id.hex(),
        "matches": [
            {
                "member": m.member.hex(),
                "name": _name(state, m.member),
                "need": m.capability,
                "offered_by": [{"key": k.hex(), "name": _name(state, k)} for k in m.offered_by],
            }
            for m in found
        ],
    }


# -- agreements -------------------------------------------------------------------------


def _agreement_row(state: NetworkState, agreement: Agreement) -> Json:
    latest = state.versions[agreement.versions[-1]]
    adopted = state.versions[agreement.adopted] if agreement.adopted else None
    return {
        "id": agreement.agreement_id.hex(),
        "kind": agreement.kind,
        "title": latest.title,
        "version_count": len(agreement.versions),
        "adopted_version": adopted.number if adopted else None,
        "endorsements": len(adopted.endorsed_by) if adopted else 0,
    }


def agreement_list(state: NetworkState) -> Json:
    return {
        "network": state.network_id.hex(),
        "agreements": [_agreement_row(state, a) for a in state.agreements.values()],
    }


def agreement_view(state: NetworkState, agreement_id: bytes, me: bytes) -> Json:
    agreement = state.agreements[agreement_id]
    versions = [state.versions[v] for v in agreement.versions]
    comments = [c for v in (agreement_id, *agreement.versions) for c in state.comments.get(v, ())]
    return {
        **_agreement_row(state, agreement),
        "network": state.network_id.hex(),
        "adopted": agreement.adopted.hex() if agreement.adopted else None,
        "versions": [
            {
                "id": v.op_id.hex(),
                "number": v.number,
                "title": v.title,
                "author": v.author.hex(),
                "author_name": _name(state, v.author),
                "adopted_by": v.adopted_by.hex() if v.adopted_by else None,
                "endorsed_by": sorted(k.hex() for k in v.endorsed_by),
                "endorsed_by_me": me in v.endorsed_by,
            }
            for v in versions
        ],
        "comments": [c.hex() for c in dict.fromkeys(comments)],
    }


# -- decisions --------------------------------------------------------------------------


def _current_positions(decision: Decision) -> list[Position]:
    """Each member's latest position of the current round (what a close now counts,
    as far as this node knows), withdrawals dropped."""
    if decision.status == "closed":
        return list(decision.counted)
    latest: dict[bytes, Position] = {}
    for p in decision.positions:
        held = latest.get(p.member)
        if p.round == decision.current_round and (
            held is None or (p.seq, p.op_id) > (held.seq, held.op_id)
        ):
            latest[p.member] = p
    return sorted((p for p in latest.values() if p.stance != "withdraw"), key=lambda p: p.member)


def _decision_row(decision: Decision) -> Json:
    return {
        "id": decision.decision_id.hex(),
        "title": decision.title,
        "kind": decision.kind,
        "status": decision.status,
        "rule": rule_view(decision.rule),
        "closes_at": decision.closes_at,
        "position_count": len(_current_positions(decision)),
        "electorate_size": len(decision.electorate),
        "outcome": tally_view(decision.outcome),
    }


def _subject_label(state: NetworkState, d: Decision) -> str | None:
    subject = d.subject
    if d.kind in ("admission", "removal") and isinstance(subject, bytes):
        return _label(_name(state, subject), subject.hex())
    if d.kind == "agreement_adoption" and isinstance(subject, bytes) and subject in state.versions:
        version = state.versions[subject]
        return f"{version.title}, version {version.number}"
    if d.kind == "role" and isinstance(subject, Mapping):
        member = subject.get("member")
        if isinstance(member, bytes):
            return f"{_label(_name(state, member), member.hex())} as {subject.get('role')}"
    if d.kind == "governance_change":
        return "new settings for the network"
    return None


def decision_list(state: NetworkState) -> Json:
    return {
        "network": state.network_id.hex(),
        "decisions": [_decision_row(d) for d in state.decisions.values()],
    }


def decision_view(
    state: NetworkState,
    decision_id: bytes,
    projected: Mapping[str, Any] | None,
    texts: Mapping[bytes, Mapping[str, Any]] | None = None,
) -> Json:
    d = state.decisions[decision_id]
    texts = texts or {}
    current = texts.get(d.rounds[-1], {})
    comment_ids = state.comments.get(decision_id, ())
    return {
        "text": current.get("text", ""),
        "comment_list": [
            {
                "id": c.hex(),
                "author": texts[c]["author"].hex(),
                "name": _name(state, texts[c]["author"]),
                "text": texts[c].get("text", ""),
            }
            for c in comment_ids
            if c in texts
        ],
        **_decision_row(d),
        "network": state.network_id.hex(),
        "proposer": d.proposer.hex(),
        "proposer_name": _name(state, d.proposer),
        "subject": _jsonable(d.subject),
        "subject_label": _subject_label(state, d),
        "electorate": sorted(k.hex() for k in d.electorate),
        "rounds": len(d.rounds),
        "positions": [
            {
                "member": p.member.hex(),
                "name": _name(state, p.member),
                "stance": p.stance,
                "reason": texts.get(p.op_id, {}).get("reason", ""),
            }
            for p in _current_positions(d)
        ],
        "projected": tally_view(projected),
        "claimed": tally_view(d.claimed),
        "disputed": d.disputed,
        "closed_by": d.closed_by.hex() if d.closed_by else None,
        "close_op": d.close_op.hex() if d.close_op else None,
        "comments": [c.hex() for c in state.comments.get(decision_id, ())],
    }


def log_view(state: NetworkState) -> Json:
    closed = [d for d in state.decisions.values() if d.status == "closed"]
    return {
        "network": state.network_id.hex(),
        "decisions": [
            {
                "id": d.decision_id.hex(),
                "title": d.title,
                "kind": d.kind,
                "rule": rule_view(d.rule),
                "outcome": tally_view(d.outcome),
                "disputed": d.disputed,
                "closed_by": d.closed_by.hex() if d.closed_by else None,
                "close_op": d.close_op.hex() if d.close_op else None,
            }
            for d in closed
        ],
    }


def verify_view(report: LogReport) -> Json:
    return {
        "ok": report.ok,
        "opened": report.opened,
        "encrypted": report.encrypted,
        "network_id": report.network_id.hex() if report.network_id else None,
        "network_name": report.network_name,
        "genesis_id": report.genesis_id.hex() if report.genesis_id else None,
        "ops": report.ops,
        "problems": list(report.problems),
        "decisions": [
            {
                "id": d.decision_id.hex(),
                "close_op": d.close_op.hex(),
                "title": d.title,
                "kind": d.kind,
                "rule": rule_view(d.rule),
                "outcome": tally_view(d.outcome),
                "position_count": d.positions,
                "disputed": d.disputed,
                "confirmed": d.confirmed,
            }
            for d in report.decisions
        ],
    }


def import_view(report: ImportReport, network_name: str | None) -> Json:
    return {
        "network_id": report.network_id.hex(),
        "network_name": network_name,
        "imported": report.imported,
        "duplicates": report.duplicates,
        "unattributed": report.unattributed,
        "invalid": report.invalid,
        "truncated": report.truncated,
        "problems": list(report.problems),
    }
