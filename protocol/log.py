"""The decision log: a self-contained file that proves a network's closed decisions.

Theory of operation
-------------------
:func:`export_log` writes the closed decisions of a state, in fold order of their close
ops, with the signed ops that prove them: the causal past of every winning close (hence
every proposal, round, position and membership change they were computed from, back to
the genesis). A removal that is *not* in that past can still invalidate ops in it (an
emergency removal concurrent with a counted position cuts it off retroactively), so the
export folds its selection and, when that does not reproduce the state's decisions,
adds the causal past of every ``leave`` and ``emergency_remove`` op, and as a last resort
every op. The selection is a function of the set of ops, so members holding the same
ops export byte-identical plain logs.

:func:`verify_log` needs no network and no state: it checks the container, decrypts,
decodes strictly, verifies every op (signature, canonical form, network), the hash links
(every parent is in the log; the genesis has none), the DAG rules, then folds the ops
and compares each listed decision with the recomputed one. Membership at each point is
checked by the fold itself: positions of non-members do not count.

File format (all integers big-endian)::

    plain:      "P2PNETDL" | version 0x01 | mode 0x00 | body
    encrypted:  "P2PNETDL" | version 0x01 | mode 0x01 | export key id (16)
                | nonce (24) | XChaCha20-Poly1305(key, nonce, pad(body), aad = header[0:50])

``body`` is canonical msgpack (:mod:`protocol.wire`) of ``{"decisions": [{"close",
"disputed", "outcome", "proposal"}...], "genesis_id", "network_id", "ops": [signed op
bytes...]}``; ``ops`` in fold order ``(lamport, op_id)``, ``decisions`` in fold order of
their close, ``outcome`` the recomputed :class:`~protocol.rules.Tally` in wire form.
``pad(body) = u32(len(body)) | body | zeros`` up to the smallest power of two from 4 KiB
to 64 MiB that holds it; unpadding requires exactly that form. Limits, enforced on
read: at most :data:`MAX_LOG_BYTES` in the file, :data:`MAX_LOG_OPS` ops, as many
decisions as ops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from crypto import EpochKey
from protocol import wire
from protocol._errors import LocalProtocolError
from protocol.dag import Dag
from protocol.fold import fold
from protocol.rules import RuleSpec, Tally
from protocol.signed import (
    VerifiedOp,
)
from protocol.state import Decision, NetworkState

__all__ = [
    "MAGIC",
    "MAX_LOG_BYTES",
    "MAX_LOG_OPS",
    "LogReport",
    "LoggedDecision",
    "export_log",
    "short_id",
]

MAGIC = b"P2PNETDL"
VERSION = 2  # 2: no key id in the encrypted header
MODE_PLAIN = 0
MODE_ENCRYPTED = 1
NONCE_BYTES = 24
AEAD_TAG = 16
PLAIN_HEADER = len(MAGIC) + 2
ENCRYPTED_HEADER = PLAIN_HEADER + NONCE_BYTES
MIN_PADDED = 4096
MAX_PADDED = 64 << 20
MAX_BODY_BYTES = MAX_PADDED - 4
MAX_LOG_BYTES = ENCRYPTED_HEADER + MAX_PADDED + AEAD_TAG
MAX_LOG_OPS = 200_000
MAX_PROBLEMS = 100
BODY_KEYS = ("decisions", "genesis_id", "network_id", "ops")
ENTRY_KEYS = ("close", "disputed", "outcome", "proposal")
_EXITS = frozenset({"leave", "emergency_remove"})
NO_KEYS: Mapping[bytes, EpochKey] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """A closed decision as the verifier recomputed it from the log's ops.

    ``confirmed``: the log's summary lists it with exactly this close, outcome and
    disputed flag. ``positions``: how many positions the outcome counted.
    """

    decision_id: bytes
    close_op: bytes
    title: str
    kind: str
    rule: RuleSpec
    outcome: Tally
    positions: int
    disputed: bool
    confirmed: bool


@dataclass(frozen=True, slots=True)
class LogReport:
    """What :func:`verify_log` found. ``ok`` iff there are no problems.

    ``opened``: the container was read, decrypted and decoded (False for a wrong or
    missing key, a damaged container or malformed contents). ``problems`` name ops by
    their index (from 0) in the log's op list and by id, decisions by title and id.
    ``network_id`` and ``genesis_id`` are what the file claims: compare them with your
    own network's before trusting whose log it is (see :func:`verify_log`).
    """

    ok: bool
    problems: tuple[str, ...]
    decisions: tuple[LoggedDecision, ...] = ()
    network_name: str | None = None
    network_id: bytes | None = None
    genesis_id: bytes | None = None
    encrypted: bool = False
    opened: bool = False
    ops: int = 0


def short_id(value: bytes) -> str:
    """How problems name ids and keys: the first 12 hex digits and an ellipsis."""
    return value.hex()[:12] + "…"


def fold_order(op: VerifiedOp) -> tuple[int, bytes]:
    return op.lamport, op.op_id


# -- export ---------------------------------------------------------------------------------


def closed_decisions(state: NetworkState, by_id: Mapping[bytes, VerifiedOp]) -> list[Decision]:
    closed = [d for d in state.decisions.values() if d.status == "closed"]
    for d in closed:
        if d.close_op not in by_id or d.outcome is None:
            raise LocalProtocolError("the state names a close that is not among the ops")
    return sorted(closed, key=lambda d: fold_order(by_id[d.close_op or b""]))


def _view(state: NetworkState | None, by_id: Mapping[bytes, VerifiedOp]) -> list[Any] | None:
    if state is None:
        return None
    return [
        (d.decision_id, d.close_op, d.outcome, d.disputed, d.counted)
        for d in closed_decisions(state, by_id)
    ]


def _select(state: NetworkState, dag: Dag, by_id: Mapping[bytes, VerifiedOp]) -> list[VerifiedOp]:
    """The smallest of the three selections (see the module docstring) that reproduces
    the state's closed decisions, in fold order."""
    target = _view(state, by_id)
    closes = [d.close_op or b"" for d in closed_decisions(state, by_id)]
    exits = [i for i, op in by_id.items() if op.type in _EXITS]
    previous: set[bytes] = set()
    for roots in ([state.genesis_id, *closes], [state.genesis_id, *closes, *exits], None):
        chosen = set(by_id) if roots is None else {a for r in roots for a in dag.ancestors(r)}
        if chosen == previous:
            continue
        previous = chosen
        selected = sorted((by_id[i] for i in chosen), key=fold_order)
        folded = fold(selected, network_id=state.network_id, genesis_id=state.genesis_id)
        if _view(folded, by_id) == target:
            return selected
    raise LocalProtocolError("the state is not the fold of these ops")


