"""Decision rules: the tally, a pure function of an electorate and its positions.

Theory of operation
-------------------
GOVERNANCE.md ("Decision rules: exact semantics") is the specification; this module is its
executable form. Every member recomputes an outcome from the same ops and must get the
same answer, so the tally is whole-number arithmetic only: fractions are (num, den) pairs
of ints (:class:`Ratio`), comparisons are cross-multiplied, and no float exists anywhere,
not even in the wire form.

Inputs. :func:`tally` takes a :class:`RuleSpec`, the electorate ``E`` (member keys) and
``positions``: member key -> stance, *already* reduced by the state fold to each member's
latest position of the current round (withdrawn positions are simply absent). A position
of a key outside ``E`` is ignored: it is neither counted nor rejected, because members
admitted after the proposal opened do not vote on it. Each stance must be one of the
rule's :data:`STANCES` (the fold checks positions with :func:`position_error` first).

Counts. ``Y`` yes / consent (+ concern) / agree, ``N`` no / disagree, ``A`` abstain,
``S`` stand_aside, ``B`` block, ``O`` objection, ``P`` = members of ``E`` with any position
(abstain and stand_aside included), ``|E|``. :attr:`Tally.counts` reports every stance of
the rule, zeros included, so two nodes' tallies compare equal field by field.

Quorum ``q = q_num/q_den`` (default 0/1): met iff ``P*q_den >= q_num*|E|``. The formula is
applied literally, so with an empty electorate (``|E| = 0``) the quorum is always met and
the rule then decides on zero counts (majority and supermajority reject, consent is
``objected``, consensus is ``no_consensus``).

Outcomes, in the order they are decided:

========== ================================================================================
rule       outcome
========== ================================================================================
majority   quorum not met => ``no_quorum``; ``Y+N > 0`` and ``2Y > Y+N`` => ``adopted``;
           ``Y+N > 0`` and ``Y = N`` => ``tied``; otherwise (including ``Y+N = 0``, when
           everyone abstained) => ``rejected``.
super-     quorum not met => ``no_quorum``; with base = ``Y+N`` (``cast``), ``P``
majority   (``participating``) or ``|E|`` (``eligible``): base > 0 and
           ``Y*den >= num*base`` => ``adopted``; otherwise ``rejected``.
consent    quorum not met => ``no_quorum``; ``O = 0`` and ``Y >= 1`` (``Y`` = consent +
           concern) => ``adopted``; otherwise ``objected`` -- literally as GOVERNANCE.md
           says, even when ``O = 0`` and ``Y = 0`` (everyone abstained).
consensus  ``B >= block_threshold`` => ``blocked``, checked *first*, so a block wins even
           without quorum; quorum not met => ``no_quorum``; ``N = 0`` and ``Y >= 1`` =>
           ``adopted``; otherwise ``no_consensus``. :attr:`Tally.fragile` is set whenever
           stand-asides exceed a quarter of the participants (``4S > P``), whatever the
           outcome; it is ``False`` for every other rule.
advice     always ``advice_recorded``: no tally, the proposer decides after hearing the
           advice (which travels in each position's reason).
sense_check always ``sense_only``: non-binding, the counts show the distribution.
========== ================================================================================

``quorum_met`` is reported for every rule, advice and sense_check included, where it has
no effect on the outcome.

Reasons. ``block``, ``objection`` and ``advice`` need a reason (:data:`REASON_REQUIRED`);
a reason of only whitespace is no reason. Reasons never affect the tally.

Wire forms. :meth:`RuleSpec.to_wire` and :meth:`Tally.to_wire` give canonical-msgpack
maps of ints, text, bools and lists; each value has exactly one wire form (every field
relevant to the rule is always present, irrelevant ones are always absent), and the
``from_wire`` class methods accept exactly that form, raising
:class:`RemoteProtocolError` for anything else. A close op carries the closer's
:class:`Tally`; a node that computes a different one flags the decision as disputed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from protocol._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "OUTCOMES",
    "REASON_REQUIRED",
    "RULES",
    "STANCES",
    "Ratio",
    "RuleSpec",
    "Tally",
    "position_error",
    "tally",
    "validate_position",
]

_V = TypeVar("_V")


class _FrozenMap(Mapping[str, _V], Generic[_V]):
    """An immutable, hashable mapping with text keys, iterated in ascending key order."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, _V]) -> None:
        self._items = tuple(sorted(items.items()))

    def __getitem__(self, key: str) -> _V:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return repr(dict(self._items))


RULES = ("majority", "supermajority", "consent", "consensus", "advice", "sense_check")

