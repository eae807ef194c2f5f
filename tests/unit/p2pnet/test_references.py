"""References typed by a person: names, id prefixes, rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pnet.errors import AmbiguousReference, NodeError, NotFound
from p2pnet.references import by_long_prefix, check_name, parse_rule, resolve
from protocol.rules import Ratio

IDS = {
    bytes.fromhex("abcd01" + "00" * 29): "Rent strike",
    bytes.fromhex("abcd02" + "00" * 29): "Picnic",
}


@given(st.dictionaries(st.binary(min_size=32, max_size=32), st.text(max_size=20), min_size=1))
def test_a_full_id_always_resolves_to_itself(candidates: dict[bytes, str]) -> None:
    for key in candidates:
        assert resolve("decision", key.hex(), candidates) == key
        assert by_long_prefix(key.hex(), candidates) == key


def test_names_are_case_insensitive_and_exact() -> None:
    assert resolve("decision", "  rent STRIKE ", IDS) == bytes.fromhex("abcd01" + "00" * 29)
    with pytest.raises(NotFound, match="no decision matches 'rent'"):
        resolve("decision", "rent", IDS)


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(AmbiguousReference) as caught:
        resolve("decision", "abcd", IDS)
    assert "Rent strike (abcd0100)" in str(caught.value)
    assert "Picnic (abcd0200)" in str(caught.value)
    with pytest.raises(AmbiguousReference):
        resolve("decision", "abcd0", IDS)
    assert resolve("decision", "abcd02", IDS) == bytes.fromhex("abcd02" + "00" * 29)


def test_prefixes_shorter_than_four_digits_are_not_ids() -> None:
    with pytest.raises(NotFound):
        resolve("decision", "abc", IDS)
    assert by_long_prefix("abcd01", IDS) is None  # under 8 digits: the slow path decides


@pytest.mark.parametrize(
    ("text", "quorum", "kind", "threshold"),
    [
        ("consent", None, "consent", None),
        ("majority", "2/3", "majority", None),
        ("supermajority:2/3:eligible", None, "supermajority", Ratio(2, 3)),
    ],
)
def test_rules_parse(text: str, quorum: str | None, kind: str, threshold: Ratio | None) -> None:
    rule = parse_rule(text, quorum=quorum)
    assert rule.rule == kind
    assert rule.threshold == threshold
    assert rule.quorum == (Ratio(2, 3) if quorum else Ratio(1, 2))


@pytest.mark.parametrize(
    ("text", "quorum"),
    [
        ("supermajority", None),
        ("supermajority:2/3", None),
        ("supermajority:two/3:eligible", None),
        ("majority", "half"),
        ("majority", "1/0"),
        ("dictatorship", None),
        ("supermajority:3/2:eligible", None),
    ],
)
def test_bad_rules_are_node_errors(text: str, quorum: str | None) -> None:
    with pytest.raises(NodeError):
        parse_rule(text, quorum=quorum)


def test_names() -> None:
    assert check_name("  Amina ") == "Amina"
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(NodeError, match="1 to 100"):
            check_name(bad)


def test_a_name_that_spells_another_id_prefix_does_not_take_it_over() -> None:
    victim, impostor = b"\xab\xcd\xef\x01" + b"\x00" * 28, b"\x11" * 32
    candidates = {victim: "Shirin", impostor: victim.hex()[:8]}  # the short id the CLI prints
    with pytest.raises(AmbiguousReference):
        resolve("member", victim.hex()[:8], candidates)
    assert resolve("member", victim.hex(), candidates) == victim  # the whole id settles it
    assert resolve("member", "Shirin", candidates) == victim
