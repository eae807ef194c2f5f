"""The fold on worked stories: membership, decisions, agreements, removal, security."""

from __future__ import annotations

from typing import Any

import pytest

from crypto import EpochKey, random_bytes
from protocol import open_group, parse_envelope, seal_group, sign_op
from protocol.fold import fold
from protocol.rules import Ratio, RuleSpec
from protocol.settings import defaults_for
from protocol.signed import VerifiedOp
from tests.netsim import DAY, Sim, identity, key

CONSENT = RuleSpec("consent", Ratio(1, 2)).to_wire()
CONSENSUS = RuleSpec("consensus", Ratio(1, 2)).to_wire()
MAJORITY = RuleSpec("majority", Ratio(0, 1)).to_wire()
REMOVAL = defaults_for("coordination").removal_rule.to_wire()
CHARTER = defaults_for("coordination").charter_rule.to_wire()


def network(*members: str, network_type: str = "coordination") -> Sim:
    sim = Sim(members[0], network_type=network_type)
    for name in members[1:]:
        sim.admit(members[0], name)
    sim.sync_all()
    return sim


def full_fold(sim: Sim) -> Any:
    return fold(sim.all_ops.values(), network_id=sim.network_id, genesis_id=sim.genesis.op_id)


def assert_converged(sim: Sim) -> None:
    sim.sync_all()
    reference = full_fold(sim)
    for name in sim.replicas:
        assert sim.state(name) == reference, name


def statuses(sim: Sim, who: str = "ana") -> dict[str, str]:
    return {m.display_name.lower() or "?": m.status for m in sim.state(who).members.values()}


# -- genesis and admission ---------------------------------------------------------------


@pytest.mark.parametrize(
    "network_type",
    ["information_exchange", "coordination", "joint_funding", "joint_action", "shared_identity"],
)
def test_genesis_applies_the_type_defaults(network_type: str) -> None:
    sim = Sim(network_type=network_type)
    state = sim.state("ana")
    assert state.settings == defaults_for(network_type)
    assert state.network_type == network_type
    assert statuses(sim) == {"ana": "active"}
    assert state.epochs == (b"\x01" * 16,)


def test_any_member_admits_in_a_coordination_network() -> None:
    sim = network("ana", "ben")
    sim.admit("ben", "cyd")
    assert_converged(sim)
    state = sim.state("cyd")
    assert state.members[key("cyd")].invited_by == key("ben")
    assert statuses(sim) == {"ana": "active", "ben": "active", "cyd": "active"}


def test_admission_by_decision_in_a_joint_funding_network() -> None:
    sim = Sim(network_type="joint_funding")
    sim.op("ana", "member_admit", {"member": key("ben"), "display_name": "Ben", "kind": "media"})
    assert key("ben") not in sim.state("ana").members  # a plain admit is not enough
    rule = defaults_for("joint_funding").admission_rule.to_wire()
    proposal = sim.propose("ana", rule=rule, kind="admission", subject=key("ben"))
    sim.position("ana", proposal, "consent")
    sim.close("ana", proposal)
    member = sim.state("ana").members[key("ben")]
    assert member.status == "active"
    assert member.invited_by == key("ana")


def test_ops_by_non_members_change_nothing() -> None:
    sim = network("ana", "ben")
    before = sim.state("ana")
    outsider = sign_op(
        identity("eve"),
        net=sim.network_id,
        seq=1,
        lamport=99,
        parents=[],
        time=0,
        type="comment",
        body={"target": sim.genesis.op_id, "text": "hello"},
    )
    sim.replicas["ana"].add(outsider)  # parentless: rejected by the DAG
    heads = sim.replicas["ana"].dag.heads()
    lamport = 1 + max(sim.replicas["ana"].dag.lamport(h) for h in heads)
    proposal = sign_op(
        identity("eve"),
        net=sim.network_id,
        seq=1,
        lamport=lamport,
        parents=heads,
        time=0,
        type="proposal",
        body={
            "closes_at": 0,
            "kind": "general",
            "options": [],
            "rule": CONSENT,
            "text": "",
            "title": "Let me in",
        },
    )
    sim.replicas["ana"].add(proposal)
    after = sim.state("ana")
    assert after.decisions == before.decisions
    assert after.members == before.members
    assert after.invalid == before.invalid + 1