def _summary(d: Decision) -> dict[str, Any]:
    outcome = d.outcome.to_wire() if d.outcome is not None else None
    return {
        "close": d.close_op,
        "disputed": d.disputed,
        "outcome": outcome,
        "proposal": d.decision_id,
    }


def _pad(body: bytes) -> bytes:
    size = max(MIN_PADDED, 1 << (len(body) + 3).bit_length())
    return len(body).to_bytes(4, "big") + body + bytes(size - 4 - len(body))


def export_log(
    state: NetworkState,
    ops: Mapping[bytes, VerifiedOp] | Iterable[VerifiedOp],
    *,
    key: EpochKey | None,
    nonce: bytes | None,
) -> bytes:
    """The decision log of ``state``, proved by ``ops`` (the ops ``state`` was folded from).

    With ``key`` (normally ``NetworkSecret.export_key``, which every member holds) and a
    fresh random 24-byte ``nonce``, the log is encrypted and padded; the header shows the
    key id, the nonce and the padded size, nothing else. With ``key=None`` and
    ``nonce=None`` it is a *plain* copy, for an outside auditor: anyone holding it reads
    every member's key, name, positions and reasons in the log; the CLI warns before
    writing one. The output depends only on the set of ops (and the nonce).

    Raises:
        LocalProtocolError: a key without a nonce or the reverse, a nonce that is not 24
            bytes, ``ops`` that do not hold or do not fold to ``state``, or a log over
            the limits.
        OverflowError: more than ``protocol.dag.MAX_WAITING`` ops lack a parent.
    """
    if (key is None) != (nonce is None):
        raise LocalProtocolError("an encrypted log needs a key and a nonce; a plain one neither")
    if nonce is not None and (type(nonce) is not bytes or len(nonce) != NONCE_BYTES):
        raise LocalProtocolError(f"the nonce must be {NONCE_BYTES} fresh random bytes")
    given = ops.values() if isinstance(ops, Mapping) else ops
    dag = Dag(state.genesis_id)
    by_id = {op.op_id: op for op in dag.add_all(o for o in given if o.net == state.network_id)}
    if state.genesis_id not in by_id:
        raise LocalProtocolError("the ops do not hold the network's genesis")
    selected = _select(state, dag, by_id)
    entries = [_summary(d) for d in closed_decisions(state, by_id)]
    body = wire.encode(
        {
            "decisions": entries,
            "genesis_id": state.genesis_id,
            "network_id": state.network_id,
            "ops": [op.signed for op in selected],
        }
    )
    if len(selected) > MAX_LOG_OPS or len(body) > MAX_BODY_BYTES:
        raise LocalProtocolError("the decision log is too large to export")
    if key is None or nonce is None:
        return MAGIC + bytes([VERSION, MODE_PLAIN]) + body
    # No key id: a reader tries its networks' export keys, so two logs of one network
    # cannot be linked by a header field (as bundles).
    header = MAGIC + bytes([VERSION, MODE_ENCRYPTED]) + nonce
    return header + key.encrypt(_pad(body), header, nonce)