STANCES: Mapping[str, frozenset[str]] = _FrozenMap(
    {
        "majority": frozenset({"yes", "no", "abstain"}),
        "supermajority": frozenset({"yes", "no", "abstain"}),
        # "concern" is consent-with-concern: it counts as Y.
        "consent": frozenset({"consent", "concern", "objection", "abstain"}),
        "consensus": frozenset({"agree", "stand_aside", "disagree", "block", "abstain"}),
        "advice": frozenset({"advice", "abstain"}),
        "sense_check": frozenset({"yes", "no", "abstain", "unsure"}),
    }
)

OUTCOMES: Mapping[str, frozenset[str]] = _FrozenMap(
    {
        "majority": frozenset({"adopted", "rejected", "tied", "no_quorum"}),
        "supermajority": frozenset({"adopted", "rejected", "no_quorum"}),
        "consent": frozenset({"adopted", "objected", "no_quorum"}),
        "consensus": frozenset({"adopted", "blocked", "no_consensus", "no_quorum"}),
        "advice": frozenset({"advice_recorded"}),
        "sense_check": frozenset({"sense_only"}),
    }
)

# Stances that are rejected without a reason. Each names one rule's stance only.
REASON_REQUIRED: frozenset[str] = frozenset({"block", "objection", "advice"})

_BASES = ("cast", "participating", "eligible")
# Ratio terms and block thresholds stay far inside msgpack's integer range, so every
# RuleSpec has a wire form; no real network needs a finer fraction.
_MAX_TERM = (1 << 32) - 1
_ALL_OUTCOMES = frozenset(outcome for outcomes in OUTCOMES.values() for outcome in outcomes)
_RULE_KEYS = {
    rule: frozenset({"rule", "quorum"})
    | (frozenset({"threshold", "base"}) if rule == "supermajority" else frozenset())
    | (frozenset({"block_threshold"}) if rule == "consensus" else frozenset())
    for rule in RULES
}
_TALLY_KEYS = frozenset({"counts", "eligible", "fragile", "outcome", "participants", "quorum_met"})


def _is_int(value: Any) -> bool:
    # bool is a subclass of int; a True where a count belongs is a bug or a forgery.
    return type(value) is int


@dataclass(frozen=True)
class Ratio:
    """A fraction ``num/den`` of whole numbers with ``0 <= num <= den`` and ``den >= 1``.

    Not reduced: ``Ratio(2, 4)`` and ``Ratio(1, 2)`` decide alike but are distinct values
    with distinct wire forms.

    Raises:
        LocalProtocolError: a term is not an int (bools are refused), ``den < 1``,
            ``num`` outside ``0..den``, or a term above 2**32 - 1.
    """

    num: int
    den: int

    def __post_init__(self) -> None:
        if not (_is_int(self.num) and _is_int(self.den)):
            raise LocalProtocolError("a ratio's terms must be whole numbers")
        if not 1 <= self.den <= _MAX_TERM:
            raise LocalProtocolError(f"a ratio's denominator must be 1..{_MAX_TERM}")
        if not 0 <= self.num <= self.den:
            raise LocalProtocolError(f"ratio {self.num}/{self.den} is not between 0 and 1")

    def to_wire(self) -> list[int]:
        """The wire form ``[num, den]``."""
        return [self.num, self.den]


def _ratio_from_wire(obj: Any, name: str) -> Ratio:
    if type(obj) is not list or len(obj) != 2:
        raise RemoteProtocolError(f"rule field {name} must be [num, den]")
    return Ratio(obj[0], obj[1])


