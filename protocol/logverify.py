"""Verifying a decision log (:mod:`protocol.log` describes the format and what is checked).

:func:`verify_log` needs no network and no state, and never raises: every problem, from a
wrong key to a forged outcome, becomes a line of the :class:`~protocol.log.LogReport`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import pairwise
from typing import Any, NamedTuple

from crypto import CryptoError, EpochKey
from protocol import wire
from protocol._errors import RemoteProtocolError
from protocol.dag import Dag
from protocol.fold import fold
from protocol.log import (
    AEAD_TAG,
    BODY_KEYS,
    ENCRYPTED_HEADER,
    ENTRY_KEYS,
    MAGIC,
    MAX_BODY_BYTES,
    MAX_LOG_BYTES,
    MAX_LOG_OPS,
    MAX_PADDED,
    MAX_PROBLEMS,
    MIN_PADDED,
    MODE_ENCRYPTED,
    MODE_PLAIN,
    NO_KEYS,
    NONCE_BYTES,
    PLAIN_HEADER,
    VERSION,
    LoggedDecision,
    LogReport,
    closed_decisions,
    fold_order,
    short_id,
)
from protocol.rules import Tally
from protocol.signed import (
    MAX_OP_BYTES,
    MAX_SIGNED_OP_BYTES,
    NETWORK_ID_BYTES,
    OP_ID_BYTES,
    VerifiedOp,
    op_id_of,
    verify_signed_op,
)
from protocol.state import Decision, NetworkState

__all__ = ["verify_log"]

_TYPE = re.compile(r"[a-z][a-z_]{0,31}")


# -- reading --------------------------------------------------------------------------------


class _CannotOpen(Exception):
    """The log is encrypted and no given key opens it."""


class _Entry(NamedTuple):
    proposal: bytes
    close: bytes
    outcome: Tally
    disputed: bool


class _Content(NamedTuple):
    network_id: bytes
    genesis_id: bytes
    ops: list[bytes]
    decisions: list[_Entry]


def _is_bucket(size: int) -> bool:
    return MIN_PADDED <= size <= MAX_PADDED and size & (size - 1) == 0


def _open(data: bytes, keys: Mapping[bytes, EpochKey]) -> bytes:
    if len(data) > MAX_LOG_BYTES:
        raise RemoteProtocolError(
            f"the file is {len(data)} bytes, over the limit of {MAX_LOG_BYTES}"
        )
    if len(data) < PLAIN_HEADER or data[: len(MAGIC)] != MAGIC:
        raise RemoteProtocolError("not a p2pnet decision log (no P2PNETDL header)")
    version, mode = data[len(MAGIC)], data[len(MAGIC) + 1]
    if version != VERSION:
        raise RemoteProtocolError(f"decision log version {version} is not supported")
    if mode == MODE_PLAIN:
        return data[PLAIN_HEADER:]
    if mode != MODE_ENCRYPTED:
        raise RemoteProtocolError(f"unknown decision log mode {mode}")
    if not _is_bucket(len(data) - ENCRYPTED_HEADER - AEAD_TAG):
        raise RemoteProtocolError("the encrypted log has the wrong size: truncated or altered")
    header = data[:ENCRYPTED_HEADER]
    padded = b""
    for key in keys.values():
        try:
            padded = key.decrypt(data[ENCRYPTED_HEADER:], header, header[-NONCE_BYTES:])
            break
        except CryptoError:
            continue
    else:
        raise _CannotOpen(
            "the log could not be decrypted: not for any network you hold, or altered"
        )
    length = int.from_bytes(padded[:4], "big")
    if length > len(padded) - 4 or padded.count(0, 4 + length) != len(padded) - 4 - length:
        raise RemoteProtocolError("bad padding inside the encrypted log")
    return padded[4 : 4 + length]


def _is_bin(value: Any, length: int) -> bool:
    return type(value) is bytes and len(value) == length


def _entry(index: int, obj: Any) -> _Entry:
    if type(obj) is not dict or tuple(obj) != ENTRY_KEYS:
        raise RemoteProtocolError(f"decision #{index} must have exactly {', '.join(ENTRY_KEYS)}")
    if not (_is_bin(obj["proposal"], OP_ID_BYTES) and _is_bin(obj["close"], OP_ID_BYTES)):
        raise RemoteProtocolError(f"decision #{index}: proposal and close must be op ids")
    if type(obj["disputed"]) is not bool:
        raise RemoteProtocolError(f"decision #{index}: disputed must be true or false")
    try:
        outcome = Tally.from_wire(obj["outcome"])
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(f"decision #{index}: {exc}") from None
    return _Entry(obj["proposal"], obj["close"], outcome, obj["disputed"])


def _parse(body: bytes) -> _Content:
    obj = wire.decode(body, max_size=MAX_BODY_BYTES, max_items=MAX_LOG_OPS)
    if type(obj) is not dict or tuple(obj) != BODY_KEYS:
        raise RemoteProtocolError(f"the log must be a map of exactly {', '.join(BODY_KEYS)}")
    if not (
        _is_bin(obj["network_id"], NETWORK_ID_BYTES) and _is_bin(obj["genesis_id"], OP_ID_BYTES)
    ):
        raise RemoteProtocolError("network_id and genesis_id must be ids")
    ops, decisions = obj["ops"], obj["decisions"]
    if type(ops) is not list or not all(type(op) is bytes for op in ops):
        raise RemoteProtocolError("ops must be a list of signed ops")
    if type(decisions) is not list or len(decisions) > len(ops):
        raise RemoteProtocolError("decisions must be a list, no longer than the ops")
    entries = [_entry(i, d) for i, d in enumerate(decisions)]
    return _Content(obj["network_id"], obj["genesis_id"], ops, entries)


def _name(index: int, raw: bytes, op_id: bytes) -> str:
    """Names an op that failed verification: index, best-effort type and author, id."""
    what = "unreadable"
    try:
        outer = wire.unpack(raw, max_size=MAX_SIGNED_OP_BYTES, max_items=2)
        if type(outer) is list and outer and type(outer[0]) is bytes:
            op = wire.unpack(outer[0], max_size=MAX_OP_BYTES, max_items=MAX_OP_BYTES)
            if type(op) is dict and _is_bin(op.get("author"), 32):
                kind = op.get("type")
                kind = kind if type(kind) is str and _TYPE.fullmatch(kind) else "op"
                what = f"{kind} by {short_id(op['author'])}"
    except RemoteProtocolError:
        what = "unreadable"
    return f"op #{index} ({what}, id {short_id(op_id)})"


def _check_ops(content: _Content, problems: list[str]) -> dict[bytes, VerifiedOp]:
    """Verify every op and its hash links; returns the ops that passed, by id."""
    position: dict[bytes, int] = {}
    for i, raw in enumerate(content.ops):
        position.setdefault(op_id_of(raw), i)
    dag = Dag(content.genesis_id)
    accepted: dict[bytes, VerifiedOp] = {}
    skipped = 0
    last: tuple[int, bytes] = (0, b"")
    for i, raw in enumerate(content.ops):
        op_id = op_id_of(raw)
        if position[op_id] != i:
            problems.append(f"{_name(i, raw, op_id)} repeats op #{position[op_id]}")
            continue
        try:
            op = verify_signed_op(raw)
        except RemoteProtocolError as exc:
            problems.append(f"{_name(i, raw, op_id)} is malformed: {exc}")
            continue
        except CryptoError:
            problems.append(f"{_name(i, raw, op_id)}: signature does not verify")
            continue
        name = f"op #{i} ({op.type} by {short_id(op.author)}, id {short_id(op_id)})"
        if op.net != content.network_id:
            problems.append(f"{name} belongs to another network ({short_id(op.net)})")
            continue
        if fold_order(op) <= last:
            problems.append(f"{name} is out of fold order (lamport, op id)")
        last = max(last, fold_order(op))
        absent = [short_id(p) for p in op.parents if p not in position]
        later = [position[p] for p in op.parents if position.get(p, -1) > i]
        if absent:
            problems.append(f"{name} names parent {', '.join(absent)} which is not in the log")
        if later:
            problems.append(f"{name} comes before its parent op #{later[0]}")
        if absent or later:
            continue
        if any(p not in accepted for p in op.parents):
            skipped += 1  # an ancestor failed: its own problem says why
            continue
        rejected = len(dag.rejected)
        dag.add(op)
        if len(dag.rejected) > rejected:
            problems.append(f"{name} breaks the DAG rules: {dag.rejected[-1].reason}")
            continue
        accepted[op_id] = op
    if skipped:
        problems.append(f"{skipped} more ops were not checked: an op in their past failed")
    return accepted


def _label(d: Decision) -> str:
    title = d.title if len(d.title) <= 60 else d.title[:59] + "…"
    return f"decision '{title}' ({short_id(d.decision_id)})"


def _missing(op_id: bytes, in_file: Mapping[bytes, Any]) -> str:
    return "did not pass the checks" if op_id in in_file else "is not in the log"


def _compare_one(
    entry: _Entry, d: Decision, accepted: Mapping[bytes, Any], in_file: Mapping[bytes, Any]
) -> list[str]:
    """What is wrong with one listed decision, as recomputed into ``d``."""
    label = _label(d)
    if d.status != "closed" or d.outcome is None:
        why = "does not close it" if entry.close in accepted else _missing(entry.close, in_file)
        return [
            f"{label}: the log says it was closed by {short_id(entry.close)}, which {why}; "
            f"the ops leave it {d.status}"
        ]
    found = []
    if entry.close != d.close_op:
        first = short_id(d.close_op or b"")
        found.append(
            f"{label}: the log names close {short_id(entry.close)}, "
            f"but the first valid close is {first}"
        )
    if entry.outcome.outcome != d.outcome.outcome:
        found.append(
            f"{label}: the log says {entry.outcome.outcome}, the ops give {d.outcome.outcome}"
        )
    elif entry.outcome != d.outcome:
        found.append(
            f"{label}: the log's tally {entry.outcome.to_wire()} differs from "
            f"the recomputed {d.outcome.to_wire()}"
        )
    if entry.disputed != d.disputed:
        said = "disputed" if entry.disputed else "undisputed"
        found.append(f"{label}: the log says {said}, the ops say the opposite")
    return found


def _compare(
    content: _Content,
    state: NetworkState,
    accepted: Mapping[bytes, VerifiedOp],
    problems: list[str],
) -> set[bytes]:
    """Compare the listed decisions with the recomputed ones; returns the confirmed ids."""
    closed = closed_decisions(state, accepted)
    rank = {d.decision_id: n for n, d in enumerate(closed)}
    in_file = dict.fromkeys(map(op_id_of, content.ops))
    listed: dict[bytes, int] = {}
    confirmed: set[bytes] = set()
    for i, entry in enumerate(content.decisions):
        if entry.proposal in listed:
            problems.append(f"decision #{i} ({short_id(entry.proposal)}) is listed twice")
            continue
        listed[entry.proposal] = i
        d = state.decisions.get(entry.proposal)
        if d is None:
            why = "is not a valid proposal" if entry.proposal in accepted else ""
            why = why or _missing(entry.proposal, in_file)
            problems.append(f"decision #{i}: proposal {short_id(entry.proposal)} {why}")
            continue
        found = _compare_one(entry, d, accepted, in_file)
        problems.extend(found)
        if not found:
            confirmed.add(d.decision_id)
    order = sorted((i, rank[p]) for p, i in listed.items() if p in rank)
    for (i, a), (j, b) in pairwise(order):
        if b < a:
            problems.append(
                f"decisions listed out of order: #{j}, {_label(closed[b])}, closes before "
                f"#{i}, {_label(closed[a])}"
            )
            break
    for d in closed:
        if d.decision_id not in listed:
            close = short_id(d.close_op or b"")
            problems.append(f"{_label(d)} closed by {close} is missing from the list")
    return confirmed


def verify_log(data: bytes, *, keys: Mapping[bytes, EpochKey] = NO_KEYS) -> LogReport:
    """Check a decision log without the network; ``keys`` maps export key ids to keys.

    Never raises, whatever ``data`` holds: every problem, including a missing or wrong
    key (``opened=False``), is a line of the report (at most :data:`MAX_PROBLEMS`).
    What ``ok`` proves: every op is signed by its author and hash-linked to the genesis,
    and folding the ops gives exactly the listed decisions, outcomes and order. What it
    cannot prove: that the network is the one you think (compare ``network_id`` and
    ``genesis_id`` with your own, or the genesis author's safety number), or that the
    log is complete: a decision on which no listed one depends can be left out whole.
    """
    encrypted = data[: len(MAGIC)] == MAGIC and data[len(MAGIC) + 1 : PLAIN_HEADER] == b"\x01"
    try:
        body = _open(data, keys)
        try:
            content = _parse(body)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"the log's contents are unreadable: {exc}") from None
    except (_CannotOpen, RemoteProtocolError) as exc:
        return LogReport(False, (str(exc),), encrypted=encrypted)
    problems: list[str] = []
    accepted = _check_ops(content, problems)
    state = fold(accepted.values(), network_id=content.network_id, genesis_id=content.genesis_id)
    logged: list[LoggedDecision] = []
    if state is None:
        problems.append(f"the genesis {short_id(content.genesis_id)} did not pass the checks")
    else:
        confirmed = _compare(content, state, accepted, problems)
        for d in closed_decisions(state, accepted):
            if d.outcome is not None and d.close_op is not None:
                logged.append(
                    LoggedDecision(
                        d.decision_id, d.close_op, d.title, d.kind, d.rule, d.outcome,
                        len(d.counted), d.disputed, d.decision_id in confirmed,
                    )
                )  # fmt: skip
    if len(problems) > MAX_PROBLEMS:
        problems[MAX_PROBLEMS:] = [f"… and {len(problems) - MAX_PROBLEMS} more problems"]
    return LogReport(
        ok=not problems,
        problems=tuple(problems),
        decisions=tuple(logged),
        network_name=state.name if state is not None else None,
        network_id=content.network_id,
        genesis_id=content.genesis_id,
        encrypted=encrypted,
        opened=True,
        ops=len(content.ops),
    )