def test_ops_replayed_into_another_network_change_nothing() -> None:
    one = network("ana", "ben")
    other = Sim("ana", name="Another network")
    before = other.state("ana")
    for op in one.all_ops.values():
        other.replicas["ana"].add(op)  # their parents are not in this network
    assert other.state("ana") == before
    # Even re-signed on top of this network's heads, the op names the wrong network.
    dag = other.replicas["ana"].dag
    forged = sign_op(
        identity("ana"),
        net=one.network_id,
        seq=2,
        lamport=2,
        parents=dag.heads(),
        time=0,
        type="comment",
        body={"target": other.genesis.op_id, "text": "x"},
    )
    other.replicas["ana"].add(forged)
    assert other.state("ana").invalid == before.invalid + 1


# -- decisions ---------------------------------------------------------------------------


def test_consent_decision_with_objection() -> None:
    sim = network("ana", "ben", "cyd")
    proposal = sim.propose("ana", rule=CONSENT)
    sim.sync_all()
    sim.position("ben", proposal, "consent")
    sim.position("cyd", proposal, "objection", "we meet on Fridays")
    sim.position("ana", proposal, "consent")
    sim.sync_all()
    sim.close("ana", proposal)
    assert_converged(sim)
    decision = sim.state("ben").decisions[proposal.op_id]
    assert decision.status == "closed"
    assert decision.outcome is not None
    assert decision.outcome.outcome == "objected"
    assert not decision.disputed
    assert len(decision.counted) == 3


def test_block_and_objection_need_a_reason() -> None:
    sim = network("ana", "ben")
    proposal = sim.propose("ana", rule=CONSENSUS)
    sim.sync_all()
    sim.position("ben", proposal, "block")  # no reason: invalid
    assert sim.state("ben").decisions[proposal.op_id].positions == ()
    sim.position("ben", proposal, "block", "this breaks our charter")
    assert len(sim.state("ben").decisions[proposal.op_id].positions) == 1


def test_latest_position_by_seq_counts_and_withdrawal_removes_it() -> None:
    sim = network("ana", "ben", "cyd")
    proposal = sim.propose("ana", rule=MAJORITY)
    sim.sync_all()
    sim.position("ben", proposal, "no")
    sim.position("ben", proposal, "yes")
    sim.position("cyd", proposal, "no")
    sim.position("cyd", proposal, "withdraw")
    sim.sync_all()
    tally = sim.replicas["ana"].folder.projected_tally(proposal.op_id)
    assert tally.counts["yes"] == 1
    assert tally.counts["no"] == 0
    assert tally.participants == 1


def test_close_counts_only_positions_in_its_causal_past() -> None:
    sim = network("ana", "ben", "cyd")
    proposal = sim.propose("ana", rule=MAJORITY, closes_in=0)
    sim.sync_all()
    sim.position("ben", proposal, "yes")
    sim.sync("ana", "ben")
    late = sim.position("cyd", proposal, "no")  # concurrent with the close
    sim.close("ana", proposal)
    assert_converged(sim)
    decision = sim.state("cyd").decisions[proposal.op_id]
    assert decision.outcome is not None
    assert decision.outcome.outcome == "adopted"
    assert late.op_id not in {p.op_id for p in decision.counted}
    assert late.op_id in {p.op_id for p in decision.positions}  # recorded, not counted


def test_first_close_wins_and_a_forged_outcome_is_disputed() -> None:
    sim = network("ana", "ben")
    proposal = sim.propose("ana", rule=MAJORITY, closes_in=0)
    sim.sync_all()
    sim.position("ben", proposal, "no")
    sim.position("ana", proposal, "yes")
    sim.sync_all()
    forged = sim.replicas["ana"].folder.projected_tally(proposal.op_id).to_wire()
    forged["outcome"] = "adopted"  # the truth is a tie
    sim.close("ana", proposal, claim=forged)
    sim.sync_all()
    sim.close("ben", proposal)  # a later close: void
    assert_converged(sim)
    decision = sim.state("ben").decisions[proposal.op_id]
    assert decision.closed_by == key("ana")
    assert decision.outcome is not None
    assert decision.outcome.outcome == "tied"
    assert decision.claimed is not None
    assert decision.claimed.outcome == "adopted"
    assert decision.disputed


