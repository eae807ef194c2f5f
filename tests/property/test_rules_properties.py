"""Properties of the tally: total, bounded, monotone, order-free, integer-only, strict."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from protocol import wire
from protocol._errors import RemoteProtocolError
from protocol.rules import OUTCOMES, RULES, STANCES, Ratio, RuleSpec, Tally, tally
from tests.strategies import msgpack_values

Case = tuple[RuleSpec, frozenset[bytes], dict[bytes, str]]

# A small key space, so electorates and positions overlap often and outsiders occur.
keys = st.integers(0, 15).map(lambda i: bytes([i]) * 32)
ratios = st.integers(1, 6).flatmap(lambda den: st.builds(Ratio, st.integers(0, den), st.just(den)))
# At most one half: quorum is usually met, so the monotonicity tests mostly start adopted.
low_ratios = st.integers(1, 6).flatmap(
    lambda den: st.builds(Ratio, st.integers(0, den // 2), st.just(den))
)
thresholds = st.integers(1, 6).flatmap(
    lambda den: st.builds(Ratio, st.integers(1, den), st.just(den))
)


@st.composite
def specs(draw: st.DrawFn, rules: tuple[str, ...] = RULES, *, low_quorum: bool = False) -> RuleSpec:
    rule = draw(st.sampled_from(rules))
    quorum = draw(low_ratios if low_quorum else ratios)
    if rule == "supermajority":
        base = draw(st.sampled_from(["cast", "participating", "eligible"]))
        return RuleSpec(rule, quorum=quorum, threshold=draw(thresholds), base=base)
    if rule == "consensus":
        return RuleSpec(rule, quorum=quorum, block_threshold=draw(st.integers(1, 4)))
    return RuleSpec(rule, quorum=quorum)


def stances_of(rule: str, favour: str | None = None) -> st.SearchStrategy[str]:
    """A rule's stances; ``favour`` (if it is one) drawn about four times in five."""
    choices = sorted(STANCES[rule])
    if favour not in choices:
        return st.sampled_from(choices)
    return st.sampled_from([favour] * 3 * len(choices) + choices)


@st.composite
def cases(draw: st.DrawFn, rules: tuple[str, ...] = RULES, favour: str | None = None) -> Case:
    """A spec, an electorate, and positions from most of it plus a few outsiders.

    With ``favour``, that stance dominates and the quorum is at most one half.
    """
    spec = draw(specs(rules, low_quorum=favour is not None))
    stances = stances_of(spec.rule, favour)
    electorate = draw(st.frozensets(keys, max_size=12))
    # About three in four members of E take a position.
    optional = st.sampled_from([True, True, True, False]).flatmap(
        lambda present: stances if present else st.none()
    )
    positions = {
        member: stance for member in sorted(electorate) if (stance := draw(optional)) is not None
    }
    outsiders = draw(st.dictionaries(keys, stances, max_size=4))
    positions |= {k: v for k, v in outsiders.items() if k not in electorate}
    return spec, electorate, positions


# Outside the key space of ``keys``: members that surely hold no position yet.
NEWCOMER = b"\xfe" * 32
FRESH = frozenset(bytes([0xF0 + i]) * 32 for i in range(4))


@given(cases())
def test_tally_is_total_and_consistent(case: Case) -> None:
    spec, electorate, positions = case
    result = tally(spec, electorate, positions)
    voters = [k for k in positions if k in electorate]
    assert result.outcome in OUTCOMES[spec.rule]
    assert set(result.counts) == STANCES[spec.rule]
    assert list(result.counts) == sorted(result.counts)
    assert sum(result.counts.values()) == result.participants == len(voters)
    assert result.eligible == len(electorate)
    q = spec.quorum
    assert result.quorum_met is (result.participants * q.den >= q.num * len(electorate))
    if result.outcome == "no_quorum":
        assert not result.quorum_met
    if result.outcome in {"adopted", "rejected", "tied", "objected", "no_consensus"}:
        assert result.quorum_met


@given(cases(), st.data())
def test_tally_ignores_order(case: Case, data: st.DataObject) -> None:
    spec, electorate, positions = case
    shuffled = data.draw(st.permutations(list(positions.items())))
    reordered = data.draw(st.permutations(sorted(electorate)))
    expected = tally(spec, electorate, positions)
    assert tally(spec, set(reordered), dict(shuffled)) == expected


