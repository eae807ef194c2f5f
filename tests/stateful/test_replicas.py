"""Replicas under a hostile network: a hypothesis state machine (STYLE.md rule 23).

Three or four members each hold a :class:`Replica`. Rules write ops of every type on a
chosen replica (valid ones mostly, invalid ones now and then: a non-member writing, a
stance without its reason, a DAG-rule violation, a forked device), deliver a random
subset of one replica's ops to another in a random order (so ops are dropped and arrive
before their parents), partition and heal pairs of members, sync pairs fully, and crash
a member (its replica is rebuilt from the ops its store holds, fed in a random order).

Invariants, after every step: each replica equals the naive reference ``fold`` of the
ops it holds; replicas that hold the same ops have equal states; nothing a replica held
or indexed is ever lost.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from protocol import sign_op
from protocol.dag import Dag
from protocol.fold import Replica, fold
from protocol.rules import STANCES, Ratio, RuleSpec
from protocol.signed import VerifiedOp
from protocol.state import Decision, NetworkState
from protocol.vocabulary import AGREEMENT_KINDS, DECISION_KINDS
from tests.netsim import DAY, Sim, identity, key

NAMES = ("ana", "ben", "cai", "dan")
GENERAL_RULES = (
    RuleSpec("consent", Ratio(1, 2)),
    RuleSpec("majority"),
    RuleSpec("consensus", Ratio(1, 2)),
    RuleSpec("supermajority", Ratio(1, 2), Ratio(2, 3), "participating"),
    RuleSpec("advice"),
    RuleSpec("sense_check"),
)
MAX_OPS = 60  # beyond this, rules that write do nothing (keeps every example fast)

names = st.sampled_from(NAMES)


def favoured_stance(decision: Decision) -> str:
    stances = STANCES[decision.rule.rule]
    return next(s for s in ("yes", "consent", "agree", "advice") if s in stances)


class Replicas(RuleBasedStateMachine):
    """N replicas of one network; ``held[name]`` is what that member's store holds."""

    def __init__(self) -> None:
        super().__init__()
        self.sim: Sim | None = None
        self.members: tuple[str, ...] = ()
        self.held: dict[str, dict[bytes, VerifiedOp]] = {}
        self.indexed: dict[str, frozenset[bytes]] = {}
        self.blocked: set[frozenset[str]] = set()
        self.forks = 0

    # -- setup -----------------------------------------------------------------------------

    @initialize(
        count=st.integers(3, 4),
        network_type=st.sampled_from(["coordination", "shared_identity"]),
        admitted=st.sampled_from([3, 3, 1, 0]),
    )
    def start(self, count: int, network_type: str, admitted: int) -> None:
        self.members = NAMES[:count]
        self.sim = Sim(self.members[0], network_type=network_type)
        for name in self.members[1:]:
            self.sim.join(name)
        self.held = {n: {self.sim.genesis.op_id: self.sim.genesis} for n in self.members}
        for name in self.members[1 : 1 + admitted]:
            self._write(
                self.members[0],
                "member_admit",
                {"display_name": name.title(), "kind": "individual", "member": key(name)},
            )
        for name in self.members[1:]:
            self._deliver(self.members[0], name, list(self.held[self.members[0]].values()))
        self._snapshot()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def s(self) -> Sim:
        assert self.sim is not None
        return self.sim

    def _view(self, who: str) -> NetworkState:
        return self.s.state(who)

    def _full(self) -> bool:
        return len(self.s.all_ops) >= MAX_OPS

    def _record(self, who: str, op: VerifiedOp) -> VerifiedOp:
        self.held[who][op.op_id] = op
        return op

    def _write(self, who: str, op_type: str, body: dict[str, Any], *, dt: int = 1000) -> None:
        self._record(who, self.s.op(who, op_type, body, dt=dt))

    def _deliver(self, src: str, dst: str, ops: list[VerifiedOp], *, batch: bool = False) -> None:
        replica = self.s.replicas[dst]
        for op in ops:
            self.held[dst][op.op_id] = op
            if not batch:
                replica.add(op)
        if batch:
            replica.add_many(ops)

    def _writer(self, data: st.DataObject) -> str:
        """Mostly a member active in its own view, sometimes anyone (then ops may be
        invalid: a non-member or a removed member writing)."""
        active = [n for n in self.members if key(n) in self._view(n).active_members()]
        if active and data.draw(st.integers(0, 5), label="anyone?") > 0:
            return data.draw(st.sampled_from(active), label="writer")
        return data.draw(st.sampled_from(self.members), label="writer")

    def _decision(self, data: st.DataObject, who: str, *, own: bool = False) -> Decision | None:
        decisions = list(self._view(who).decisions.values())
        if own and data.draw(st.integers(0, 4), label="own?") > 0:
            decisions = [d for d in decisions if d.proposer == key(who)] or decisions
        open_ones = [d for d in decisions if d.status == "open"]
        if open_ones and data.draw(st.integers(0, 5), label="open?") > 0:
            decisions = open_ones
        if not decisions:
            return None
        return data.draw(st.sampled_from(decisions), label="decision")

    def _snapshot(self) -> None:
        self.indexed = {
            n: frozenset(i for i in self.held[n] if i in self.s.replicas[n].dag)
            for n in self.members
        }

    # -- writing ops -----------------------------------------------------------------------

    @precondition(lambda self: not self._full())
    @rule(data=st.data())
    def admit(self, data: st.DataObject) -> None:
        who = self._writer(data)
        outsiders = [n for n in self.members if key(n) not in self._view(who).members]
        new = data.draw(st.sampled_from(outsiders or list(self.members)), label="new")
        self._write(
            who,
            "member_admit",
            {"display_name": new.title(), "kind": "individual", "member": key(new)},
        )

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), name=st.sampled_from(["Ana B", "Xi"]))
    def update_profile(self, data: st.DataObject, name: str) -> None:
        self._write(self._writer(data), "member_update", {"display_name": name, "offers": []})

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), kind=st.sampled_from(DECISION_KINDS), closes_in=st.sampled_from([0, DAY]))
    def propose(self, data: st.DataObject, kind: str, closes_in: int) -> None:
        who = self._writer(data)
        state = self._view(who)
        required = state.settings.rule_for(kind)
        rule_spec = required or data.draw(st.sampled_from(GENERAL_RULES), label="rule")
        others = sorted(k for k in state.members if k != key(who))
        subject: Any = None
        if kind == "admission":
            subject = next((key(n) for n in NAMES if key(n) not in state.members), key("zed"))
        elif kind == "removal" and others:
            subject = data.draw(st.sampled_from(others), label="subject")
        elif kind == "agreement_adoption" and state.versions:
            subject = data.draw(st.sampled_from(sorted(state.versions)), label="subject")
        elif kind == "governance_change":
            subject = dataclasses.replace(state.settings, emergency_k=3).to_wire()
        elif kind == "role" and state.members:
            member = data.draw(st.sampled_from(sorted(state.members)), label="subject")
            subject = {"member": member, "role": "facilitator"}
        if kind != "general" and subject is None:
            return
        self._record(
            who,
            self.s.propose(
                who, rule=rule_spec.to_wire(), kind=kind, subject=subject, closes_in=closes_in
            ),
        )

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), with_reason=st.booleans())
    def take_position(self, data: st.DataObject, with_reason: bool) -> None:
        who = self._writer(data)
        decision = self._decision(data, who)
        if decision is None:
            return
        stances = [*sorted(STANCES[decision.rule.rule]), "withdraw"]
        stance = data.draw(st.sampled_from(stances), label="stance")
        proposal = self.s.all_ops[decision.decision_id]
        reason = "Discussed at the meeting." if with_reason else ""
        self._record(
            who,
            self.s.position(who, proposal, stance, reason, round_id=decision.current_round),
        )

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), withdraw=st.booleans())
    def amend_or_withdraw(self, data: st.DataObject, withdraw: bool) -> None:
        who = self._writer(data)
        decision = self._decision(data, who, own=True)
        if decision is None:
            return
        if withdraw:
            self._write(who, "withdraw", {"proposal": decision.decision_id})
        else:
            self._write(who, "amendment", {"proposal": decision.decision_id, "text": "v2"})

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), dt=st.sampled_from([1000, 2 * DAY, 5 * DAY]))
    def close(self, data: st.DataObject, dt: int) -> None:
        who = self._writer(data)
        decision = self._decision(data, who)
        if decision is None:
            return
        proposal = self.s.all_ops[decision.decision_id]
        self._record(who, self.s.close(who, proposal, dt=dt))

    @precondition(lambda self: not self._full())
    @rule(data=st.data())
    def comment(self, data: st.DataObject) -> None:
        who = self._writer(data)
        state = self._view(who)
        targets = [*state.decisions, *state.agreements, self.s.genesis.op_id]
        target = data.draw(st.sampled_from(targets), label="target")
        self._write(who, "comment", {"target": target, "text": "Noted."})

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), really=st.integers(0, 2))
    def leave(self, data: st.DataObject, really: int) -> None:
        if really == 0:  # one time in three, or most examples end with nobody left
            self._write(self._writer(data), "leave", {})

    @precondition(lambda self: not self._full())
    @rule(data=st.data())
    def emergency_remove(self, data: st.DataObject) -> None:
        who = self._writer(data)
        others = sorted(k for k in self._view(who).members if k != key(who))
        if others:
            subject = data.draw(st.sampled_from(others), label="subject")
            self._write(who, "emergency_remove", {"reason": "Seized.", "subject": subject})

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), kind=st.sampled_from(AGREEMENT_KINDS), new=st.booleans())
    def agreement_version(self, data: st.DataObject, kind: str, new: bool) -> None:
        who = self._writer(data)
        agreements = list(self._view(who).agreements.values())
        body: dict[str, Any] = {"kind": kind, "text": "We agree.", "title": "Our charter"}
        if agreements and not new:
            agreement = data.draw(st.sampled_from(agreements), label="agreement")
            body["agreement"] = agreement.agreement_id
            body["kind"] = agreement.kind
        self._write(who, "agreement_version", body)

    @precondition(lambda self: not self._full())
    @rule(data=st.data())
    def endorse_or_verify(self, data: st.DataObject) -> None:
        who = self._writer(data)
        state = self._view(who)
        endorse = data.draw(st.booleans(), label="endorse?")
        if endorse and state.versions:
            version = data.draw(st.sampled_from(sorted(state.versions)), label="version")
            self._write(who, "endorse", {"version": version})
        else:
            subject = data.draw(st.sampled_from(sorted(state.members)), label="subject")
            self._write(who, "verify", {"safety": bytes(32), "subject": subject})

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), epoch=st.sampled_from([b"\x02" * 16, b"\x03" * 16]))
    def announce_epoch(self, data: st.DataObject, epoch: bytes) -> None:
        who = self._writer(data)
        cause = data.draw(st.sampled_from(self.s.replicas[who].dag.heads()), label="cause")
        self._write(who, "epoch", {"cause": cause, "epoch": epoch})

    @precondition(lambda self: not self._full())
    @rule(data=st.data())
    def fork_device(self, data: st.DataObject) -> None:
        """A cloned device writes a different op with the seq of the author's latest."""
        who = self._writer(data)
        latest = self.s.replicas[who].dag.latest(key(who))
        if latest is None:
            return
        original = self.s.all_ops[latest[1]]
        if not original.parents:
            return
        self.forks += 1
        op = sign_op(
            identity(who),
            net=self.s.network_id,
            seq=original.seq,
            lamport=original.lamport,
            parents=list(original.parents),
            time=original.time + 1,
            type="member_update",
            body={"display_name": f"Clone {self.forks}"},
        )
        self.s.all_ops[op.op_id] = op
        self._deliver(who, who, [op])

    @precondition(lambda self: not self._full())
    @rule(data=st.data())
    def break_a_dag_rule(self, data: st.DataObject) -> None:
        """An op with a wrong lamport: rejected by every DAG, never indexed anywhere."""
        who = self._writer(data)
        dag = self.s.replicas[who].dag
        heads = dag.heads()
        latest = dag.latest(key(who))
        parents = sorted({*heads, *([latest[1]] if latest else [])})
        op = sign_op(
            identity(who),
            net=self.s.network_id,
            seq=latest[0] + 1 if latest else 1,
            lamport=2 + max(dag.lamport(p) for p in parents),
            parents=parents,
            time=self.s.time,
            type="comment",
            body={"target": self.s.genesis.op_id, "text": "Bad lamport."},
        )
        self.s.all_ops[op.op_id] = op
        self._deliver(who, who, [op])

    @precondition(lambda self: not self._full())
    @rule(data=st.data(), kind=st.sampled_from(["removal", "removal", *DECISION_KINDS]))
    def decide(self, data: st.DataObject, kind: str) -> None:
        """A proposal run to its end: the electorate takes positions (mostly in favour),
        each voter syncing with the proposer before and after, unless partitioned; then
        the proposer closes it."""
        before = len(self.s.all_ops)
        self.propose(data, kind, 0)
        if len(self.s.all_ops) == before:
            return
        proposal = self.s.all_ops[list(self.s.all_ops)[-1]]
        who = next(n for n in self.members if key(n) == proposal.author)
        decision = self._view(who).decisions.get(proposal.op_id)
        if decision is None:
            return
        for voter in sorted(decision.electorate):
            name = next((n for n in self.members if key(n) == voter), None)
            if name is None or name == who or frozenset((who, name)) in self.blocked:
                continue
            self.sync(who, name, data)
            if proposal.op_id not in self._view(name).decisions:
                continue
            stances = sorted(STANCES[decision.rule.rule])
            favoured = favoured_stance(decision)
            stance = favoured if data.draw(st.integers(0, 3), label="favour?") else stances[0]
            self._record(name, self.s.position(name, proposal, stance, "Because."))
            self.sync(name, who, data)
        if proposal.op_id in self._view(who).decisions:
            if key(who) in decision.electorate:
                stance = favoured_stance(decision)
                self._record(who, self.s.position(who, proposal, stance, "Mine."))
            self._record(who, self.s.close(who, proposal))

    @precondition(lambda self: not self._full())
    @rule(data=st.data())
    def emergency_pair(self, data: st.DataObject) -> None:
        """Two members sign an emergency removal of a third, who keeps writing unaware."""
        first = self._writer(data)
        others = [n for n in self.members if n != first]
        second = data.draw(st.sampled_from(others), label="second")
        victim = data.draw(st.sampled_from([n for n in others if n != second]), label="victim")
        body = {"reason": "Device seized.", "subject": key(victim)}
        self._write(first, "emergency_remove", body)
        if frozenset((first, second)) not in self.blocked:
            self.sync(first, second, data)
        self._write(second, "emergency_remove", body)
        self._write(victim, "member_update", {"display_name": "Still Here"})

    # -- the network -----------------------------------------------------------------------

    @rule(src=names, dst=names, data=st.data())
    def deliver_some(self, src: str, dst: str, data: st.DataObject) -> None:
        """Some of ``src``'s ops reach ``dst`` in a random order; the rest are dropped."""
        if src not in self.members or dst not in self.members or src == dst:
            return
        if frozenset((src, dst)) in self.blocked:
            return
        ops = sorted(self.held[src].values(), key=lambda o: o.op_id)
        chosen = data.draw(st.lists(st.sampled_from(ops), unique=True), label="ops")
        self._deliver(src, dst, chosen)

    @rule(a=names, b=names, data=st.data())
    def sync(self, a: str, b: str, data: st.DataObject) -> None:
        """A full exchange between two members, each side's ops in a random order,
        offered one by one or as one batch (``Replica.add_many``)."""
        if a not in self.members or b not in self.members or frozenset((a, b)) in self.blocked:
            return
        to_b = [o for i, o in sorted(self.held[a].items()) if i not in self.held[b]]
        to_a = [o for i, o in sorted(self.held[b].items()) if i not in self.held[a]]
        batch = data.draw(st.booleans(), label="batch?")
        self._deliver(a, b, data.draw(st.permutations(to_b), label="to b"), batch=batch)
        self._deliver(b, a, data.draw(st.permutations(to_a), label="to a"), batch=batch)

    @rule(a=names, b=names)
    def partition(self, a: str, b: str) -> None:
        if a != b:
            self.blocked.add(frozenset((a, b)))

    @rule(data=st.data())
    def heal(self, data: st.DataObject) -> None:
        if self.blocked:
            pair = data.draw(st.sampled_from(sorted(sorted(p) for p in self.blocked)))
            self.blocked.discard(frozenset(pair))

    @rule(who=names, data=st.data())
    def crash_and_reload(self, who: str, data: st.DataObject) -> None:
        """The member's process dies; a new replica is built from its store."""
        if who not in self.members:
            return
        stored = sorted(self.held[who].values(), key=lambda o: o.op_id)
        replica = Replica(network_id=self.s.network_id, genesis_id=self.s.genesis.op_id)
        for op in data.draw(st.permutations(stored), label="reload order"):
            replica.add(op)
        self.s.replicas[who] = replica

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def each_replica_equals_the_reference_fold(self) -> None:
        if self.sim is None:
            return
        for name in self.members:
            reference = fold(
                self.held[name].values(),
                network_id=self.s.network_id,
                genesis_id=self.s.genesis.op_id,
            )
            assert self.s.replicas[name].state() == reference, name

    @invariant()
    def same_ops_same_state(self) -> None:
        if self.sim is None:
            return
        by_ops: dict[frozenset[bytes], NetworkState | None] = {}
        for name in self.members:
            ops = frozenset(self.held[name])
            state = self.s.replicas[name].state()
            if ops in by_ops:
                assert state == by_ops[ops], name
            by_ops[ops] = state

    @invariant()
    def nothing_held_is_lost(self) -> None:
        if self.sim is None:
            return
        for name in self.members:
            replica = self.s.replicas[name]
            now = frozenset(i for i in self.held[name] if i in replica.dag)
            assert now >= self.indexed.get(name, frozenset()), name
            # The replica indexes exactly what a fresh DAG indexes from the same store.
            reference = Dag(self.s.genesis.op_id)
            reference.add_all(self.held[name].values())
            assert now == frozenset(i for i in self.held[name] if i in reference), name
            assert len(replica.dag) == len(now), name
        self._snapshot()


Replicas.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestReplicas = Replicas.TestCase