@dataclass(frozen=True)
class RuleSpec:
    """A decision rule and its parameters, as a proposal op states them.

    ``threshold`` and ``base`` belong to ``supermajority`` only (and are required there);
    ``block_threshold`` matters to ``consensus`` only and must otherwise stay at 1.

    Raises:
        LocalProtocolError: unknown rule; ``threshold``/``base`` missing for
            supermajority or given for another rule; a threshold of 0 (``0 < num <= den``
            is required); an unknown base; ``block_threshold`` below 1, above 2**32 - 1,
            or changed for a rule other than consensus; a field of the wrong type.
    """

    rule: str
    quorum: Ratio = Ratio(0, 1)
    threshold: Ratio | None = None
    base: str | None = None
    block_threshold: int = 1

    def __post_init__(self) -> None:
        if type(self.rule) is not str or self.rule not in RULES:
            raise LocalProtocolError(
                f"unknown decision rule {self.rule!r}; use one of {', '.join(RULES)}"
            )
        if type(self.quorum) is not Ratio:
            raise LocalProtocolError("quorum must be a Ratio")
        if self.rule == "supermajority":
            if self.threshold is None or self.base is None:
                raise LocalProtocolError("a supermajority needs a threshold and a base")
            if type(self.threshold) is not Ratio or self.threshold.num == 0:
                raise LocalProtocolError("a supermajority threshold must be a Ratio above 0")
            if self.base not in _BASES:
                raise LocalProtocolError(
                    f"unknown supermajority base {self.base!r}; use one of {', '.join(_BASES)}"
                )
        elif self.threshold is not None or self.base is not None:
            raise LocalProtocolError(f"threshold and base apply to supermajority, not {self.rule}")
        if not _is_int(self.block_threshold) or not 1 <= self.block_threshold <= _MAX_TERM:
            raise LocalProtocolError(f"block_threshold must be a whole number 1..{_MAX_TERM}")
        if self.rule != "consensus" and self.block_threshold != 1:
            raise LocalProtocolError(f"block_threshold applies to consensus, not {self.rule}")

    def to_wire(self) -> dict[str, Any]:
        """The canonical wire map: ``rule`` and ``quorum`` always, plus ``threshold`` and
        ``base`` for supermajority and ``block_threshold`` for consensus; keys sorted."""
        out: dict[str, Any] = {"quorum": self.quorum.to_wire(), "rule": self.rule}
        if self.threshold is not None:
            out["threshold"] = self.threshold.to_wire()
        if self.base is not None:
            out["base"] = self.base
        if self.rule == "consensus":
            out["block_threshold"] = self.block_threshold
        return dict(sorted(out.items()))

    @classmethod
    def from_wire(cls, obj: Any) -> RuleSpec:
        """Parse the wire map made by :meth:`to_wire`, strictly.

        Raises:
            RemoteProtocolError: not a map, a missing or unknown key for the rule, a value
                of the wrong type (floats and bools-as-ints included), or an invalid rule.
        """
        if type(obj) is not dict:
            raise RemoteProtocolError("a rule must be a map")
        rule = obj.get("rule")
        if type(rule) is not str or rule not in RULES:
            raise RemoteProtocolError("unknown or missing decision rule")
        if set(obj) != _RULE_KEYS[rule]:
            raise RemoteProtocolError(
                f"a {rule} rule has exactly the keys {sorted(_RULE_KEYS[rule])}"
            )
        base = obj.get("base")
        if base is not None and type(base) is not str:
            raise RemoteProtocolError("rule field base must be text")
        try:
            return cls(
                rule=rule,
                quorum=_ratio_from_wire(obj["quorum"], "quorum"),
                threshold=(
                    _ratio_from_wire(obj["threshold"], "threshold") if "threshold" in obj else None
                ),
                base=base,
                block_threshold=obj.get("block_threshold", 1),
            )
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"invalid rule: {exc}") from None


def position_error(spec: RuleSpec, stance: str, reason: str) -> str | None:
    """Why a position is invalid under ``spec``, or ``None`` if it is valid.

    For remote positions (the state fold drops an invalid one); never raises.
    """
    allowed = STANCES[spec.rule]
    # The types are checked too: the fold may hand over whatever a peer's op body held.
    if type(stance) is not str or stance not in allowed:
        return f"{stance!r} is not a stance of {spec.rule}; use one of {', '.join(sorted(allowed))}"
    if type(reason) is not str:
        return "a reason must be text"
    if stance in REASON_REQUIRED and not reason.strip():
        article = "an" if stance[0] in "aeiou" else "a"
        return f"{article} {stance} needs a reason"
    return None


def validate_position(spec: RuleSpec, stance: str, reason: str) -> None:
    """Check a position we are about to build.

    Raises:
        LocalProtocolError: the stance is not one of the rule's, or it needs a reason and
            has none (see :func:`position_error` for the message).
    """
    error = position_error(spec, stance, reason)
    if error is not None:
        raise LocalProtocolError(error)