def test_who_may_close_when() -> None:
    sim = network("ana", "ben", "cyd")
    proposal = sim.propose("ana", rule=MAJORITY, closes_in=DAY)
    sim.sync_all()
    sim.position("ben", proposal, "yes")
    sim.sync_all()
    sim.close("ben", proposal)  # before the deadline, not everyone positioned: invalid
    assert sim.state("ben").decisions[proposal.op_id].status == "open"
    sim.close("ben", proposal, dt=DAY)  # after the deadline but within the grace: invalid
    assert sim.state("ben").decisions[proposal.op_id].status == "open"
    sim.sync_all()
    sim.close("ana", proposal)  # the proposer, after the deadline: valid
    assert sim.state("ana").decisions[proposal.op_id].status == "closed"


def test_any_member_of_the_electorate_may_close_after_the_grace() -> None:
    sim = network("ana", "ben")
    proposal = sim.propose("ana", rule=MAJORITY, closes_in=DAY)
    sim.sync_all()
    grace = defaults_for("coordination").grace_ms
    sim.close("ben", proposal, dt=DAY + grace)
    assert sim.state("ben").decisions[proposal.op_id].status == "closed"


def test_amendment_starts_a_new_round() -> None:
    sim = network("ana", "ben", "cyd")
    proposal = sim.propose("ana", rule=MAJORITY)
    sim.sync_all()
    sim.position("ben", proposal, "yes")
    sim.position("cyd", proposal, "yes")
    sim.sync_all()
    amendment = sim.op("ana", "amendment", {"proposal": proposal.op_id, "text": "New text"})
    sim.sync_all()
    sim.position("ben", proposal, "no", round_id=amendment.op_id)
    sim.sync_all()
    tally = sim.replicas["ana"].folder.projected_tally(proposal.op_id)
    assert (tally.counts["yes"], tally.counts["no"]) == (0, 1)


def test_members_admitted_later_do_not_vote() -> None:
    sim = network("ana", "ben")
    proposal = sim.propose("ana", rule=MAJORITY)
    sim.admit("ana", "cyd")
    sim.sync_all()
    sim.position("cyd", proposal, "yes")
    decision = sim.state("ana").decisions[proposal.op_id]
    assert key("cyd") not in decision.electorate
    assert decision.positions == ()


def test_withdrawn_proposal_cannot_be_closed() -> None:
    sim = network("ana", "ben")
    proposal = sim.propose("ana", rule=MAJORITY, closes_in=0)
    sim.op("ana", "withdraw", {"proposal": proposal.op_id})
    sim.close("ana", proposal)
    assert sim.state("ana").decisions[proposal.op_id].status == "withdrawn"


def test_membership_decisions_must_use_the_networks_rule() -> None:
    sim = network("ana", "ben", "cyd")
    lax = sim.propose("ana", rule=MAJORITY, kind="removal", subject=key("cyd"))
    assert lax.op_id not in sim.state("ana").decisions
    proper = sim.propose("ana", rule=REMOVAL, kind="removal", subject=key("cyd"))
    assert key("cyd") not in sim.state("ana").decisions[proper.op_id].electorate


# -- removal -----------------------------------------------------------------------------


def remove_by_decision(sim: Sim, subject: str, voters: list[str]) -> VerifiedOp:
    proposal = sim.propose(voters[0], rule=REMOVAL, kind="removal", subject=key(subject))
    sim.sync(*voters)
    for voter in voters:
        sim.position(voter, proposal, "yes")
    sim.sync(*voters)
    return sim.close(voters[0], proposal)


