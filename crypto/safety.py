"""Safety numbers: what two members compare face to face to verify each other's keys.

Modelled on Signal's numeric fingerprints. Each public key gets a 30-digit half from an
iterated, personalised BLAKE2b (the iteration makes a key with a chosen half costly to
find); the safety number of a pair is the two halves ordered numerically, so both
people see the same 60 digits, in 12 groups of 5. The word form, for reading aloud, is
6 words per half (48 bits each, from the same iterated digest), ordered like the digits:
substituting one key still needs a second preimage of that key's half, at the iterated
cost. Words carry fewer bits than digits (48 vs ~99 per half); the UI prefers digits or
the QR code and offers words as an aid.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from crypto._primitives import hash256
from crypto._wordlist import WORDS
from crypto.identity import PublicIdentity

__all__ = ["SafetyNumber", "qr_payload", "safety_number"]

_VERSION = b"\x00\x01"
_ITERATIONS = 5200
_WORDS_PER_HALF = 6


def _half(key: PublicIdentity) -> tuple[str, tuple[str, ...]]:
    digest = _VERSION + key.key
    for _ in range(_ITERATIONS):
        digest = hash256(digest + key.key, person=b"p2pnet-safety")
    # 6 chunks of 5 bytes -> 5 decimal digits each, as Signal does.
    digits = "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )
    word_bytes = hash256(digest, person=b"p2pnet-words")[:_WORDS_PER_HALF]
    return digits, tuple(WORDS[b] for b in word_bytes)


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    """The 60-digit number and the word form for one pair of members."""

    digits: str
    words: tuple[str, ...]

    @property
    def groups(self) -> tuple[str, ...]:
        """The digits in 12 groups of 5, as shown on screen."""
        return tuple(self.digits[i : i + 5] for i in range(0, 60, 5))

    def __str__(self) -> str:
        return " ".join(self.groups)

    def matches(self, typed: str) -> bool:
        """Whether ``typed`` (spaces and dashes allowed) is this number."""
        # Any script's decimal digits count: Persian and Arabic-Indic keyboards type their own.
        cleaned = "".join(
            str(unicodedata.digit(ch)) if ch.isdecimal() else ch for ch in typed if ch not in " -\t"
        )
        return cleaned == self.digits


def safety_number(a: PublicIdentity, b: PublicIdentity) -> SafetyNumber:
    """The safety number of two members; the same whichever side computes it."""
    first, second = sorted((_half(a), _half(b)))
    return SafetyNumber(first[0] + second[0], first[1] + second[1])


def qr_payload(local: PublicIdentity, remote: PublicIdentity) -> str:
    """Text to put in a QR code shown by ``local`` to ``remote`` for in-person verification.

    The scanner checks that the first key is the one it holds for the person in front of
    it and the second is its own key.
    """
    return f"p2pnet:verify:1:{local.key.hex()}:{remote.key.hex()}"
