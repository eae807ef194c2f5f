"""What a person types, parsed: references to networks, members, decisions and
agreements by name or id prefix (like git), rules, and names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from p2pnet.errors import AmbiguousReference, NodeError, NotFound
from protocol import LocalProtocolError
from protocol.rules import Ratio, RuleSpec

__all__ = ["by_long_prefix", "check_name", "parse_rule", "resolve"]


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise NodeError("a name is 1 to 100 characters")
    return name


def parse_rule(text: str, *, quorum: str | None = None, block_threshold: int = 1) -> RuleSpec:
    """``consent``, ``consensus``, ``majority``, ``advice``, ``sense_check`` or
    ``supermajority:NUM/DEN:BASE`` (base cast, participating or eligible).

    Raises:
        NodeError: with the accepted forms.
    """
    try:
        q = _ratio(quorum) if quorum else Ratio(1, 2)
        if text.startswith("supermajority"):
            parts = text.split(":")
            if len(parts) != 3:
                raise NodeError("write a supermajority as supermajority:2/3:eligible")
            return RuleSpec("supermajority", q, _ratio(parts[1]), parts[2])
        return RuleSpec(text, q, block_threshold=block_threshold)
    except LocalProtocolError as exc:
        raise NodeError(str(exc)) from None


def _ratio(text: str) -> Ratio:
    num, _, den = text.partition("/")
    if not (num.isdigit() and den.isdigit()):
        raise NodeError(f"{text!r} is not a fraction like 1/2")
    return Ratio(int(num), int(den))


def by_long_prefix(ref: str, ids: Iterable[bytes]) -> bytes | None:
    """The one id that a hex reference of 8+ digits begins, if exactly one (the fast
    path: scripts and the UI pass ids; a title of 8+ hex digits that is also an id prefix
    is a 1-in-4-billion coincidence)."""
    wanted = ref.strip().lower()
    if len(wanted) < 8 or len(wanted) % 2 or any(c not in "0123456789abcdef" for c in wanted):
        return None
    prefix = bytes.fromhex(wanted)
    found = [k for k in ids if k.startswith(prefix)]
    return found[0] if len(found) == 1 else None


def resolve(what: str, ref: str, candidates: Mapping[bytes, str]) -> bytes:
    """A name (case-insensitive, exact) or a hex id prefix of at least 4 digits."""
    wanted = ref.strip().casefold()
    size = len(wanted)
    if size == 64 and all(c in "0123456789abcdef" for c in wanted):
        whole = bytes.fromhex(wanted)
        if whole in candidates:
            return whole  # a whole id is never ambiguous, whatever names say
    # Compare lengths first: casefolding every title on every action was the slowest part
    # of a local action in a network with a thousand decisions.
    by_name = [
        k
        for k, label in candidates.items()
        if len(label) >= size // 2 and label.casefold() == wanted
    ]
    by_prefix: list[bytes] = []
    if size >= 4 and all(c in "0123456789abcdef" for c in wanted):
        even = bytes.fromhex(wanted[: size - size % 2])
        by_prefix = [k for k in candidates if k.startswith(even)]
        if size % 2:
            by_prefix = [k for k in by_prefix if k.hex().startswith(wanted)]
    # Names are chosen by members: one that spells another's id prefix (the short ids the
    # command line prints) must not take that id over. Both matching different things is
    # ambiguous, whichever is found first.
    found = (
        list(dict.fromkeys(by_name + by_prefix)) if by_name and by_prefix else by_name or by_prefix
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no {what} matches {ref!r}")
    listed = ", ".join(f"{candidates[k]} ({k.hex()[:8]})" for k in sorted(found))
    raise AmbiguousReference(f"{ref!r} matches several: {listed}; give more of the id")
