"""Members, agreements and decisions: the node's actions on a network's shared state."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any

from crypto import CryptoError, PublicIdentity, qr_payload, safety_number
from p2pnet._runtime import now_ms
from p2pnet._writing import Writing
from p2pnet.errors import NodeError, NotAllowed
from p2pnet.references import by_long_prefix, resolve
from protocol import LocalProtocolError, RemoteProtocolError, VerifiedOp, parse_envelope
from protocol.envelope import GroupEnvelope, decrypt_group
from protocol.fold import close_refusal, projected_tally
from protocol.matching import Match, matches
from protocol.rules import RuleSpec, validate_position
from protocol.signed import reload_verified_op

__all__ = ["Governance"]


class Governance(Writing):
    """Members, agreements, decisions, positions and comments."""

    def member_key(self, ref: str, member: str) -> bytes:
        net = self._net(ref)
        cached = net.cached if net.loaded is None else None
        members = cached.members if cached else net.folder.members
        return resolve("member", member, {k: m.display_name for k, m in members.items()})

    def update_profile(
        self,
        ref: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        offers: list[str] | None = None,
        needs: list[str] | None = None,
    ) -> VerifiedOp:
        body: dict[str, Any] = {}
        if name is not None:
            body["display_name"] = name.strip()
        if kind is not None:
            body["kind"] = kind
        if offers is not None:
            body["offers"] = sorted(set(offers))
        if needs is not None:
            body["needs"] = sorted(set(needs))
        if not body:
            raise NodeError("nothing to update: give --name, --kind, --offers or --needs")
        return self._write(ref, "member_update", body)

    def verification_qr(self, ref: str, member: str) -> str:
        """The text to show as a QR code to ``member`` in person (crypto.qr_payload)."""
        key = self.member_key(ref, member)
        return qr_payload(self.identity.public, PublicIdentity(key))

    def safety_words(self, ref: str, member: str) -> tuple[str, ...]:
        """The word form of the safety number with ``member``, for reading aloud."""
        key = self.member_key(ref, member)
        return safety_number(self.identity.public, PublicIdentity(key)).words

    def safety_number_with(self, ref: str, member: str) -> str:
        key = self.member_key(ref, member)
        return str(safety_number(self.identity.public, PublicIdentity(key)))

    def verify_member(self, ref: str, member: str, digits: str) -> VerifiedOp:
        """Record that you compared safety numbers with ``member`` in person.

        Raises:
            NotAllowed: the digits are not your safety number with that member.
        """
        key = self.member_key(ref, member)
        number = safety_number(self.identity.public, PublicIdentity(key))
        if not number.matches(digits):
            raise NotAllowed(
                "that is not your safety number with this member: compare again, in person"
            )
        digest = hashlib.blake2b(number.digits.encode(), digest_size=32).digest()
        return self._write(ref, "verify", {"safety": digest, "subject": key})

    def matches(self, ref: str) -> list[Match]:
        return matches(self.state(ref))

    def leave(self, ref: str) -> VerifiedOp:
        return self._write(ref, "leave", {})

    def emergency_remove(self, ref: str, member: str, reason: str) -> VerifiedOp:
        key = self.member_key(ref, member)
        return self._write(ref, "emergency_remove", {"reason": reason, "subject": key})

    # -- agreements ----------------------------------------------------------------------

    def agreement_id(self, ref: str, agreement: str) -> bytes:
        state = self.state(ref)
        labels = {
            a.agreement_id: state.versions[a.versions[-1]].title for a in state.agreements.values()
        }
        return resolve("agreement", agreement, labels)

    def add_agreement(
        self, ref: str, *, kind: str, title: str, text: str, agreement: str | None = None
    ) -> VerifiedOp:
        body: dict[str, Any] = {"kind": kind, "text": text, "title": title}
        if agreement is not None:
            body["agreement"] = self.agreement_id(ref, agreement)
        return self._write(ref, "agreement_version", body)

    def endorse(self, ref: str, agreement: str) -> VerifiedOp:
        """Endorse the version in force of ``agreement``."""
        state = self.state(ref)
        found = state.agreements[self.agreement_id(ref, agreement)]
        if found.adopted is None:
            raise NotAllowed("no version of this agreement has been adopted yet")
        return self._write(ref, "endorse", {"version": found.adopted})

    # -- decisions -----------------------------------------------------------------------

    def decision_id(self, ref: str, decision: str) -> bytes:
        net = self._net(ref)
        # Reads need no DAG: the cached state names decisions as well as the live fold.
        decisions = (
            net.cached.decisions if net.loaded is None and net.cached else net.folder.decisions
        )
        quick = by_long_prefix(decision, decisions)
        if quick is not None:
            return quick
        return resolve("decision", decision, {k: d.title for k, d in decisions.items()})

    def propose(
        self,
        ref: str,
        *,
        title: str,
        rule: RuleSpec | None = None,
        text: str = "",
        kind: str = "general",
        subject: Any = None,
        closes_in_ms: int | None = None,
    ) -> VerifiedOp:
        """Open a decision. Membership, agreement and governance decisions use the
        network's rule whatever ``rule`` says; others default to the ordinary rule."""
        state = self.state(ref)
        settings = state.settings
        chosen = settings.rule_for(kind) or rule or settings.ordinary_rule
        body: dict[str, Any] = {
            "closes_at": now_ms()
            + (settings.closes_in_ms if closes_in_ms is None else closes_in_ms),
            "kind": kind,
            "options": [],
            "rule": chosen.to_wire(),
            "text": text,
            "title": title,
        }
        if subject is not None:
            body["subject"] = subject
        return self._write(ref, "proposal", body)

    def position(self, ref: str, decision: str, stance: str, reason: str = "") -> VerifiedOp:
        decision_id = self.decision_id(ref, decision)
        found = self._net(ref).folder.decisions[decision_id]
        if found.status != "open":
            raise NotAllowed(f"the proposal is {found.status}")
        if self.identity.public.key not in found.electorate:
            raise NotAllowed("you are not in this proposal's electorate (you joined after it)")
        if stance != "withdraw":
            try:
                validate_position(found.rule, stance, reason)
            except LocalProtocolError as exc:
                raise NodeError(str(exc)) from None
        body = {
            "proposal": decision_id,
            "reason": reason,
            "round": found.rounds[-1],
            "stance": stance,
        }
        return self._write(ref, "position", body)

    def texts(self, ref: str, op_ids: Sequence[bytes]) -> dict[bytes, dict[str, Any]]:
        """What ops say (their bodies stay out of the state): for each id we hold, the
        op's ``type``, ``author`` and its text fields (``title``, ``text``, ``reason``).

        Read from the store by op id (no DAG needed); only ops stored before the store
        recorded op ids make the node fold the network to find them."""
        net = self._net(ref)
        store = self.profile.store
        ops: dict[bytes, VerifiedOp] = {}
        for op_id, signed in store.signed_ops(net.network_id, op_ids).items():
            with contextlib.suppress(RemoteProtocolError):
                kept = reload_verified_op(signed)  # a verified row of our own
                if kept.op_id == op_id:  # (the op column is a keyed hash, not sealed)
                    ops[op_id] = kept
        rest = [op_id for op_id in op_ids if op_id not in ops]
        for op_id, data in store.envelopes_of_ops(net.network_id, rest).items():
            envelope = parse_envelope(data)
            if isinstance(envelope, GroupEnvelope):
                with contextlib.suppress(RemoteProtocolError, CryptoError):
                    signed = decrypt_group(
                        envelope, epochs=net.epochs, route_tag=net.secret.route_tag
                    )
                    kept = reload_verified_op(signed)  # a verified row of our own
                    if kept.op_id == op_id:
                        ops[op_id] = kept
        if len(ops) < len(set(op_ids)):
            ops = {**net.holdings.replica.index(), **ops}
        found: dict[bytes, dict[str, Any]] = {}
        for op_id in op_ids:
            op = ops.get(op_id)
            if op is not None:
                body = op.body
                found[op_id] = {
                    "type": op.type,
                    "author": op.author,
                    **{k: body[k] for k in ("title", "text", "reason") if k in body},
                }
        return found

    def projected_outcome(self, ref: str, decision: str) -> dict[str, Any]:
        """The tally a close written now would record (what the UI shows before closing)."""
        net = self._net(ref)
        found = net.state().decisions[self.decision_id(ref, decision)]  # cached or folded
        return projected_tally(found).to_wire()

    def close_decision(self, ref: str, decision: str) -> VerifiedOp:
        """Close a decision with the outcome every member will recompute.

        Raises:
            NotAllowed: closed already, or too early (checked before anything is signed).
        """
        decision_id = self.decision_id(ref, decision)
        refusal = close_refusal(
            self._net(ref).folder, decision_id, self.identity.public.key, now_ms()
        )
        if refusal is not None:
            raise NotAllowed(refusal)
        outcome = self.projected_outcome(ref, decision)
        return self._write(ref, "close", {"outcome": outcome, "proposal": decision_id})

    def comment(self, ref: str, target: str, text: str) -> VerifiedOp:
        folder = self._net(ref).folder
        quick = by_long_prefix(target, [*folder.decisions, *folder.agreements])
        if quick is not None:
            return self._write(ref, "comment", {"target": quick, "text": text})
        labels = {k: d.title for k, d in folder.decisions.items()}
        for agreement in folder.agreements.values():
            labels[agreement.agreement_id] = folder.versions[agreement.versions[-1]].title
        target_id = resolve("decision or agreement", target, labels)
        return self._write(ref, "comment", {"target": target_id, "text": text})