@given(cases(), st.dictionaries(keys, st.text(max_size=8), max_size=8))
def test_tally_ignores_non_members(case: Case, outsiders: dict[bytes, str]) -> None:
    # Outsiders may even hold a stance no rule has: they are never looked at.
    spec, electorate, positions = case
    noisy = {k: v for k, v in outsiders.items() if k not in electorate} | positions
    assert tally(spec, electorate, noisy) == tally(spec, electorate, positions)


@given(cases(rules=("majority", "supermajority"), favour="yes"), st.data())
def test_more_yes_keeps_adopted(case: Case, data: st.DataObject) -> None:
    spec, electorate, positions = case
    electorate |= {NEWCOMER}
    before = tally(spec, electorate, positions).outcome
    event(before)  # "yes" is favoured, so about half the examples start adopted
    # A member of E without a position says yes.
    after = tally(spec, electorate, {**positions, NEWCOMER: "yes"}).outcome
    assert after == "adopted" or before != "adopted"
    # A member of E changes their no or abstain to yes.
    others = sorted(k for k, v in positions.items() if k in electorate and v != "yes")
    if others:
        turncoat = data.draw(st.sampled_from(others))
        after = tally(spec, electorate, {**positions, turncoat: "yes"}).outcome
        assert after == "adopted" or before != "adopted"


@given(cases(rules=("consensus",), favour="agree"))
def test_more_agree_keeps_consensus(case: Case) -> None:
    spec, electorate, positions = case
    electorate |= {NEWCOMER}
    before = tally(spec, electorate, positions).outcome
    event(before)
    after = tally(spec, electorate, {**positions, NEWCOMER: "agree"}).outcome
    assert after == "adopted" or before != "adopted"


@given(cases(rules=("consensus",)), st.data())
def test_enough_blocks_always_block(case: Case, data: st.DataObject) -> None:
    spec, electorate, positions = case
    blockers = data.draw(
        st.lists(
            st.sampled_from(sorted(electorate | FRESH)),
            min_size=spec.block_threshold,
            unique=True,
        )
    )
    electorate |= set(blockers)
    result = tally(spec, electorate, {**positions, **dict.fromkeys(blockers, "block")})
    assert result.outcome == "blocked"


@given(cases(rules=("consensus",), favour="block"))
def test_blocked_iff_blocks_reach_threshold(case: Case) -> None:
    spec, electorate, positions = case
    result = tally(spec, electorate, positions)
    assert (result.outcome == "blocked") is (result.counts["block"] >= spec.block_threshold)
    assert result.fragile is (4 * result.counts["stand_aside"] > result.participants)


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in [k, *_leaves(v)]]
    if isinstance(obj, list):
        return [leaf for v in obj for leaf in _leaves(v)]
    return [obj]


@given(cases())
def test_wire_forms_are_integer_only_and_round_trip(case: Case) -> None:
    spec, electorate, positions = case
    result = tally(spec, electorate, positions)
    for obj in (spec.to_wire(), result.to_wire()):
        leaves = _leaves(obj)
        assert not any(isinstance(leaf, float) for leaf in leaves)
        assert {type(leaf) for leaf in leaves} <= {int, str, bool}
    spec_bytes = wire.encode(spec.to_wire())
    tally_bytes = wire.encode(result.to_wire())
    assert RuleSpec.from_wire(wire.decode(spec_bytes, max_size=4096)) == spec
    assert Tally.from_wire(wire.decode(tally_bytes, max_size=4096)) == result


@pytest.mark.parametrize("parse", [RuleSpec.from_wire, Tally.from_wire])
@given(obj=msgpack_values)
def test_from_wire_raises_only_remote_errors(parse: Any, obj: Any) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse(obj)


@given(cases(), st.data(), msgpack_values)
def test_from_wire_survives_a_corrupted_field(case: Case, data: st.DataObject, junk: Any) -> None:
    spec, electorate, positions = case
    for obj, parse in (
        (spec.to_wire(), RuleSpec.from_wire),
        (tally(spec, electorate, positions).to_wire(), Tally.from_wire),
    ):
        key = data.draw(st.sampled_from(sorted(obj)))
        corrupted = {**obj, key: junk}
        try:
            parsed = parse(corrupted)
        except RemoteProtocolError:
            continue
        # Whatever was accepted must be a value that writes back to exactly this form.
        assert parsed.to_wire() == corrupted
