"""A realistic network history for the state and node benchmarks.

50 members of a coordination network over years: profiles, five agreements with
versions adopted by decision and endorsed, 1,000 decisions with every member's
position (some changed, some with reasons), comments, a few amendments, and a few
removals (by decision, by emergency signatures, by leaving). Up to four members act
concurrently on the same heads, so the DAG has real concurrency.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

from crypto import Identity, NetworkSecret
from protocol.build import genesis_op, next_op
from protocol.fold import Replica
from protocol.settings import defaults_for
from protocol.signed import VerifiedOp

T0 = 1_700_000_000_000
DAY = 86_400_000
_STANCES = ("consent", "consent", "consent", "concern", "abstain")
_WORDS = tuple("we agree to meet thursday with the legal team and bring the budget draft".split())  # noqa: SIM905


def _identity(i: int) -> Identity:
    return Identity(hashlib.blake2b(b"member %d" % i, digest_size=32).digest())


class History:
    """Builds ``target`` ops; :attr:`ops` in creation (arrival) order."""

    def __init__(
        self, target: int = 100_000, *, members: int = 50, quiet: int = 1, seed: int = 7
    ) -> None:
        # The last ``quiet`` members are admitted but never act (they stay silent members;
        # the benchmark uses one to write a late op on an old view).
        self.quiet = quiet
        self.rng = random.Random(seed)
        self.secret = NetworkSecret(hashlib.blake2b(b"bench", digest_size=32).digest())
        self.network_id = self.secret.network_id
        self.ids = [_identity(i) for i in range(members)]
        self.time = T0
        settings = defaults_for("coordination")
        self.genesis = genesis_op(
            self.ids[0],
            network_id=self.network_id,
            name="Benchmark network",
            network_type="coordination",
            purpose="Measure the fold.",
            settings=settings,
            epoch_id=b"\x01" * 16,
            display_name="Member 0",
            kind="civil_society_org",
            time=self.time,
        )
        self.replica = Replica(network_id=self.network_id, genesis_id=self.genesis.op_id)
        self.replica.add(self.genesis)
        self.ops: list[VerifiedOp] = [self.genesis]
        self.removal_rule = settings.removal_rule.to_wire()
        self.charter_rule = settings.charter_rule.to_wire()
        self.consent = settings.ordinary_rule.to_wire()
        self._build(target)

    # -- primitives --------------------------------------------------------------------

    def _text(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(lo, hi)))

    def _sign(self, who: int, op_type: str, body: dict[str, Any]) -> VerifiedOp:
        self.time += self.rng.randint(1_000, 600_000)
        return next_op(
            self.ids[who],
            self.replica.dag,
            network_id=self.network_id,
            op_type=op_type,
            body=body,
            time=self.time,
        )

    def _commit(self, ops: list[VerifiedOp]) -> None:
        for op in sorted(ops, key=lambda o: (o.lamport, o.op_id)):
            self.replica.add(op)
            self.ops.append(op)

    def act(self, who: int, op_type: str, body: dict[str, Any]) -> VerifiedOp:
        op = self._sign(who, op_type, body)
        self._commit([op])
        return op

    def concurrently(self, actions: list[tuple[int, str, dict[str, Any]]]) -> list[VerifiedOp]:
        """Several members act on the same heads (distinct members only)."""
        ops = [self._sign(who, t, b) for who, t, b in actions]
        self._commit(ops)
        return ops

    def active(self) -> list[int]:
        members = self.replica.folder.members
        return [
            i
            for i, ident in enumerate(self.ids[: len(self.ids) - self.quiet])
            if ident.public.key in members and members[ident.public.key].status == "active"
        ]

    # -- the story ---------------------------------------------------------------------

    def _build(self, target: int) -> None:
        for i in range(1, len(self.ids)):
            self.act(
                0,
                "member_admit",
                {
                    "display_name": f"Member {i}",
                    "kind": "individual",
                    "member": self.ids[i].public.key,
                },
            )
        caps = ["expertise_legal", "expertise_media", "funding", "logistics", "meeting_space"]
        for i in self.active():
            self.act(
                i,
                "member_update",
                {
                    "needs": sorted(self.rng.sample(caps, 2)),
                    "offers": sorted(self.rng.sample(caps, 2)),
                },
            )
        agreements = [
            self._agreement(kind)
            for kind in ("charter", "ethical_standards", "conflict_resolution")
        ]
        decisions = 0
        removals = {250: "decision", 500: "emergency", 750: "leave"}
        while len(self.ops) < target:
            decisions += 1
            if decisions in removals:
                self._removal(removals[decisions])
            if decisions % 200 == 0:
                self._new_version(agreements)
            self._decision(batch_budget=target - len(self.ops))

    def _agreement(self, kind: str) -> VerifiedOp:
        version = self.act(
            0,
            "agreement_version",
            {"kind": kind, "text": self._text(300, 900), "title": kind.replace("_", " ").title()},
        )
        self._adopt(version)
        return version

    def _new_version(self, agreements: list[VerifiedOp]) -> None:
        first = self.rng.choice(agreements)
        version = self.act(
            self.rng.choice(self.active()),
            "agreement_version",
            {
                "agreement": first.op_id,
                "kind": first.body["kind"],
                "text": self._text(300, 900),
                "title": first.body["title"],
            },
        )
        self._adopt(version)

    def _adopt(self, version: VerifiedOp) -> None:
        proposer = self.rng.choice(self.active())
        proposal = self.act(
            proposer,
            "proposal",
            {
                "closes_at": self.time + 7 * DAY,
                "kind": "agreement_adoption",
                "options": [],
                "rule": self.charter_rule,
                "subject": version.op_id,
                "text": "",
                "title": "Adopt",
            },
        )
        self._positions(proposal, lambda _: "yes")
        self._close(proposer, proposal)
        for who in self.active():
            self.act(who, "endorse", {"version": version.op_id})

    def _positions(self, proposal: VerifiedOp, stance: Callable[[int], str]) -> None:
        electorate = self.replica.folder.decisions[proposal.op_id].electorate
        voters = [i for i in self.active() if self.ids[i].public.key in electorate]
        self.rng.shuffle(voters)
        while voters:
            group, voters = voters[:4], voters[4:]
            self.concurrently(
                [
                    (
                        who,
                        "position",
                        {
                            "proposal": proposal.op_id,
                            "reason": self._text(0, 12),
                            "round": proposal.op_id,
                            "stance": stance(who),
                        },
                    )
                    for who in group
                ]
            )

    def _close(self, who: int, proposal: VerifiedOp) -> None:
        # Silent members never take a position, so the proposer closes at the deadline.
        self.time = max(self.time, proposal.body["closes_at"])
        outcome = self.replica.folder.projected_tally(proposal.op_id).to_wire()
        self.act(who, "close", {"outcome": outcome, "proposal": proposal.op_id})

    def _decision(self, *, batch_budget: int) -> None:
        proposer = self.rng.choice(self.active())
        proposal = self.act(
            proposer,
            "proposal",
            {
                "closes_at": self.time + 3 * DAY,
                "kind": "general",
                "options": [],
                "rule": self.consent,
                "text": self._text(40, 200),
                "title": self._text(3, 8),
            },
        )
        self._positions(proposal, lambda _: self.rng.choice(_STANCES))
        changers = self.rng.sample(self.active(), 8)
        self.concurrently(
            [
                (
                    who,
                    "position",
                    {
                        "proposal": proposal.op_id,
                        "reason": "",
                        "round": proposal.op_id,
                        "stance": "consent",
                    },
                )
                for who in changers[:4]
            ]
        )
        for _ in range(min(20, max(1, batch_budget // 60))):
            self.act(
                self.rng.choice(self.active()),
                "comment",
                {"target": proposal.op_id, "text": self._text(5, 40)},
            )
        self._close(proposer, proposal)

    def _removal(self, how: str) -> None:
        active = self.active()
        subject = active[-1]
        key = self.ids[subject].public.key
        if how == "leave":
            self.act(subject, "leave", {})
        elif how == "emergency":
            for signer in active[:2]:
                self.act(signer, "emergency_remove", {"reason": "device seized", "subject": key})
        else:
            proposal = self.act(
                0,
                "proposal",
                {
                    "closes_at": self.time + 7 * DAY,
                    "kind": "removal",
                    "options": [],
                    "rule": self.removal_rule,
                    "subject": key,
                    "text": "",
                    "title": "Remove",
                },
            )
            self._positions(proposal, lambda _: "yes")
            self._close(0, proposal)
