"""The domain's words (DOMAIN.md), as the data model and the UI speak them."""

from __future__ import annotations

__all__ = [
    "AGREEMENT_KINDS",
    "CAPABILITIES",
    "DECISION_KINDS",
    "MEMBER_KINDS",
    "NETWORK_TYPES",
]

# Network types, with the sentence the UI shows (DOMAIN.md, "five types").
NETWORK_TYPES: dict[str, str] = {
    "information_exchange": (
        "Members share information, often at meetings one of them hosts; few joint decisions."
    ),
    "coordination": (
        "Member organisations align their policies and activities so their separate "
        "actions reinforce each other."
    ),
    "joint_funding": (
        "Members obtain and manage shared funding together; joint decisions about money."
    ),
    "joint_action": (
        "Members run a joint activity — a campaign, a service, a crisis response — "
        "with a shared plan."
    ),
    "shared_identity": (
        "A new long-term common organisation with its own vision, rules and leadership."
    ),
}

MEMBER_KINDS: tuple[str, ...] = (
    "grassroots_movement",
    "civil_society_org",
    "networking_org",
    "international_ngo",
    "un_agency",
    "media",
    "individual",
)

# Offers and needs share one vocabulary, so a need can be matched to an offer.
CAPABILITIES: tuple[str, ...] = (
    "meeting_space",
    "supporters",
    "expertise_legal",
    "expertise_media",
    "expertise_mobilisation",
    "expertise_research",
    "social_credibility",
    "international_awareness",
    "funding",
    "logistics",
)

AGREEMENT_KINDS: tuple[str, ...] = (
    "charter",
    "ethical_standards",
    "conflict_resolution",
    "meeting_agreement",
)

DECISION_KINDS: tuple[str, ...] = (
    "general",
    "admission",
    "removal",
    "agreement_adoption",
    "governance_change",
    "role",
)