def test_removal_cuts_off_the_removed_members_later_ops_everywhere() -> None:
    sim = network("ana", "ben", "cyd")
    topic = sim.propose("ana", rule=CONSENT, title="Topic")
    sim.sync_all()
    kept = sim.op("cyd", "comment", {"target": topic.op_id, "text": "before"})
    sim.sync_all()
    remove_by_decision(sim, "cyd", ["ana", "ben"])
    cut = sim.op("cyd", "comment", {"target": topic.op_id, "text": "concurrent"})
    assert_converged(sim)
    state = sim.state("cyd")
    member = state.members[key("cyd")]
    assert member.status == "removed"
    assert member.cutoff is not None
    assert sim.replicas["ana"].dag.seq(kept.op_id) <= member.cutoff < cut.seq
    assert kept.op_id in state.comments[topic.op_id]
    assert cut.op_id not in state.comments[topic.op_id]


def test_removed_member_writing_under_the_old_epoch_is_rejected() -> None:
    sim = network("ana", "ben", "cyd")
    old_epoch = EpochKey(b"\x01" * 16, b"k" * 32)
    topic = sim.propose("ana", rule=CONSENT, title="Topic")
    remove_by_decision(sim, "cyd", ["ana", "ben"])
    sim.sync_all()
    # cyd still holds the old epoch key and seals a new op with it.
    forged = sim.op("cyd", "comment", {"target": topic.op_id, "text": "still here"})
    envelope = seal_group(
        forged, epoch=old_epoch, route_tag=sim.secret.route_tag, nonce=random_bytes(24)
    )
    opened = open_group(
        parse_envelope(envelope),
        epochs={old_epoch.epoch_id: old_epoch},
        network_id=sim.network_id,
        route_tag=sim.secret.route_tag,
    )
    before = sim.state("ana")
    sim.replicas["ana"].add(opened)
    after = sim.state("ana")
    assert after.comments == before.comments
    assert after.invalid == before.invalid + 1


def test_emergency_removal_at_the_kth_distinct_signature() -> None:
    sim = network("ana", "ben", "cyd", "dan")
    body = {"subject": key("dan"), "reason": "phone seized at the border"}
    sim.op("ana", "emergency_remove", body)
    sim.op("ana", "emergency_remove", body)  # the same signer twice counts once
    assert statuses(sim)["dan"] == "active"
    sim.sync("ana", "ben")
    sim.op("ben", "emergency_remove", body)
    assert_converged(sim)
    assert statuses(sim, "cyd")["dan"] == "removed"


def test_emergency_needs_at_least_two_by_settings() -> None:
    with pytest.raises(ValueError, match="needs 2 to"):
        defaults_for("coordination").__class__(
            **{**defaults_for("coordination").__dict__, "emergency_k": 1}
        )


def test_concurrent_mutual_removal_resolves_the_same_everywhere() -> None:
    sim = network("ana", "ben", "cyd", "dan")
    # Two camps that cannot reach each other remove each other's leader.
    sim.op("ana", "emergency_remove", {"subject": key("ben"), "reason": "compromised"})
    sim.sync("ana", "cyd")
    sim.op("cyd", "emergency_remove", {"subject": key("ben"), "reason": "compromised"})
    sim.op("ben", "emergency_remove", {"subject": key("ana"), "reason": "compromised"})
    sim.sync("ben", "dan")
    sim.op("dan", "emergency_remove", {"subject": key("ana"), "reason": "compromised"})
    assert_converged(sim)
    final = statuses(sim, "dan")
    assert sorted([final["ana"], final["ben"]]) == ["active", "removed"]


def test_leaving_cuts_off_later_ops() -> None:
    sim = network("ana", "ben")
    topic = sim.propose("ana", rule=CONSENT, title="Topic")
    sim.sync_all()
    sim.op("ben", "comment", {"target": topic.op_id, "text": "before leaving"})
    sim.op("ben", "leave", {})
    sim.op("ben", "comment", {"target": topic.op_id, "text": "after leaving"})
    assert_converged(sim)
    state = sim.state("ana")
    assert state.members[key("ben")].status == "left"
    assert len(state.comments[topic.op_id]) == 1


def test_a_removed_member_cannot_be_readmitted() -> None:
    sim = network("ana", "ben", "cyd")
    sim.op("cyd", "leave", {})
    sim.sync_all()
    sim.op("ana", "member_admit", {"member": key("cyd"), "display_name": "Cyd", "kind": "media"})
    assert sim.state("ana").members[key("cyd")].status == "left"


