"""The fold: a network's state as a pure function of its set of ops.

Theory of operation
-------------------
``fold(ops)`` indexes the ops in a :class:`~protocol.dag.Dag`, sorts the valid ones in
fold order ``(lamport, op_id)`` (parents first, the same on every node) and applies them
one by one. Applying checks the op against the state so far — is the author an active
member, is the body valid, may this author do this now — and either changes the state
or counts the op as invalid. Invalid ops stay in the DAG (children may name them) but
change nothing.

Causal past. Where GOVERNANCE.md says "in the causal past" (the electorate of a
proposal, the positions a close counts, a removal's cutoff) the fold asks the DAG's
version vectors, so the answer depends only on the ops the deciding op's author had seen.

Removal. A removal — a passed removal decision (at its close), the k-th distinct
emergency signature, or leaving — sets a cutoff: the highest ``seq`` of the removed
author in the removing op's causal past (for leaving, the leave op's own ``seq``). Ops
of that author above the cutoff are invalid *wherever they fall in fold order*: if one
was already applied (it was concurrent with the removal and sorted before it), the fold
starts over with that cutoff imposed from the start. Imposed cutoffs only accumulate,
so this ends; and it makes the result independent of arrival order. If in the rerun the
removal no longer happens (the removed member's own concurrent ops had prevented it),
the imposed cutoff stands: when concurrent ops disagree about a removal, removal wins.
Mutual removal follows: of two concurrent removals of each other, the first in fold
order applies, and the second is by an author already cut off below it, so it is void.

Closes. The first valid close of a proposal in fold order wins. Its outcome is the rule
applied to the electorate's latest positions (by their own ``seq``) of the round current
in the close's causal past, among the positions in that causal past. The close carries
the closer's computed tally; if ours differs, the decision is *disputed* (and still
closes with ours). State-changing outcomes take effect at the close.

Incremental use. :class:`Replica` applies ops that sort after everything applied so far
directly, and folds from scratch otherwise (late arrivals, retroactive removals), so it
always equals :func:`fold` on the same set.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from sys import intern
from types import MappingProxyType
from typing import Any

from crypto import is_valid_public_key
from protocol._errors import ProtocolError
from protocol.dag import Dag
from protocol.ops import body_error
from protocol.rules import RuleSpec, Tally, position_error, tally
from protocol.settings import Settings
from protocol.signed import VerifiedOp
from protocol.state import (
    Agreement,
    AgreementVersion,
    Decision,
    Member,
    NetworkState,
    Position,
)

__all__ = ["Folder", "Replica", "close_refusal", "fold", "no_gc_pauses", "projected_tally"]

WITHDRAW = "withdraw"
_MAX_REASONS = 256


class _Retroactive(Exception):
    def __init__(self, author: bytes, cutoff: int, trigger: bytes) -> None:
        super().__init__()
        self.author = author
        self.cutoff = cutoff
        self.trigger = trigger


@dataclass(frozen=True, slots=True)
class _Imposed:
    """A removal found retroactively: ``author`` is cut off at ``cutoff`` and counts as
    removed from the op ``trigger`` on, whatever that op turns out to do in the rerun."""

    cutoff: int
    trigger: bytes


class _Invalid(Exception):
    pass


@dataclass(slots=True)
class _MemberRec:
    key: bytes
    display_name: str
    kind: str
    admitted_by: bytes
    invited_by: bytes | None
    status: str = "active"
    offers: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    roles: list[str] = field(default_factory=list)
    verified_by: set[bytes] = field(default_factory=set)
    peer_id: str | None = None
    addresses: tuple[str, ...] = ()
    exit_op: bytes | None = None
    cutoff: int | None = None


@dataclass(slots=True)
class _DecisionRec:
    decision_id: bytes
    proposer: bytes
    title: str
    kind: str
    subject: Any
    rule: RuleSpec
    closes_at: int
    electorate: frozenset[bytes]
    rounds: list[bytes]
    positions: list[Position] = field(default_factory=list)
    status: str = "open"
    close_op: bytes | None = None
    closed_by: bytes | None = None
    outcome: Tally | None = None
    claimed: Tally | None = None
    disputed: bool = False
    counted: tuple[Position, ...] = ()


@dataclass(slots=True)
class _VersionRec:
    op_id: bytes
    agreement: bytes
    number: int
    title: str
    author: bytes
    adopted_by: bytes | None = None
    endorsed_by: set[bytes] = field(default_factory=set)


@dataclass(slots=True)
class _AgreementRec:
    agreement_id: bytes
    kind: str
    versions: list[bytes] = field(default_factory=list)
    adopted: bytes | None = None


class Folder:
    """Applies ops in fold order to mutable records; :meth:`state` builds the frozen view.

    Callers must apply ops in ascending ``(lamport, op_id)`` order, each already indexed
    in ``dag``. Use :func:`fold` or :class:`Replica` rather than this directly.
    """

    def __init__(
        self, dag: Dag, network_id: bytes, imposed: Mapping[bytes, _Imposed] | None = None
    ) -> None:
        self.dag = dag
        self.network_id = network_id
        self.imposed = dict(imposed or {})
        self._triggers: dict[bytes, list[bytes]] = {}
        for author, rule in self.imposed.items():
            self._triggers.setdefault(rule.trigger, []).append(author)
        self.genesis: dict[str, Any] | None = None
        self.settings: Settings | None = None
        self.members: dict[bytes, _MemberRec] = {}
        self.decisions: dict[bytes, _DecisionRec] = {}
        self.agreements: dict[bytes, _AgreementRec] = {}
        self.versions: dict[bytes, _VersionRec] = {}
        self.comments: dict[bytes, list[bytes]] = {}
        self.epochs: list[bytes] = []
        self.epoch_causes: set[bytes] = set()  # exits that a rotation already answered
        self.emergency: dict[bytes, dict[bytes, bytes]] = {}
        self.max_applied: dict[bytes, int] = {}
        self.applied = 0
        self.invalid = 0
        self.reasons: list[tuple[bytes, str]] = []
        self._view: NetworkState | None = None
        # One object for each distinct electorate and each small number the state keeps:
        # most decisions share their electorate with the previous one, and every
        # position keeps a seq (at 100k ops: 2,700 sets of some 50 keys, 70k ints).
        self.shared: dict[Any, Any] = {}

    # -- applying ------------------------------------------------------------------------

    def apply(self, op: VerifiedOp, *, body_checked: bool = False) -> bool:
        """Apply one op; returns whether it was valid. ``body_checked``: the caller knows
        the body passes :func:`~protocol.ops.body_error` (a node's own store vouches).

        Raises:
            _Retroactive: a removal invalidated ops already applied (internal; the callers
                in this module fold again).
        """
        self._view = None
        try:
            self._apply(op, body_checked)
        except _Invalid as exc:
            self.invalid += 1
            if len(self.reasons) < _MAX_REASONS:
                self.reasons.append((op.op_id, str(exc)))
            valid = False
        else:
            self.applied += 1
            seq = op[3]  # op.seq, op.author: indexing is cheaper, and this runs per op
            if seq > self.max_applied.get(op[2], 0):
                self.max_applied[op[2]] = seq
            valid = True
        if self._triggers and op.op_id in self._triggers:
            self._enforce_imposed(op.op_id)
        return valid

    def _enforce_imposed(self, trigger: bytes) -> None:
        # Removal wins: the member stays removed even if, in this rerun, the op that
        # removed them no longer does (docs/state.md §4).
        for author in self._triggers[trigger]:
            member = self.members.get(author)
            if member is not None and member.status == "active":
                member.status = "removed"
                member.cutoff = self.imposed[author].cutoff
                member.exit_op = trigger

    def _apply(self, op: VerifiedOp, body_checked: bool = False) -> None:
        _id, net, author_key, seq, _lamport, _parents, _time, op_type, body = op[:9]
        if net != self.network_id:
            raise _Invalid("op of another network")
        if not body_checked:
            problem = body_error(op_type, body)
            if problem:
                raise _Invalid(problem)
        if op_type == "genesis":
            self._genesis(op)
            return
        if self.genesis is None:
            raise _Invalid("no genesis")
        author = self.members.get(author_key)
        if author is None or author.status != "active":
            raise _Invalid("author is not an active member")
        if self.imposed:
            imposed = self.imposed.get(author_key)
            if imposed is not None and seq > imposed.cutoff:
                raise _Invalid("author was removed before this op")
        _APPLY[op_type](self, op, author)

    def _remove(self, key: bytes, *, status: str, cutoff: int, exit_op: bytes) -> None:
        member = self.members[key]
        member.status = status
        member.cutoff = cutoff
        member.exit_op = exit_op
        if self.max_applied.get(key, 0) > cutoff:
            raise _Retroactive(key, cutoff, exit_op)

    def _genesis(self, op: VerifiedOp) -> None:
        if op.op_id != self.dag.genesis_id or self.genesis is not None:
            raise _Invalid("not this network's genesis")
        body = op.body
        try:
            self.settings = Settings.from_wire(body["settings"])
        except ProtocolError as exc:
            raise _Invalid(str(exc)) from None
        self.genesis = body
        self.epochs.append(body["epoch"])
        self.members[op.author] = _MemberRec(
            op.author, body["display_name"], body["kind"], admitted_by=op.op_id, invited_by=None
        )

    def _electorate(self, op: VerifiedOp) -> frozenset[bytes]:
        """Active members in ``op``'s causal past."""
        in_past = self.dag.past_of(op.op_id)
        return frozenset(
            key
            for key, m in self.members.items()
            if in_past(m.admitted_by) and not (m.exit_op and in_past(m.exit_op))
        )

    def projected_tally(self, decision_id: bytes) -> Tally:
        """The outcome a close written now (on top of everything indexed) would carry.

        Raises:
            KeyError: no such decision.
        """
        return projected_tally(self.decisions[decision_id])

    # -- views ---------------------------------------------------------------------------

    def state(self) -> NetworkState | None:
        """The frozen state (None until the genesis is applied)."""
        if self.genesis is None or self.settings is None:
            return None
        if self._view is None:
            self._view = self._build_view(self.genesis, self.settings)
        return self._view

    def _build_view(self, genesis: dict[str, Any], settings: Settings) -> NetworkState:
        members = {
            k: Member(
                key=m.key,
                display_name=m.display_name,
                kind=m.kind,
                status=m.status,
                admitted_by=m.admitted_by,
                invited_by=m.invited_by,
                offers=m.offers,
                needs=m.needs,
                roles=tuple(m.roles),
                verified_by=frozenset(m.verified_by),
                peer_id=m.peer_id,
                addresses=m.addresses,
                exit_op=m.exit_op,
                cutoff=m.cutoff,
            )
            for k, m in sorted(self.members.items())
        }
        decisions = {
            k: Decision(
                decision_id=d.decision_id,
                proposer=d.proposer,
                title=d.title,
                kind=d.kind,
                subject=d.subject,
                rule=d.rule,
                closes_at=d.closes_at,
                electorate=d.electorate,
                rounds=tuple(d.rounds),
                positions=tuple(d.positions),
                status=d.status,
                close_op=d.close_op,
                closed_by=d.closed_by,
                outcome=d.outcome,
                claimed=d.claimed,
                disputed=d.disputed,
                counted=d.counted,
            )
            for k, d in self.decisions.items()
        }
        versions = {
            k: AgreementVersion(
                op_id=v.op_id,
                agreement=v.agreement,
                number=v.number,
                title=v.title,
                author=v.author,
                adopted_by=v.adopted_by,
                endorsed_by=frozenset(v.endorsed_by),
            )
            for k, v in self.versions.items()
        }
        agreements = {
            k: Agreement(a.agreement_id, a.kind, tuple(a.versions), a.adopted)
            for k, a in self.agreements.items()
        }
        return NetworkState(
            network_id=self.network_id,
            genesis_id=self.dag.genesis_id,
            name=genesis["name"],
            network_type=genesis["type"],
            purpose=genesis["purpose"],
            settings=settings,
            members=MappingProxyType(members),
            agreements=MappingProxyType(agreements),
            versions=MappingProxyType(versions),
            decisions=MappingProxyType(decisions),
            comments=MappingProxyType({k: tuple(v) for k, v in self.comments.items()}),
            epochs=tuple(self.epochs),
            equivocators=frozenset(self.dag.equivocators()),
            applied=self.applied,
            invalid=self.invalid,
        )


# -- one function per op type --------------------------------------------------------------


def _member_admit(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    assert f.settings is not None
    if f.settings.admission != "any_member":
        raise _Invalid("this network admits members by decision")
    key = op.body["member"]
    if key in f.members:
        raise _Invalid("already a member, or a former member (who needs a new key)")
    if not is_valid_public_key(key):
        raise _Invalid("not a valid public key")
    f.members[key] = _MemberRec(
        key, op.body["display_name"], op.body["kind"], admitted_by=op.op_id, invited_by=op.author
    )


def _member_update(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    body = op.body
    if "display_name" in body:
        author.display_name = body["display_name"]
    if "kind" in body:
        author.kind = body["kind"]
    if "offers" in body:
        author.offers = tuple(body["offers"])
    if "needs" in body:
        author.needs = tuple(body["needs"])
    if "peer_id" in body:
        author.peer_id = body["peer_id"]
    if "addresses" in body:
        author.addresses = tuple(body["addresses"])


def _leave(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    f._remove(op.author, status="left", cutoff=op.seq, exit_op=op.op_id)


def _emergency_remove(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    assert f.settings is not None
    subject = op.body["subject"]
    target = f.members.get(subject)
    if target is None or target.status != "active" or subject == op.author:
        raise _Invalid("the subject is not another active member")
    signers = f.emergency.setdefault(subject, {})
    signers.setdefault(op.author, op.op_id)
    active_signers = [k for k in signers if f.members[k].status == "active"]
    if len(active_signers) >= f.settings.emergency_k:
        cutoff = f.dag.max_seq_in_past(op.op_id, subject)
        f._remove(subject, status="removed", cutoff=cutoff, exit_op=op.op_id)


def _verify(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    subject = f.members.get(op.body["subject"])
    if subject is None or subject.key == op.author:
        raise _Invalid("can only verify another member")
    subject.verified_by.add(op.author)


def _agreement_version(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    body = op.body
    if "agreement" in body:
        agreement = f.agreements.get(body["agreement"])
        if agreement is None or agreement.kind != body["kind"]:
            raise _Invalid("no such agreement of that kind")
    else:
        agreement = f.agreements[op.op_id] = _AgreementRec(op.op_id, body["kind"])
    agreement.versions.append(op.op_id)
    f.versions[op.op_id] = _VersionRec(
        op.op_id, agreement.agreement_id, len(agreement.versions), body["title"], op.author
    )


def _endorse(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    version = f.versions.get(op.body["version"])
    if version is None or version.adopted_by is None:
        raise _Invalid("only an adopted agreement version can be endorsed")
    version.endorsed_by.add(op.author)


def _proposal(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    assert f.settings is not None
    body = op.body
    try:
        rule = RuleSpec.from_wire(body["rule"])
    except ProtocolError as exc:
        raise _Invalid(str(exc)) from None
    kind = body["kind"]
    required = f.settings.rule_for(kind)
    if required is not None and rule != required:
        raise _Invalid(f"a {kind} decision must use the network's rule")
    if body["options"]:
        raise _Invalid("this rule takes no options")
    subject = body.get("subject")
    _check_subject(f, kind, subject)
    electorate = f._electorate(op)
    if kind == "removal":
        electorate = electorate - {subject}
    electorate = f.shared.setdefault(electorate, electorate)
    f.decisions[op.op_id] = _DecisionRec(
        decision_id=op.op_id,
        proposer=op.author,
        title=body["title"],
        kind=kind,
        subject=subject,
        rule=rule,
        closes_at=body["closes_at"],
        electorate=electorate,
        rounds=[op.op_id],
    )


def _check_subject(f: Folder, kind: str, subject: Any) -> None:
    if kind == "admission" and (subject in f.members or not is_valid_public_key(subject)):
        raise _Invalid("already a member, a former member, or not a valid key")
    if kind == "removal":
        target = f.members.get(subject)
        if target is None or target.status != "active":
            raise _Invalid("the subject is not an active member")
    if kind == "agreement_adoption" and subject not in f.versions:
        raise _Invalid("no such agreement version")
    if kind == "governance_change":
        try:
            Settings.from_wire(subject)
        except ProtocolError as exc:
            raise _Invalid(str(exc)) from None
    if kind == "role":
        target = f.members.get(subject["member"])
        if target is None or target.status != "active":
            raise _Invalid("the subject is not an active member")


def _open_decision(f: Folder, decision_id: bytes) -> _DecisionRec:
    decision = f.decisions.get(decision_id)
    if decision is None:
        raise _Invalid("no such proposal")
    if decision.status != "open":
        raise _Invalid(f"the proposal is {decision.status}")
    return decision


def _position(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    op_id, _net, author_key, seq = op[:4]  # the most common op: indexing, not properties
    body = op[8]
    decision = _open_decision(f, body["proposal"])
    if author_key not in decision.electorate:
        raise _Invalid("not in this proposal's electorate")
    rounds = decision.rounds
    if body["round"] not in rounds:
        raise _Invalid("no such round of this proposal")
    stance = body["stance"]
    if stance != WITHDRAW:
        problem = position_error(decision.rule, stance, body["reason"])
        if problem:
            raise _Invalid(problem)
    # The state keeps one object for each member key, round id and stance, not one copy
    # per position (a 100k-op network has some 70k positions).
    round_id = rounds[rounds.index(body["round"])]
    seq = f.shared.setdefault(seq, seq)
    decision.positions.append(Position(author.key, intern(stance), op_id, seq, round_id))


def _amendment(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    decision = _open_decision(f, op.body["proposal"])
    if op.author != decision.proposer:
        raise _Invalid("only the proposer can amend")
    decision.rounds.append(op.op_id)


def _withdraw(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    decision = _open_decision(f, op.body["proposal"])
    if op.author != decision.proposer:
        raise _Invalid("only the proposer can withdraw")
    decision.status = "withdrawn"


def projected_tally(decision: _DecisionRec | Decision) -> Tally:
    """The outcome a close written on top of every known position would carry: each
    electorate member's latest position (by seq) of the current round."""
    latest: dict[bytes, Position] = {}
    for position in decision.positions:
        if position.round != decision.rounds[-1]:
            continue
        held = latest.get(position.member)
        if held is None or (position.seq, position.op_id) > (held.seq, held.op_id):
            latest[position.member] = position
    stances = {m: p.stance for m, p in latest.items() if p.stance != WITHDRAW}
    return tally(decision.rule, decision.electorate, stances)


def close_refusal(folder: Folder, decision_id: bytes, closer: bytes, time: int) -> str | None:
    """Why a close by ``closer`` at ``time``, written on top of everything ``folder``
    holds, would be refused — or None. The same rules as the fold, asked beforehand so
    a node does not sign and store a close that changes nothing."""
    decision = folder.decisions.get(decision_id)
    if decision is None:
        return "no such proposal"
    if decision.status != "open":
        return f"the proposal is {decision.status}"
    if folder.settings is None:
        return "no genesis"
    latest: dict[bytes, Position] = {}
    for position in decision.positions:
        if position.round == decision.rounds[-1]:
            held = latest.get(position.member)
            if held is None or (position.seq, position.op_id) > (held.seq, held.op_id):
                latest[position.member] = position
    positioned = {m for m, p in latest.items() if p.stance != WITHDRAW}
    if positioned >= decision.electorate:
        return None
    if closer == decision.proposer and time >= decision.closes_at:
        return None
    if closer in decision.electorate and time >= decision.closes_at + folder.settings.grace_ms:
        return None
    return "too early to close: not everyone has taken a position and the deadline has not passed"


def counted_positions(dag: Dag, decision: _DecisionRec | Decision, at: bytes) -> list[Position]:
    """The positions a close at ``at`` counts: per electorate member, the latest (by their
    own ``seq``) of the current round within ``at``'s causal past; withdrawals drop out."""
    in_past = dag.past_of(at)
    current = decision.rounds[0]
    for round_id in decision.rounds:
        if in_past(round_id):
            current = round_id
    position_in_past = dag.chain_past_of(at)  # (a position keeps its author and seq)
    latest: dict[bytes, Position] = {}
    for position in decision.positions:
        if position.round != current or position.member not in decision.electorate:
            continue
        if not position_in_past(position.member, position.seq, position.op_id):
            continue
        held = latest.get(position.member)
        if held is None or (position.seq, position.op_id) > (held.seq, held.op_id):
            latest[position.member] = position
    return sorted((p for p in latest.values() if p.stance != WITHDRAW), key=lambda p: p.member)


def _close(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    assert f.settings is not None
    decision = _open_decision(f, op.body["proposal"])
    if not f.dag.in_past(decision.decision_id, op.op_id):
        raise _Invalid("the close does not follow its proposal")
    try:
        claimed = Tally.from_wire(op.body["outcome"])
    except ProtocolError as exc:
        raise _Invalid(str(exc)) from None
    counted = counted_positions(f.dag, decision, op.op_id)
    everyone = {p.member for p in counted} >= decision.electorate
    allowed = (
        everyone
        or (op.author == decision.proposer and op.time >= decision.closes_at)
        or (
            op.author in decision.electorate and op.time >= decision.closes_at + f.settings.grace_ms
        )
    )
    if not allowed:
        raise _Invalid("too early to close: not everyone has taken a position")
    outcome = tally(decision.rule, decision.electorate, {p.member: p.stance for p in counted})
    decision.status = "closed"
    decision.close_op = op.op_id
    decision.closed_by = op.author
    decision.outcome = outcome
    decision.claimed = claimed
    decision.disputed = claimed != outcome
    decision.counted = tuple(counted)
    if outcome.outcome == "adopted":
        _take_effect(f, decision, op)


def _take_effect(f: Folder, decision: _DecisionRec, close: VerifiedOp) -> None:
    subject = decision.subject
    if decision.kind == "admission" and subject not in f.members:
        f.members[subject] = _MemberRec(
            subject, "", "individual", admitted_by=close.op_id, invited_by=decision.proposer
        )
    elif decision.kind == "removal":
        target = f.members.get(subject)
        if target is not None and target.status == "active":
            cutoff = f.dag.max_seq_in_past(close.op_id, subject)
            f._remove(subject, status="removed", cutoff=cutoff, exit_op=close.op_id)
    elif decision.kind == "agreement_adoption":
        version = f.versions[subject]
        version.adopted_by = decision.decision_id
        f.agreements[version.agreement].adopted = version.op_id
    elif decision.kind == "governance_change":
        f.settings = Settings.from_wire(subject)
    elif decision.kind == "role":
        target = f.members.get(subject["member"])
        if target is not None and target.status == "active" and subject["role"] not in target.roles:
            target.roles.append(subject["role"])


def _comment(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    target = op.body["target"]
    if target not in f.decisions and target not in f.agreements and target not in f.versions:
        raise _Invalid("comments go on a proposal or an agreement")
    f.comments.setdefault(target, []).append(op.op_id)


def _epoch(f: Folder, op: VerifiedOp, author: _MemberRec) -> None:
    if op.body["epoch"] in f.epochs:
        raise _Invalid("epoch already announced")
    cause = op.body["cause"]
    if cause not in f.dag or not f.dag.in_past(cause, op.op_id):
        raise _Invalid("an epoch names an op in its past as its cause")
    # Only a departure (a leave, a removal's close, the k-th emergency signature) starts an
    # epoch: otherwise any member could announce keys no one holds and freeze the network.
    if not any(m.exit_op == cause for m in f.members.values()):
        raise _Invalid("an epoch is started only by a member's leaving or removal")
    f.epochs.append(op.body["epoch"])
    f.epoch_causes.add(cause)


_APPLY = {
    "member_admit": _member_admit,
    "member_update": _member_update,
    "leave": _leave,
    "emergency_remove": _emergency_remove,
    "verify": _verify,
    "agreement_version": _agreement_version,
    "endorse": _endorse,
    "proposal": _proposal,
    "position": _position,
    "amendment": _amendment,
    "withdraw": _withdraw,
    "close": _close,
    "comment": _comment,
    "epoch": _epoch,
}


def _order(op: VerifiedOp) -> tuple[int, bytes]:
    return op.lamport, op.op_id


@contextmanager
def no_gc_pauses() -> Iterator[None]:
    """Pause CPython's cyclic collector while building many long-lived objects."""
    # Folding allocates hundreds of thousands of small objects that live on; CPython's
    # cyclic collector would rescan them again and again (about 20 % of a 100k fold).
    # Nothing the fold makes is cyclic garbage, so pause the collector for its duration.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fold_indexed(dag: Dag, ops: list[VerifiedOp], network_id: bytes) -> Folder:
    """Fold already-indexed ops (sorted in fold order), imposing cutoffs until stable."""
    with no_gc_pauses():
        return _fold_until_stable(dag, ops, network_id)


def _fold_until_stable(dag: Dag, ops: list[VerifiedOp], network_id: bytes) -> Folder:
    imposed: dict[bytes, _Imposed] = {}
    while True:
        folder = Folder(dag, network_id, imposed)
        try:
            for op in ops:
                folder.apply(op)
        except _Retroactive as signal:
            previous = imposed.get(signal.author)
            if previous is None or signal.cutoff < previous.cutoff:
                imposed[signal.author] = _Imposed(signal.cutoff, signal.trigger)
            continue
        return folder


def fold(ops: Iterable[VerifiedOp], *, network_id: bytes, genesis_id: bytes) -> NetworkState | None:
    """The state of network ``network_id`` (whose genesis is ``genesis_id``) from ``ops``.

    Any order, duplicates allowed; ops whose parents are missing are left out. Returns
    None while the genesis is missing or invalid.
    """
    dag = Dag(genesis_id, one_shot=True)  # the fold reads it all right after
    with no_gc_pauses():
        ready = dag.add_all(ops)
        ready.sort(key=_order)
        return _fold_until_stable(dag, ready, network_id).state()


class Replica:
    """Incremental folding for one network: :meth:`add` ops as they arrive.

    Always equal to :func:`fold` over the same ops. An op that arrives after ops later in
    fold order makes it fold everything again. For that it keeps every valid op in
    memory, unless given ``reload``: a function that returns the ops with the given ids
    (a node reads them back from its store, so that only the DAG and the folded state
    stay in memory: the ops of a 100k-op network would take some 200 MB).
    """

    def __init__(
        self,
        *,
        network_id: bytes,
        genesis_id: bytes,
        reload: Callable[[Collection[bytes]], Mapping[bytes, VerifiedOp]] | None = None,
    ) -> None:
        self.network_id = network_id
        self.dag = Dag(genesis_id)
        self._reload = reload
        self._ops: list[VerifiedOp] = []  # without ``reload`` only
        self._folder = Folder(self.dag, network_id)
        self._last: tuple[int, bytes] | None = None
        self._index: dict[bytes, VerifiedOp] | None = None

    def add(self, op: VerifiedOp) -> list[VerifiedOp]:
        """Offer one op; returns the ops that became part of the DAG because of it.

        Raises:
            OverflowError: too many ops wait for missing parents (see :class:`Dag`).
        """
        return self.add_many([op])

    def add_many(self, ops: Iterable[VerifiedOp]) -> list[VerifiedOp]:
        """:meth:`add` for a batch (one sort, one pass).

        Raises:
            OverflowError: too many ops wait for missing parents (see :class:`Dag`).
        """
        ready: list[VerifiedOp] = []
        try:
            for op in ops:
                ready.extend(self.dag.add(op))
        finally:
            # Even when the DAG refuses a later op (OverflowError), fold what it indexed,
            # so the replica always equals the fold of its DAG.
            self._fold_in(ready)
        return ready

    def add_in_order(self, ops: Iterable[tuple[VerifiedOp, bool]]) -> int:
        """Index and fold ops that come in fold order, each as soon as it is indexed, with
        no limit on ops waiting for parents: for a node reloading what it kept. Nothing
        holds an op once it is folded, so a caller that makes them one at a time (a node
        reading its store) never has them all in memory at once. Each op comes with
        whether its body is known to pass the body rules (its store vouches for it); ops
        that waited for a parent are checked again.

        Ops in any other order give the same state, only slower: one that sorts before
        an op already folded makes the fold start over (with every op read back).

        Returns how many ops became indexed.
        """
        dag = self.dag
        folder = self._folder
        keep = self._reload is None
        last = self._last
        refold = False
        indexed = 0
        self._index = None
        try:
            for op, body_checked in ops:
                for current in dag.add(op, bounded=False):
                    indexed += 1
                    if keep:
                        self._ops.append(current)
                    if refold:
                        continue
                    key = (current[4], current[0])
                    if last is not None and key < last:
                        refold = True
                        continue
                    try:
                        folder.apply(current, body_checked=body_checked and current is op)
                    except _Retroactive:
                        refold = True
                        continue
                    last = key
        finally:
            # Even when the ops stop coming part-way (a damaged row), the replica must
            # equal the fold of what its DAG indexed.
            self._last = last
            if refold:
                self._refold([])
        return indexed

    def _fold_in(self, ready: list[VerifiedOp]) -> None:
        if not ready:
            return
        ready.sort(key=_order)
        if self._reload is None:
            self._ops.extend(ready)
        self._index = None
        refold = False
        for current in ready:
            key = _order(current)
            if refold or (self._last is not None and key < self._last):
                refold = True
                continue
            try:
                self._folder.apply(current)
            except _Retroactive:
                refold = True
                continue
            self._last = key
        if refold:
            self._refold(ready)

    def _refold(self, fresh: list[VerifiedOp]) -> None:
        # Gathering every op (sorted, or read back) makes as many objects as the fold:
        # the collector stays paused for both, or its passes over the ops held would
        # land in the middle (docs/decisions.md, "The fold").
        with no_gc_pauses():
            everything = self._all(fresh)
            self._folder = _fold_until_stable(self.dag, everything, self.network_id)
        self._last = _order(everything[-1])

    def _all(self, fresh: list[VerifiedOp]) -> list[VerifiedOp]:
        """Every indexed op in fold order (``fresh``: ops in hand, maybe not stored yet)."""
        if self._reload is None:
            self._ops.sort(key=_order)
            return self._ops
        order = self.dag.fold_order()
        have = {op.op_id: op for op in fresh}
        found = self._reload([op_id for op_id in order if op_id not in have])
        return [have.get(op_id) or found[op_id] for op_id in order]

    def state(self) -> NetworkState | None:
        return self._folder.state()

    def ops(self) -> list[VerifiedOp]:
        """Every op the DAG indexed, in fold order."""
        return list(self._all([]))

    def index(self) -> dict[bytes, VerifiedOp]:
        """Every indexed op by id (built on demand, kept until the next op arrives)."""
        if self._index is None:
            self._index = {op.op_id: op for op in self._all([])}
        return self._index

    @property
    def folder(self) -> Folder:
        return self._folder
