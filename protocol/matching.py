"""Partner matching: which members offer what another member needs (DOMAIN.md).

Offers and needs share one vocabulary (:data:`protocol.vocabulary.CAPABILITIES`), so a
match is an exact word shared between one member's needs and other members' offers.
Only active members take part; a member is never matched with itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.state import NetworkState

__all__ = ["Match", "matches"]


@dataclass(frozen=True, slots=True)
class Match:
    """``member`` needs ``capability``; ``offered_by`` can bring it (sorted keys)."""

    member: bytes
    capability: str
    offered_by: tuple[bytes, ...]


def matches(state: NetworkState) -> list[Match]:
    """Every need of every active member, with who offers it; unmatched needs included
    (``offered_by`` empty), so the UI can show what the network still lacks.

    Sorted by member key, then capability: the same list on every node.
    """
    active = [m for _, m in sorted(state.members.items()) if m.active]
    offers: dict[str, list[bytes]] = {}
    for member in active:
        for capability in member.offers:
            offers.setdefault(capability, []).append(member.key)
    return [
        Match(
            member.key,
            capability,
            tuple(k for k in offers.get(capability, []) if k != member.key),
        )
        for member in active
        for capability in sorted(member.needs)
    ]
