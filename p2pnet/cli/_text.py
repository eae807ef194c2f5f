"""Plain text of the command line's views: tables and fields built from the same
JSON-ready dicts as ``--json``, with every character a terminal could interpret
replaced."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from p2pnet.cli._output import (
    Json,
    _clean,
    _label,
    _short,
)

__all__ = ["render"]


def _when(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):  # a peer's clock can say anything
        return f"{ms} ms"


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[_clean(c) for c in headers], *[[_clean(c) for c in row] for row in rows]]
    if len(cells) == 1:
        return "(none)"
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _fields(pairs: Iterable[tuple[str, object]]) -> str:
    pairs = list(pairs)
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k + ':':<{width + 1}} {_clean(v)}" for k, v in pairs)


def _rule_text(rule: Json) -> str:
    return f"{rule['spec']} (quorum {rule['quorum']})"


def _tally_text(tally: Json) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in tally["counts"].items())
    quorum = "" if tally["quorum_met"] else ", quorum not met"
    fragile = ", fragile (many stood aside)" if tally["fragile"] else ""
    return (
        f"{tally['outcome']} ({counts}; {tally['participants']} of {tally['eligible']} "
        f"took a position{quorum}{fragile})"
    )


def _network_list_text(data: Json) -> str:
    rows = [
        (_short(n["id"]), n["name"], n["type"], n["active_members"], n["open_decisions"])
        for n in data["networks"]
    ]
    return _table(("ID", "NAME", "TYPE", "MEMBERS", "OPEN DECISIONS"), rows)


def _network_text(data: Json) -> str:
    s = data["settings"]
    decisions = data["decision_counts"]
    text = _fields(
        [
            ("network", f"{data['name']} ({data['id']})"),
            ("type", f"{data['type']}: {data['type_description']}"),
            ("purpose", data["purpose"] or "-"),
            ("members", f"{data['active_members']} active of {data['members_total']}"),
            ("agreements", data["agreement_count"]),
            ("decisions", ", ".join(f"{v} {k}" for k, v in decisions.items())),
            ("admission", s["admission"]),
            ("ordinary rule", _rule_text(s["ordinary_rule"])),
            ("admission rule", _rule_text(s["admission_rule"])),
            ("removal rule", _rule_text(s["removal_rule"])),
            ("charter rule", _rule_text(s["charter_rule"])),
            ("money rule", _rule_text(s["money_rule"])),
            ("emergency removal", f"needs {s['emergency_k']} members"),
            ("default deadline", f"{s['closes_in_ms'] // 3_600_000} hours"),
        ]
    )
    if data["equivocators"]:
        forked = ", ".join(_short(k) for k in data["equivocators"])
        text += f"\nWARNING: these members signed conflicting histories: {forked}"
    return text


def _member_list_text(data: Json) -> str:
    rows = [
        (
            _short(m["key"]),
            (m["name"] or "(unnamed)") + (" (you)" if m["me"] else ""),
            m["kind"],
            m["status"],
            "yes" if m["verified_by_me"] else "no",
            ",".join(m["offers"]) or "-",
            ",".join(m["needs"]) or "-",
        )
        for m in data["members"]
    ]
    return _table(("KEY", "NAME", "KIND", "STATUS", "VERIFIED", "OFFERS", "NEEDS"), rows)


def _member_text(data: Json) -> str:
    return _fields(
        [
            ("name", (data["name"] or "(unnamed)") + (" (you)" if data["me"] else "")),
            ("key", data["key"]),
            ("fingerprint", data["fingerprint"]),
            ("kind", data["kind"]),
            ("status", data["status"]),
            ("roles", ", ".join(data["roles"]) or "-"),
            ("offers", ", ".join(data["offers"]) or "-"),
            ("needs", ", ".join(data["needs"]) or "-"),
            ("verified by", ", ".join(_short(k) for k in data["verified_by"]) or "nobody yet"),
            ("verified by you", "yes" if data["verified_by_me"] else "no"),
            ("admitted by op", _short(data["admitted_by"])),
            (
                "invited by",
                _label(data["invited_by_name"], data["invited_by"]) if data["invited_by"] else "-",
            ),
        ]
    )


def _match_text(data: Json) -> str:
    rows = [
        (
            _label(m["name"], m["member"]),
            m["need"],
            ", ".join(_label(o["name"], o["key"]) for o in m["offered_by"]) or "nobody yet",
        )
        for m in data["matches"]
    ]
    return _table(("MEMBER", "NEEDS", "OFFERED BY"), rows)


def _agreement_list_text(data: Json) -> str:
    rows = [
        (
            _short(a["id"]),
            a["title"],
            a["kind"],
            a["version_count"],
            a["adopted_version"] or "not adopted",
            a["endorsements"],
        )
        for a in data["agreements"]
    ]
    return _table(("ID", "TITLE", "KIND", "VERSIONS", "ADOPTED", "ENDORSED"), rows)


def _agreement_text(data: Json) -> str:
    head = _fields(
        [
            ("agreement", f"{data['title']} ({data['id']})"),
            ("kind", data["kind"]),
            ("in force", f"version {data['adopted_version']}" if data["adopted"] else "none"),
            ("comments", len(data["comments"])),
        ]
    )
    rows = [
        (
            v["number"],
            _short(v["id"]),
            v["title"],
            _label(v["author_name"], v["author"]),
            _short(v["adopted_by"]) if v["adopted_by"] else "-",
            len(v["endorsed_by"]),
        )
        for v in data["versions"]
    ]
    versions = _table(("#", "ID", "TITLE", "AUTHOR", "ADOPTED BY", "ENDORSED"), rows)
    return f"{head}\n\n{versions}"


def _decision_list_text(data: Json) -> str:
    rows = [
        (
            _short(d["id"]),
            d["title"],
            d["kind"],
            d["rule"]["spec"],
            d["outcome"]["outcome"] if d["outcome"] else d["status"],
            f"{d['position_count']}/{d['electorate_size']}",
            _when(d["closes_at"]),
        )
        for d in data["decisions"]
    ]
    return _table(("ID", "TITLE", "KIND", "RULE", "STATUS", "POSITIONS", "CLOSES"), rows)


def _decision_text(data: Json) -> str:
    pairs: list[tuple[str, object]] = [
        ("decision", f"{data['title']} ({data['id']})"),
        ("kind", data["kind"]),
        ("rule", _rule_text(data["rule"])),
        ("proposed by", _label(data["proposer_name"], data["proposer"])),
        ("status", data["status"]),
        ("closes", _when(data["closes_at"])),
    ]
    if data["subject_label"] is not None:
        pairs.append(("subject", data["subject_label"]))
    if data["projected"]:
        pairs.append(("if closed now", _tally_text(data["projected"])))
    if data["outcome"]:
        pairs.append(("outcome", _tally_text(data["outcome"])))
    if data["disputed"]:
        pairs.append(("DISPUTED", "the closer recorded a different outcome than this one"))
    pairs.append(("comments", len(data["comments"])))
    rows = [
        (_label(p["name"], p["member"]), p["stance"], _clean(p["reason"]))
        for p in data["positions"]
    ]
    positions = _table(("MEMBER", "STANCE", "REASON"), rows)
    visible = "Positions are visible to every member and signed."
    parts = [_fields(pairs)]
    if data["text"]:
        parts.append(_clean(data["text"]))
    parts.append(f"{positions}\n{visible}")
    parts += [
        f"{_label(c['name'], c['author'])}: {_clean(c['text'])}" for c in data["comment_list"]
    ]
    return "\n\n".join(parts)


def _log_text(data: Json) -> str:
    rows = [
        (_short(d["id"]), d["title"], d["kind"], d["rule"]["spec"], d["outcome"]["outcome"])
        for d in data["decisions"]
        if d["outcome"]
    ]
    return _table(("ID", "TITLE", "KIND", "RULE", "OUTCOME"), rows)


def _verify_text(data: Json) -> str:
    if not data["opened"]:
        return "\n".join(f"problem: {_clean(p)}" for p in data["problems"])
    lines = [
        f"network: {_clean(data['network_name'] or '?')} ({data['network_id']})",
        f"genesis: {data['genesis_id']}",
        f"{data['ops']} signed ops, {len(data['decisions'])} closed decisions",
    ]
    for d in data["decisions"]:
        mark = "ok" if d["confirmed"] else "NOT CONFIRMED"
        lines.append(
            f"  {_short(d['id'])} {_clean(d['title'])}: {d['outcome']['outcome']} [{mark}]"
        )
    lines += [f"problem: {_clean(p)}" for p in data["problems"]]
    lines.append(
        "verified: every op is signed and linked to the genesis, and the outcomes recompute"
        if data["ok"]
        else f"NOT VERIFIED: {len(data['problems'])} problem(s)"
    )
    return "\n".join(lines)


def _import_text(data: Json) -> str:
    name = _clean(data["network_name"] or data["network_id"])
    text = (
        f"Imported into {name}: {data['imported']} new, {data['duplicates']} already held, "
        f"{data['invalid']} refused, {data['unattributed']} kept for later."
    )
    return "\n".join([text, *(f"problem: {_clean(p)}" for p in data["problems"])])


_RENDERERS = {
    "network_list": _network_list_text,
    "network": _network_text,
    "member_list": _member_list_text,
    "member": _member_text,
    "match": _match_text,
    "agreement_list": _agreement_list_text,
    "agreement": _agreement_text,
    "decision_list": _decision_list_text,
    "decision": _decision_text,
    "log": _log_text,
    "verify": _verify_text,
    "import": _import_text,
}


def render(view: str, data: Json) -> str:
    """The plain text of a view built by the functions above."""
    return _RENDERERS[view](data)
