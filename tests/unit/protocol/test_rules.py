"""Worked examples of the decision rules, GOVERNANCE.md's edge cases first among them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from protocol import wire
from protocol._errors import LocalProtocolError, RemoteProtocolError
from protocol.rules import (
    OUTCOMES,
    REASON_REQUIRED,
    RULES,
    STANCES,
    Ratio,
    RuleSpec,
    Tally,
    position_error,
    tally,
    validate_position,
)


def members(n: int) -> list[bytes]:
    return [bytes([i]) * 32 for i in range(n)]


def run(
    spec: RuleSpec, stances: list[str], *, eligible: int | None = None, extra: int = 0
) -> Tally:
    """Tally ``stances`` given by the first members of an electorate of ``eligible``.

    ``extra`` more positions come from keys outside the electorate, each a "yes"-like
    first stance of the rule, to show they are ignored.
    """
    size = len(stances) if eligible is None else eligible
    keys = members(size)
    positions = dict(zip(keys, stances, strict=False))
    outsider_stance = sorted(STANCES[spec.rule])[-1]
    for i in range(extra):
        positions[b"\xff" + bytes([i]) * 31] = outsider_stance
    return tally(spec, frozenset(keys), positions)


NO_QUORUM = Ratio(0, 1)
MAJ = RuleSpec("majority")
CONSENT = RuleSpec("consent")
CONSENSUS = RuleSpec("consensus")


def supermajority(base: str, num: int = 2, den: int = 3, quorum: Ratio = NO_QUORUM) -> RuleSpec:
    return RuleSpec("supermajority", threshold=Ratio(num, den), base=base, quorum=quorum)


# -- majority -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stances", "outcome"),
    [
        (["yes", "yes", "no"], "adopted"),
        (["yes", "no", "no"], "rejected"),
        (["yes", "no"], "tied"),
        (["yes", "yes", "no", "no", "abstain"], "tied"),
        (["abstain", "abstain"], "rejected"),  # Y+N = 0: nothing cast is no tie
        ([], "rejected"),
        (["yes", "abstain", "abstain", "abstain"], "adopted"),  # abstain is not "no"
    ],
)
def test_majority(stances: list[str], outcome: str) -> None:
    assert run(MAJ, stances).outcome == outcome


def test_majority_counts_every_stance_sorted() -> None:
    result = run(MAJ, ["yes", "yes", "abstain"], eligible=5)
    assert list(result.counts) == ["abstain", "no", "yes"]
    assert dict(result.counts) == {"abstain": 1, "no": 0, "yes": 2}
    assert (result.participants, result.eligible, result.quorum_met) == (3, 5, True)
    assert result.fragile is False


def test_tie_needs_quorum_first() -> None:
    spec = RuleSpec("majority", quorum=Ratio(1, 2))
    assert run(spec, ["yes", "no"], eligible=5).outcome == "no_quorum"
    assert run(spec, ["yes", "no", "abstain"], eligible=5).outcome == "tied"


# -- quorum ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("participants", "met"),
    [(0, False), (2, False), (3, True), (6, True)],
)
def test_quorum_exactly_met(participants: int, met: bool) -> None:
    # |E| = 6, q = 1/2: met iff P*2 >= 6.
    spec = RuleSpec("majority", quorum=Ratio(1, 2))
    result = run(spec, ["yes"] * participants, eligible=6)
    assert result.quorum_met is met
    assert result.outcome == ("adopted" if met else "no_quorum")


def test_quorum_counts_abstain() -> None:
    spec = RuleSpec("majority", quorum=Ratio(1, 2))
    result = run(spec, ["yes", "abstain", "abstain"], eligible=6)
    assert result.quorum_met
    assert result.outcome == "adopted"


def test_quorum_counts_stand_aside() -> None:
    spec = RuleSpec("consensus", quorum=Ratio(1, 2))
    assert run(spec, ["agree", "stand_aside"], eligible=6).outcome == "no_quorum"
    assert run(spec, ["agree", "stand_aside", "stand_aside"], eligible=6).outcome == "adopted"


def test_full_quorum_and_zero_quorum() -> None:
    full = RuleSpec("majority", quorum=Ratio(1, 1))
    assert run(full, ["yes"] * 4, eligible=5).outcome == "no_quorum"
    assert run(full, ["yes"] * 4 + ["abstain"], eligible=5).outcome == "adopted"
    assert run(MAJ, [], eligible=5).quorum_met  # the default 0/1 is always met


def test_non_members_are_ignored() -> None:
    spec = RuleSpec("majority", quorum=Ratio(1, 2))
    # Two outsiders saying "yes" would make quorum and a majority if they counted.
    result = run(spec, ["no"], eligible=3, extra=2)
    assert result.participants == 1
    assert dict(result.counts) == {"abstain": 0, "no": 1, "yes": 0}
    assert result.outcome == "no_quorum"
    assert run(MAJ, ["no"], eligible=3, extra=2).outcome == "rejected"


def test_empty_electorate() -> None:
    # P*q_den >= q_num*0 always holds: quorum met, then the rule decides on zero counts.
    quorum = Ratio(1, 1)
    expected = {
        "majority": "rejected",
        "consent": "objected",
        "consensus": "no_consensus",
        "advice": "advice_recorded",
        "sense_check": "sense_only",
    }
    for rule, outcome in expected.items():
        result = tally(RuleSpec(rule, quorum=quorum), frozenset(), {b"x": "abstain"})
        assert (result.outcome, result.quorum_met, result.participants) == (outcome, True, 0)
    for base in ("cast", "participating", "eligible"):
        spec = supermajority(base, quorum=quorum)
        assert tally(spec, frozenset(), {}).outcome == "rejected"


# -- supermajority --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stances", "outcomes"),
    [
        # Y=4 N=2 A=1 of |E|=9: cast 12 >= 2*6 (exactly 2/3); participating 12 < 14.
        (["yes"] * 4 + ["no"] * 2 + ["abstain"], ("adopted", "rejected", "rejected")),
        # Y=5 N=1 A=1 of |E|=9: participating 15 >= 14; eligible 15 < 18.
        (["yes"] * 5 + ["no"] + ["abstain"], ("adopted", "adopted", "rejected")),
        # Y=6 N=1 A=1 of |E|=9: eligible 18 >= 18, exactly 2/3 of everyone.
        (["yes"] * 6 + ["no"] + ["abstain"], ("adopted", "adopted", "adopted")),
        # Y=3 N=2 of |E|=9: 9 < 10 even on cast.
        (["yes"] * 3 + ["no"] * 2, ("rejected", "rejected", "rejected")),
    ],
)
def test_supermajority_bases(stances: list[str], outcomes: tuple[str, str, str]) -> None:
    got = tuple(
        run(supermajority(base), stances, eligible=9).outcome
        for base in ("cast", "participating", "eligible")
    )
    assert got == outcomes


def test_supermajority_zero_base_rejects() -> None:
    assert run(supermajority("cast"), ["abstain"] * 3).outcome == "rejected"
    assert run(supermajority("participating"), [], eligible=3).outcome == "rejected"


def test_supermajority_no_quorum() -> None:
    spec = supermajority("cast", quorum=Ratio(1, 2))
    assert run(spec, ["yes"] * 2, eligible=5).outcome == "no_quorum"
    assert run(spec, ["yes"] * 3, eligible=5).outcome == "adopted"


def test_supermajority_unanimity_threshold() -> None:
    spec = supermajority("cast", num=1, den=1)
    assert run(spec, ["yes"] * 5 + ["abstain"]).outcome == "adopted"
    assert run(spec, ["yes"] * 5 + ["no"]).outcome == "rejected"


# -- consent --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stances", "outcome"),
    [
        (["consent"], "adopted"),
        (["concern"], "adopted"),  # consent-with-concern counts as Y
        (["consent", "concern", "abstain"], "adopted"),
        (["consent"] * 5 + ["objection"], "objected"),
        (["objection"], "objected"),
        (["abstain", "abstain"], "objected"),  # GOVERNANCE.md: not adopted => objected
        ([], "objected"),
    ],
)
def test_consent(stances: list[str], outcome: str) -> None:
    assert run(CONSENT, stances).outcome == outcome


def test_consent_quorum_before_objection() -> None:
    spec = RuleSpec("consent", quorum=Ratio(1, 2))
    assert run(spec, ["objection"], eligible=4).outcome == "no_quorum"


# -- consensus ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stances", "outcome"),
    [
        (["agree", "agree"], "adopted"),
        (["agree", "stand_aside", "abstain"], "adopted"),
        (["agree", "disagree"], "no_consensus"),
        (["stand_aside", "abstain"], "no_consensus"),
        (["agree"] * 9 + ["block"], "blocked"),
        (["disagree", "block"], "blocked"),
    ],
)
def test_consensus(stances: list[str], outcome: str) -> None:
    assert run(CONSENSUS, stances).outcome == outcome


def test_block_threshold_two() -> None:
    spec = RuleSpec("consensus", block_threshold=2)
    assert run(spec, ["agree", "agree", "block"]).outcome == "adopted"
    assert run(spec, ["agree", "disagree", "block"]).outcome == "no_consensus"
    assert run(spec, ["agree", "block", "block"]).outcome == "blocked"


def test_block_wins_without_quorum() -> None:
    spec = RuleSpec("consensus", quorum=Ratio(1, 2))
    result = run(spec, ["block"], eligible=10)
    assert not result.quorum_met
    assert result.outcome == "blocked"
    assert run(spec, ["agree"], eligible=10).outcome == "no_quorum"


@pytest.mark.parametrize(
    ("stand_asides", "others", "fragile"),
    [
        (1, 3, False),  # 4*1 == 4: exactly a quarter is not fragile
        (2, 6, False),  # 8 == 8
        (1, 2, True),  # 4 > 3
        (2, 5, True),  # 8 > 7
        (0, 0, False),  # P = 0
    ],
)
def test_fragile_boundary(stand_asides: int, others: int, fragile: bool) -> None:
    stances = ["stand_aside"] * stand_asides + ["agree"] * others
    assert run(CONSENSUS, stances).fragile is fragile


def test_fragile_only_for_consensus() -> None:
    # Only consensus has stand-asides; the other rules never flag, whatever the counts.
    for rule in ("majority", "consent", "advice", "sense_check"):
        assert not run(RuleSpec(rule), ["abstain"] * 4).fragile


# -- advice and sense_check -----------------------------------------------------------


def test_advice_and_sense_check_always_record() -> None:
    quorum = Ratio(1, 1)
    advice = run(RuleSpec("advice", quorum=quorum), ["advice", "abstain"], eligible=4)
    assert (advice.outcome, advice.quorum_met) == ("advice_recorded", False)
    assert dict(advice.counts) == {"abstain": 1, "advice": 1}
    sense = run(RuleSpec("sense_check", quorum=quorum), ["yes", "no", "unsure", "unsure"])
    assert (sense.outcome, sense.quorum_met) == ("sense_only", True)
    assert dict(sense.counts) == {"abstain": 0, "no": 1, "unsure": 2, "yes": 1}


def test_tally_rejects_unknown_stance() -> None:
    with pytest.raises(LocalProtocolError, match="'maybe'"):
        run(MAJ, ["yes", "maybe"])


def test_unknown_stance_of_non_member_is_ignored() -> None:
    result = tally(MAJ, frozenset(members(1)), {members(1)[0]: "yes", b"out": "maybe"})
    assert result.outcome == "adopted"


# -- positions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "stance", "message"),
    [
        ("consensus", "block", "a block needs a reason"),
        ("consent", "objection", "an objection needs a reason"),
        ("advice", "advice", "an advice needs a reason"),
    ],
)
def test_reason_required(rule: str, stance: str, message: str) -> None:
    spec = RuleSpec(rule)
    for missing in ("", "   \n\t"):
        assert position_error(spec, stance, missing) == message
        with pytest.raises(LocalProtocolError, match=message):
            validate_position(spec, stance, missing)
    assert position_error(spec, stance, "it breaks our safety agreement") is None
    validate_position(spec, stance, "it breaks our safety agreement")


def test_reason_required_names_exactly_the_three() -> None:
    assert frozenset({"block", "objection", "advice"}) == REASON_REQUIRED
    for spec in SPECS:
        for stance in STANCES[spec.rule] - REASON_REQUIRED:
            assert position_error(spec, stance, "") is None


def test_invalid_stance_message_lists_the_valid_ones() -> None:
    msg = position_error(CONSENT, "maybe", "")
    assert (
        msg == "'maybe' is not a stance of consent; use one of abstain, concern, consent, objection"
    )
    # A stance of another rule is no stance of this one.
    assert position_error(MAJ, "block", "reason") is not None
    with pytest.raises(LocalProtocolError, match="not a stance of majority"):
        validate_position(MAJ, "agree", "")


def test_position_error_survives_wrong_types() -> None:
    bad_stance: Any = ["yes"]
    bad_reason: Any = None
    assert position_error(MAJ, bad_stance, "") is not None
    assert position_error(CONSENSUS, "block", bad_reason) == "a reason must be text"


def test_stance_tables() -> None:
    assert set(STANCES) == set(RULES) == set(OUTCOMES)
    assert STANCES["consensus"] == {"agree", "stand_aside", "disagree", "block", "abstain"}
    assert STANCES["consent"] == {"consent", "concern", "objection", "abstain"}
    assert all("abstain" in stances for stances in STANCES.values())
    with pytest.raises(TypeError):
        STANCES["majority"] = frozenset()  # type: ignore[index]


# -- RuleSpec validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rule": "plurality"}, "unknown decision rule 'plurality'"),
        ({"rule": "supermajority"}, "needs a threshold and a base"),
        ({"rule": "supermajority", "threshold": Ratio(2, 3)}, "needs a threshold and a base"),
        ({"rule": "supermajority", "base": "cast"}, "needs a threshold and a base"),
        (
            {"rule": "supermajority", "threshold": Ratio(0, 3), "base": "cast"},
            "threshold must be a Ratio above 0",
        ),
        (
            {"rule": "supermajority", "threshold": Ratio(2, 3), "base": "present"},
            "unknown supermajority base 'present'",
        ),
        ({"rule": "majority", "threshold": Ratio(2, 3)}, "apply to supermajority"),
        ({"rule": "consent", "base": "cast"}, "apply to supermajority"),
        ({"rule": "consensus", "block_threshold": 0}, "block_threshold must be"),
        ({"rule": "consensus", "block_threshold": True}, "block_threshold must be"),
        ({"rule": "consensus", "block_threshold": 1 << 32}, "block_threshold must be"),
        ({"rule": "majority", "block_threshold": 2}, "applies to consensus"),
        ({"rule": "majority", "quorum": (1, 2)}, "quorum must be a Ratio"),
    ],
)
def test_rulespec_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        RuleSpec(**kwargs)


@pytest.mark.parametrize(
    ("num", "den"),
    [(1, 0), (3, 2), (-1, 2), (1, -2), (True, 2), (1, 2.0), (0, 1 << 32)],
)
def test_ratio_validation(num: Any, den: Any) -> None:
    with pytest.raises(LocalProtocolError):
        Ratio(num, den)


def test_ratio_bounds_are_inclusive() -> None:
    assert Ratio(0, 1).to_wire() == [0, 1]
    assert Ratio(5, 5).to_wire() == [5, 5]
    assert Ratio((1 << 32) - 1, (1 << 32) - 1).den == (1 << 32) - 1


# -- wire forms -----------------------------------------------------------------------

SPECS = [
    RuleSpec("majority"),
    RuleSpec("majority", quorum=Ratio(1, 2)),
    supermajority("cast"),
    supermajority("participating", num=3, den=4, quorum=Ratio(1, 3)),
    supermajority("eligible"),
    RuleSpec("consent", quorum=Ratio(2, 5)),
    RuleSpec("consensus"),
    RuleSpec("consensus", block_threshold=3),
    RuleSpec("advice"),
    RuleSpec("sense_check"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.rule)
def test_rulespec_round_trip(spec: RuleSpec) -> None:
    obj = spec.to_wire()
    assert list(obj) == sorted(obj)
    assert RuleSpec.from_wire(obj) == spec
    decoded = wire.decode(wire.encode(obj), max_size=1024)
    assert RuleSpec.from_wire(decoded) == spec


def test_rulespec_wire_shapes() -> None:
    assert RuleSpec("majority").to_wire() == {"quorum": [0, 1], "rule": "majority"}
    assert supermajority("eligible").to_wire() == {
        "base": "eligible",
        "quorum": [0, 1],
        "rule": "supermajority",
        "threshold": [2, 3],
    }
    # The default block threshold is still written: one spec, one wire form.
    assert RuleSpec("consensus").to_wire() == {
        "block_threshold": 1,
        "quorum": [0, 1],
        "rule": "consensus",
    }


def _with(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**obj, **changes}


_SUPER = supermajority("cast").to_wire()
_CONSENSUS = RuleSpec("consensus").to_wire()


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "majority",
        {},
        {"rule": "majority"},  # quorum missing
        {"quorum": [0, 1]},  # rule missing
        _with(_SUPER, extra=1),  # unknown key
        _with(RuleSpec("majority").to_wire(), threshold=[2, 3]),  # key of another rule
        _with(RuleSpec("majority").to_wire(), block_threshold=1),
        {k: v for k, v in _SUPER.items() if k != "base"},
        {k: v for k, v in _CONSENSUS.items() if k != "block_threshold"},
        _with(_SUPER, rule="plurality"),
        _with(_SUPER, rule=b"supermajority"),
        _with(_SUPER, base=b"cast"),
        _with(_SUPER, base="present"),
        _with(_SUPER, threshold=[2.0, 3]),  # float
        _with(_SUPER, threshold=[2, 3.0]),
        _with(_SUPER, threshold=[True, 1]),  # bool as int
        _with(_SUPER, threshold=[0, 3]),
        _with(_SUPER, threshold=[4, 3]),
        _with(_SUPER, threshold=[2, 3, 1]),
        _with(_SUPER, threshold=(2, 3)),  # a tuple is not what decode gives
        _with(_SUPER, threshold={"num": 2, "den": 3}),
        _with(_SUPER, quorum=0.5),
        _with(_SUPER, quorum=[1, 0]),
        _with(_SUPER, quorum=None),
        _with(_CONSENSUS, block_threshold=True),
        _with(_CONSENSUS, block_threshold=1.0),
        _with(_CONSENSUS, block_threshold=0),
        _with(_CONSENSUS, block_threshold="2"),
        {1: "majority", "rule": "majority", "quorum": [0, 1]},
    ],
)
def test_rulespec_from_wire_is_strict(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        RuleSpec.from_wire(obj)


def _sample_tallies() -> list[Tally]:
    return [
        run(MAJ, ["yes", "no"], eligible=4),
        run(CONSENSUS, ["agree", "stand_aside"], eligible=3),
        run(RuleSpec("consensus", quorum=Ratio(1, 1)), ["block"], eligible=3),
        run(RuleSpec("advice"), ["advice"]),
        run(supermajority("eligible"), [], eligible=0),
    ]


@pytest.mark.parametrize("result", _sample_tallies(), ids=lambda t: t.outcome)
def test_tally_round_trip(result: Tally) -> None:
    obj = result.to_wire()
    assert list(obj) == sorted(obj)
    assert list(obj["counts"]) == sorted(obj["counts"])
    assert Tally.from_wire(obj) == result
    decoded = wire.decode(wire.encode(obj), max_size=1024)
    assert Tally.from_wire(decoded) == result
    assert hash(Tally.from_wire(decoded)) == hash(result)


def test_tally_is_immutable() -> None:
    result = run(MAJ, ["yes"])
    counts: Any = result.counts
    with pytest.raises(TypeError):
        counts["yes"] = 5
    assert isinstance(result.counts, Mapping)
    assert repr(result.counts) == "{'abstain': 0, 'no': 0, 'yes': 1}"


def test_tally_equality_sees_every_field() -> None:
    a = run(MAJ, ["yes", "no"], eligible=4)
    b = run(MAJ, ["yes", "abstain"], eligible=4)
    c = run(MAJ, ["yes", "no"], eligible=5)
    assert a != b
    assert a != c
    assert a == run(MAJ, ["no", "yes"], eligible=4)


_T = run(CONSENSUS, ["agree", "stand_aside"], eligible=3).to_wire()


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {},
        _with(_T, extra=0),
        {k: v for k, v in _T.items() if k != "fragile"},
        _with(_T, outcome="won"),
        _with(_T, outcome="tied"),  # not an outcome of consensus
        _with(_T, outcome=1),
        _with(_T, participants=2.0),  # float
        _with(_T, participants=True),  # bool as int
        _with(_T, participants=3),  # counts no longer sum to P
        _with(_T, eligible=1),  # P > |E|
        _with(_T, eligible=-1),
        _with(_T, quorum_met=1),  # int as bool
        _with(_T, fragile=None),
        _with(_T, counts=[]),
        _with(_T, counts={**_T["counts"], "yes": 0}),  # not one rule's stances
        _with(_T, counts={k: v for k, v in _T["counts"].items() if k != "abstain"}),
        _with(_T, counts={**_T["counts"], "abstain": -1, "agree": 2}),
        _with(_T, counts={**_T["counts"], "agree": 1.0}),
        _with(_T, counts={**_T["counts"], "agree": True}),
        _with(_T, counts={1: 0, **_T["counts"]}),
        _with(run(MAJ, ["yes"]).to_wire(), fragile=True),  # only consensus is fragile
    ],
)
def test_tally_from_wire_is_strict(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        Tally.from_wire(obj)


def test_tally_accepts_majority_outcome_on_shared_stances() -> None:
    # majority and supermajority share stances: "tied" fits the first, "adopted" both.
    obj = run(supermajority("cast"), ["yes"]).to_wire()
    assert Tally.from_wire(_with(obj, outcome="tied")).outcome == "tied"