@dataclass(frozen=True)
class Tally:
    """The outcome of a decision and the counts behind it.

    ``counts`` holds every stance of the rule (zeros included) in ascending key order and
    is immutable; ``participants`` is ``P``, ``eligible`` is ``|E|``.

    Raises:
        LocalProtocolError: an unknown outcome; counts that are not exactly one rule's
            stances, not whole numbers >= 0, or do not sum to ``participants``; an
            outcome no rule with those stances can give; ``participants`` outside
            ``0..eligible``; a flag that is not a bool; ``fragile`` without consensus.
    """

    outcome: str
    counts: Mapping[str, int]
    participants: int
    eligible: int
    quorum_met: bool
    fragile: bool = False

    def __post_init__(self) -> None:
        if type(self.outcome) is not str or self.outcome not in _ALL_OUTCOMES:
            raise LocalProtocolError(f"unknown outcome {self.outcome!r}")
        if not isinstance(self.counts, Mapping):
            raise LocalProtocolError("counts must be a mapping")
        counts = _FrozenMap(self.counts)
        rules = [rule for rule in RULES if STANCES[rule] == frozenset(counts)]
        if not rules:
            raise LocalProtocolError("counts must cover exactly the stances of one rule")
        if not all(_is_int(n) and n >= 0 for n in counts.values()):
            raise LocalProtocolError("counts must be whole numbers >= 0")
        if not any(self.outcome in OUTCOMES[rule] for rule in rules):
            raise LocalProtocolError(f"outcome {self.outcome!r} does not fit these stances")
        if not (_is_int(self.participants) and _is_int(self.eligible)):
            raise LocalProtocolError("participants and eligible must be whole numbers")
        if not 0 <= self.participants <= self.eligible:
            raise LocalProtocolError("participants must be between 0 and eligible")
        if sum(counts.values()) != self.participants:
            raise LocalProtocolError("counts must sum to participants")
        if type(self.quorum_met) is not bool or type(self.fragile) is not bool:
            raise LocalProtocolError("quorum_met and fragile must be bools")
        if self.fragile and "consensus" not in rules:
            raise LocalProtocolError("only a consensus tally can be fragile")
        object.__setattr__(self, "counts", counts)

    def to_wire(self) -> dict[str, Any]:
        """The canonical wire map, every field present, keys (and count keys) sorted."""
        return {
            "counts": dict(self.counts.items()),
            "eligible": self.eligible,
            "fragile": self.fragile,
            "outcome": self.outcome,
            "participants": self.participants,
            "quorum_met": self.quorum_met,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Tally:
        """Parse the wire map made by :meth:`to_wire`, strictly.

        Raises:
            RemoteProtocolError: not a map, missing or unknown keys, values of the wrong
                type, or a tally that is inconsistent (see the class's checks).
        """
        if type(obj) is not dict or set(obj) != _TALLY_KEYS:
            raise RemoteProtocolError(
                f"a tally is a map with exactly the keys {sorted(_TALLY_KEYS)}"
            )
        counts = obj["counts"]
        if type(counts) is not dict or not all(type(k) is str for k in counts):
            raise RemoteProtocolError("tally counts must be a map with text keys")
        try:
            return cls(
                outcome=obj["outcome"],
                counts=counts,
                participants=obj["participants"],
                eligible=obj["eligible"],
                quorum_met=obj["quorum_met"],
                fragile=obj["fragile"],
            )
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"invalid tally: {exc}") from None


def _supermajority(spec: RuleSpec, c: Mapping[str, int], p: int, e: int) -> str:
    threshold = spec.threshold
    if threshold is None:  # RuleSpec refuses this; kept so the types need no assert
        raise LocalProtocolError("a supermajority needs a threshold")
    y = c["yes"]
    base = y + c["no"] if spec.base == "cast" else p if spec.base == "participating" else e
    adopted = base > 0 and y * threshold.den >= threshold.num * base
    return "adopted" if adopted else "rejected"


def _decide(spec: RuleSpec, c: Mapping[str, int], p: int, e: int, quorum_met: bool) -> str:
    rule = spec.rule
    if rule == "advice":
        return "advice_recorded"
    if rule == "sense_check":
        return "sense_only"
    if rule == "consensus" and c["block"] >= spec.block_threshold:
        return "blocked"  # before quorum: GOVERNANCE.md lists the block first
    if not quorum_met:
        return "no_quorum"
    if rule == "majority":
        y, n = c["yes"], c["no"]
        if y + n > 0 and 2 * y > y + n:
            return "adopted"
        return "tied" if y + n > 0 and y == n else "rejected"
    if rule == "supermajority":
        return _supermajority(spec, c, p, e)
    if rule == "consent":
        y = c["consent"] + c["concern"]
        return "adopted" if c["objection"] == 0 and y >= 1 else "objected"
    # consensus, no block at the threshold
    return "adopted" if c["disagree"] == 0 and c["agree"] >= 1 else "no_consensus"


def tally(spec: RuleSpec, electorate: AbstractSet[bytes], positions: Mapping[bytes, str]) -> Tally:
    """Compute the outcome of a decision under ``spec`` (see the module docstring).

    ``positions`` maps a member key to that member's latest stance in scope; keys outside
    ``electorate`` are ignored. The result does not depend on the mapping's order.

    Raises:
        LocalProtocolError: a counted position has a stance that is not one of the rule's
            (the caller should have dropped it with :func:`position_error`).
    """
    allowed = STANCES[spec.rule]
    counts = dict.fromkeys(allowed, 0)
    for member, stance in positions.items():
        if member not in electorate:
            continue
        if type(stance) is not str or stance not in allowed:
            raise LocalProtocolError(
                f"position of {member.hex()[:16]} has stance {stance!r}, not one of {spec.rule}"
            )
        counts[stance] += 1
    p, e = sum(counts.values()), len(electorate)
    quorum_met = p * spec.quorum.den >= spec.quorum.num * e
    return Tally(
        outcome=_decide(spec, counts, p, e, quorum_met),
        counts=counts,
        participants=p,
        eligible=e,
        quorum_met=quorum_met,
        fragile=spec.rule == "consensus" and 4 * counts["stand_aside"] > p,
    )
