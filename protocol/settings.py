"""Governance settings of a network, and the defaults for each network type.

The genesis op sets them; afterwards only a passed ``governance_change`` decision
changes them (the new settings are the proposal's subject). GOVERNANCE.md's table
"Defaults by network type" is :func:`defaults_for`. Where the table is silent we chose
(docs/decisions.md): quorum one half for binding rules; deadlines of 7 days, 2 days for
``joint_action`` ("short deadlines"); a 72-hour close grace; emergency removal by 2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from protocol._errors import LocalProtocolError, RemoteProtocolError
from protocol.rules import Ratio, RuleSpec

__all__ = ["ADMISSION_MODES", "Settings", "defaults_for"]

ADMISSION_MODES = ("any_member", "decision")
_HOUR_MS = 3_600_000
_MAX_MS = 365 * 24 * _HOUR_MS
_MAX_K = 1000
_KEYS = (
    "admission",
    "admission_rule",
    "charter_rule",
    "closes_in_ms",
    "emergency_k",
    "grace_ms",
    "money_rule",
    "ordinary_rule",
    "removal_rule",
)


@dataclass(frozen=True)
class Settings:
    """How a network decides.

    - ``admission``: ``any_member`` (an admit op by any member suffices) or ``decision``
      (an ``admission`` proposal under ``admission_rule`` must pass).
    - ``ordinary_rule``: the default rule offered for general and role decisions.
    - ``removal_rule``: the rule every removal proposal must use.
    - ``charter_rule``: the rule for agreement adoption and governance changes.
    - ``money_rule``: for spending above a limit (used by the ledger, later).
    - ``emergency_k``: distinct members whose ``emergency_remove`` removes a member (>= 2).
    - ``grace_ms``: after the deadline plus this, any member of the electorate may close.
    - ``closes_in_ms``: the default deadline offered for new proposals.

    Raises:
        LocalProtocolError: a value out of range.
    """

    admission: str
    admission_rule: RuleSpec
    ordinary_rule: RuleSpec
    removal_rule: RuleSpec
    charter_rule: RuleSpec
    money_rule: RuleSpec
    emergency_k: int = 2
    grace_ms: int = 72 * _HOUR_MS
    closes_in_ms: int = 7 * 24 * _HOUR_MS

    def __post_init__(self) -> None:
        if self.admission not in ADMISSION_MODES:
            raise LocalProtocolError(f"admission must be one of {', '.join(ADMISSION_MODES)}")
        if type(self.emergency_k) is not int or not 2 <= self.emergency_k <= _MAX_K:
            raise LocalProtocolError(f"emergency removal needs 2 to {_MAX_K} members")
        for name in ("grace_ms", "closes_in_ms"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= _MAX_MS:
                raise LocalProtocolError(f"{name} must be 0 to one year in milliseconds")

    def rule_for(self, kind: str) -> RuleSpec | None:
        """The rule a proposal of ``kind`` must use, or None where the proposer chooses."""
        return {
            "admission": self.admission_rule,
            "removal": self.removal_rule,
            "agreement_adoption": self.charter_rule,
            "governance_change": self.charter_rule,
        }.get(kind)

    def to_wire(self) -> dict[str, Any]:
        return {
            "admission": self.admission,
            "admission_rule": self.admission_rule.to_wire(),
            "charter_rule": self.charter_rule.to_wire(),
            "closes_in_ms": self.closes_in_ms,
            "emergency_k": self.emergency_k,
            "grace_ms": self.grace_ms,
            "money_rule": self.money_rule.to_wire(),
            "ordinary_rule": self.ordinary_rule.to_wire(),
            "removal_rule": self.removal_rule.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Settings:
        """Parse settings strictly.

        Raises:
            RemoteProtocolError: unknown or missing keys, wrong types, invalid values.
        """
        if type(obj) is not dict or tuple(obj) != _KEYS:
            raise RemoteProtocolError(f"settings must have exactly the keys {', '.join(_KEYS)}")
        try:
            return cls(
                admission=obj["admission"],
                admission_rule=RuleSpec.from_wire(obj["admission_rule"]),
                ordinary_rule=RuleSpec.from_wire(obj["ordinary_rule"]),
                removal_rule=RuleSpec.from_wire(obj["removal_rule"]),
                charter_rule=RuleSpec.from_wire(obj["charter_rule"]),
                money_rule=RuleSpec.from_wire(obj["money_rule"]),
                emergency_k=obj["emergency_k"],
                grace_ms=obj["grace_ms"],
                closes_in_ms=obj["closes_in_ms"],
            )
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"invalid settings: {exc}") from None


_HALF = Ratio(1, 2)
_TWO_THIRDS_ELIGIBLE = RuleSpec("supermajority", _HALF, Ratio(2, 3), "eligible")
_CONSENT = RuleSpec("consent", _HALF)


def defaults_for(network_type: str) -> Settings:
    """GOVERNANCE.md's defaults for a network type.

    Raises:
        LocalProtocolError: unknown network type.
    """
    base = Settings(
        admission="any_member",
        admission_rule=_CONSENT,
        ordinary_rule=_CONSENT,
        removal_rule=_TWO_THIRDS_ELIGIBLE,
        charter_rule=_TWO_THIRDS_ELIGIBLE,
        money_rule=_CONSENT,
    )
    if network_type == "information_exchange":
        majority = RuleSpec("majority", _HALF)
        return replace(base, ordinary_rule=majority, admission_rule=majority, money_rule=majority)
    if network_type == "coordination":
        return base
    if network_type == "joint_funding":
        money = RuleSpec("supermajority", _HALF, Ratio(2, 3), "cast")
        return replace(base, admission="decision", money_rule=money)
    if network_type == "joint_action":
        return replace(base, closes_in_ms=2 * 24 * _HOUR_MS)
    if network_type == "shared_identity":
        consensus = RuleSpec("consensus", _HALF, block_threshold=1)
        return replace(
            base,
            admission="decision",
            admission_rule=consensus,
            ordinary_rule=consensus,
            money_rule=consensus,
        )
    raise LocalProtocolError(f"unknown network type {network_type!r}")
