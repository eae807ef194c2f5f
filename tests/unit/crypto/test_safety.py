"""crypto.safety: the numbers two members compare face to face."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from crypto import Identity, PublicIdentity, SafetyNumber, qr_payload, safety_number
from crypto._wordlist import WORDS

ALICE = Identity(bytes(range(32))).public
BOB = Identity(bytes(range(1, 33))).public
CAROL = Identity(bytes(32)).public


def _reference_half(key: bytes) -> str:
    # Written from the module's documentation, independently of its code: 5200 rounds of
    # BLAKE2b-256 personalised "p2pnet-safety" over (previous digest || key), starting
    # from version 0x0001 || key; six 5-byte big-endian chunks, each mod 100000.
    digest = b"\x00\x01" + key
    for _ in range(5200):
        digest = hashlib.blake2b(digest + key, digest_size=32, person=b"p2pnet-safety").digest()
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )


def _split(number: SafetyNumber) -> list[tuple[str, tuple[str, ...]]]:
    """The two halves of a safety number: (30 digits, 6 words) each, in display order."""
    return [
        (number.digits[:30], number.words[:6]),
        (number.digits[30:], number.words[6:]),
    ]


def test_digits_match_the_documented_construction() -> None:
    halves = sorted((_reference_half(ALICE.key), _reference_half(BOB.key)))
    assert safety_number(ALICE, BOB).digits == halves[0] + halves[1]


def test_each_half_belongs_to_one_key() -> None:
    # Each key owns 30 digits and 6 words, ordered together: replacing the other key
    # leaves that key's half (digits and words) unchanged.
    alice_digits = _reference_half(ALICE.key)
    halves_with_bob = dict(_split(safety_number(ALICE, BOB)))
    halves_with_carol = dict(_split(safety_number(ALICE, CAROL)))
    assert alice_digits in halves_with_bob
    assert halves_with_bob[alice_digits] == halves_with_carol[alice_digits]
    bob_digits = _reference_half(BOB.key)
    assert bob_digits in halves_with_bob
    assert halves_with_bob[bob_digits] != halves_with_bob[alice_digits]


def test_symmetric() -> None:
    assert safety_number(ALICE, BOB) == safety_number(BOB, ALICE)
    assert str(safety_number(ALICE, BOB)) == str(safety_number(BOB, ALICE))


def test_shape() -> None:
    number = safety_number(ALICE, BOB)
    assert len(number.digits) == 60
    assert number.digits.isascii()
    assert number.digits.isdigit()
    assert len(number.groups) == 12
    assert all(len(g) == 5 and g.isdigit() for g in number.groups)
    assert "".join(number.groups) == number.digits
    assert str(number) == " ".join(number.groups)
    # The word form: 6 words per half (crypto/safety.py's documented design).
    assert len(number.words) == 12
    assert all(w in WORDS for w in number.words)


def test_different_pairs_differ() -> None:
    ab, ac, bc = safety_number(ALICE, BOB), safety_number(ALICE, CAROL), safety_number(BOB, CAROL)
    assert len({ab.digits, ac.digits, bc.digits}) == 3
    assert len({ab.words, ac.words, bc.words}) == 3


def test_deterministic_across_objects() -> None:
    again = PublicIdentity(bytes(ALICE.key))
    assert safety_number(again, BOB) == safety_number(ALICE, BOB)


class TestMatches:
    def test_accepts_the_displayed_forms(self) -> None:
        number = safety_number(ALICE, BOB)
        assert number.matches(number.digits)
        assert number.matches(str(number))
        assert number.matches("-".join(number.groups))
        assert number.matches("\t".join(number.groups))
        assert number.matches("  " + " - ".join(number.groups) + " ")

    def test_rejects_any_single_changed_digit(self) -> None:
        number = safety_number(ALICE, BOB)
        for i, digit in enumerate(number.digits):
            changed = str((int(digit) + 1) % 10)
            assert not number.matches(number.digits[:i] + changed + number.digits[i + 1 :])

    @pytest.mark.parametrize(
        "edit",
        [
            lambda d: d[:-1],
            lambda d: d + "0",
            lambda d: "",
            lambda d: d[30:] + d[:30],
            lambda d: d[:10] + "x" + d[11:],
        ],
        ids=["truncated", "extended", "empty", "halves-swapped", "letter"],
    )
    def test_rejects_other_strings(self, edit: Callable[[str], str]) -> None:
        number = safety_number(ALICE, BOB)
        typed = edit(number.digits)
        assert typed != number.digits
        assert not number.matches(typed)


def test_word_list_is_256_distinct_words() -> None:
    # The word form indexes WORDS with a digest byte: it must have exactly 256 entries,
    # all distinct, or some words would carry less than 8 bits.
    assert len(WORDS) == 256
    assert len(set(WORDS)) == 256
    assert all(w.isascii() and w.isalpha() and w.islower() for w in WORDS)


def test_qr_payload_names_both_keys_in_order() -> None:
    payload = qr_payload(ALICE, BOB)
    assert payload == f"p2pnet:verify:1:{ALICE.key.hex()}:{BOB.key.hex()}"
    assert qr_payload(BOB, ALICE) != payload


def test_persian_and_arabic_indic_digits_match() -> None:
    number = safety_number(Identity(b"\x05" * 32).public, Identity(b"\x06" * 32).public)
    persian = number.digits.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    arabic = number.digits.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert number.matches(persian)
    assert number.matches(" ".join(arabic[i : i + 5] for i in range(0, 60, 5)))
    wrong = ("۱" if persian[0] != "۱" else "۲") + persian[1:]
    assert not number.matches(wrong)