# -- equivocation ------------------------------------------------------------------------


def test_equivocating_author_is_flagged_and_both_ops_kept() -> None:
    sim = network("ana", "ben")
    topic = sim.propose("ana", rule=CONSENT, title="Topic")
    sim.sync_all()
    sim.op("ben", "member_update", {"display_name": "Ben"})
    sim.sync_all()
    dag = sim.replicas["ben"].dag
    latest = dag.latest(key("ben"))
    assert latest is not None
    heads = dag.heads()
    lamport = 1 + max(dag.lamport(h) for h in heads)
    twins = [
        sign_op(
            identity("ben"),
            net=sim.network_id,
            seq=latest[0] + 1,
            lamport=lamport,
            parents=heads,
            time=0,
            type="comment",
            body={"target": topic.op_id, "text": text},
        )
        for text in ("from my phone", "from the seized clone")
    ]
    for twin in twins:
        sim.replicas["ana"].add(twin)
        sim.all_ops[twin.op_id] = twin
    state = sim.state("ana")
    assert key("ben") in state.equivocators
    assert set(state.comments[topic.op_id]) == {t.op_id for t in twins}
    assert_converged(sim)


# -- agreements, governance, roles, matching --------------------------------------------


def test_charter_adoption_and_endorsement() -> None:
    sim = network("ana", "ben")
    version = sim.op(
        "ana",
        "agreement_version",
        {"kind": "charter", "title": "Our charter", "text": "We act calmly and openly."},
    )
    sim.op("ben", "endorse", {"version": version.op_id})  # ben has not seen it: invalid
    sim.sync_all()
    sim.op("ben", "endorse", {"version": version.op_id})  # not adopted yet: invalid
    proposal = sim.propose("ana", rule=CHARTER, kind="agreement_adoption", subject=version.op_id)
    sim.sync_all()
    sim.position("ana", proposal, "yes")
    sim.position("ben", proposal, "yes")
    sim.sync_all()
    sim.close("ana", proposal)
    sim.sync_all()
    sim.op("ben", "endorse", {"version": version.op_id})
    assert_converged(sim)
    state = sim.state("ana")
    agreement = state.agreements[version.op_id]
    assert agreement.adopted == version.op_id
    assert state.versions[version.op_id].endorsed_by == {key("ben")}


def test_governance_change_by_decision() -> None:
    sim = network("ana", "ben")
    new = defaults_for("shared_identity").to_wire()
    proposal = sim.propose("ana", rule=CHARTER, kind="governance_change", subject=new)
    sim.sync_all()
    sim.position("ana", proposal, "yes")
    sim.position("ben", proposal, "yes")
    sim.sync_all()
    sim.close("ana", proposal)
    assert sim.state("ana").settings == defaults_for("shared_identity")


def test_role_assignment_takes_effect_at_close() -> None:
    sim = network("ana", "ben")
    subject = {"member": key("ben"), "role": "treasurer"}
    proposal = sim.propose("ana", rule=CONSENT, kind="role", subject=subject)
    sim.sync_all()
    sim.position("ana", proposal, "consent")
    sim.position("ben", proposal, "consent")
    sim.sync_all()
    assert sim.state("ana").members[key("ben")].roles == ()
    sim.close("ana", proposal)
    assert sim.state("ana").members[key("ben")].roles == ("treasurer",)


def test_profile_updates_and_verifications() -> None:
    sim = network("ana", "ben")
    sim.op("ben", "member_update", {"offers": ["expertise_legal"], "needs": ["funding"]})
    sim.op("ben", "verify", {"subject": key("ana"), "safety": b"s" * 32})
    sim.op("ben", "verify", {"subject": key("ben"), "safety": b"s" * 32})  # self: invalid
    assert_converged(sim)
    state = sim.state("ana")
    assert state.members[key("ben")].offers == ("expertise_legal",)
    assert state.members[key("ana")].verified_by == {key("ben")}
    assert state.members[key("ben")].verified_by == frozenset()
