"""Shared realistic op bodies for the benchmarks (a coordination network's daily traffic)."""

from __future__ import annotations

import random
from typing import Any

_WORDS = [
    "we",
    "agree",
    "the",
    "union",
    "should",
    "meet",
    "on",
    "thursday",
    "at",
    "the",
    "usual",
    "place",
    "bring",
    "the",
    "minutes",
    "and",
    "the",
    "budget",
    "draft",
    "for",
    "the",
    "joint",
    "campaign",
    "against",
    "the",
    "new",
    "labour",
    "law",
]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def realistic_body(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One op type and body, drawn with the mix a decision-heavy network produces."""
    roll = rng.random()
    if roll < 0.60:
        return "position", {
            "proposal": rng.randbytes(32),
            "reason": _text(rng, rng.randint(0, 25)),
            "stance": rng.choice(["agree", "consent", "abstain", "stand_aside"]),
        }
    if roll < 0.75:
        return "comment", {"target": rng.randbytes(32), "text": _text(rng, rng.randint(5, 60))}
    if roll < 0.85:
        return "proposal", {
            "closes_at": 1_700_000_000_000,
            "kind": "general",
            "options": [],
            "quorum": [1, 2],
            "rule": "consent",
            "text": _text(rng, rng.randint(40, 250)),
            "title": _text(rng, 6),
        }
    if roll < 0.87:
        return "agreement_version", {"kind": "charter", "text": _text(rng, rng.randint(300, 900))}
    return "endorse", {"agreement": rng.randbytes(32), "version": rng.randint(1, 5)}
