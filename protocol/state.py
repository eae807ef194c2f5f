"""The shared state of a network, as the fold produces it: frozen, comparable values.

These are *views*: :mod:`protocol.fold` keeps mutable records while it folds and builds
these once per read. Two nodes holding the same ops build equal ``NetworkState`` values.
Op bodies beyond what the state needs (long texts, reasons) stay in the store and are
fetched by op id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.rules import RuleSpec, Tally
from protocol.settings import Settings

__all__ = [
    "Agreement",
    "AgreementVersion",
    "Decision",
    "Member",
    "NetworkState",
    "Position",
]


@dataclass(frozen=True, slots=True)
class Member:
    """A member: an individual or an organisation, identified by its public key.

    ``status`` is ``active``, ``left`` or ``removed``; ``cutoff`` is the highest ``seq``
    of theirs that stays valid after they left or were removed.
    """

    key: bytes
    display_name: str
    kind: str
    status: str
    admitted_by: bytes  # the op that admitted them: genesis, member_admit or a close
    invited_by: bytes | None
    offers: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    verified_by: frozenset[bytes] = frozenset()
    peer_id: str | None = None
    addresses: tuple[str, ...] = ()
    exit_op: bytes | None = None
    cutoff: int | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class AgreementVersion:
    """One version of an agreement's text (the text itself stays in the store)."""

    op_id: bytes
    agreement: bytes
    number: int
    title: str
    author: bytes
    adopted_by: bytes | None  # the decision that adopted it
    endorsed_by: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class Agreement:
    """An agreement (charter, ethical standards, …): its versions and the adopted one."""

    agreement_id: bytes  # the op id of its first version
    kind: str
    versions: tuple[bytes, ...]
    adopted: bytes | None  # the version in force


@dataclass(frozen=True, slots=True)
class Position:
    """A member's stance on a proposal, as one position op states it."""

    member: bytes
    stance: str
    op_id: bytes
    seq: int
    round: bytes


@dataclass(frozen=True, slots=True)
class Decision:
    """A proposal and everything that happened to it.

    ``status``: ``open``, ``closed`` or ``withdrawn``. ``outcome`` is the tally every node
    recomputes at the close; ``claimed`` is what the closer wrote; ``disputed`` when they
    differ. ``counted`` are the positions the outcome was computed from.
    """

    decision_id: bytes
    proposer: bytes
    title: str
    kind: str
    subject: Any
    rule: RuleSpec
    closes_at: int
    electorate: frozenset[bytes]
    rounds: tuple[bytes, ...]
    positions: tuple[Position, ...]
    status: str
    close_op: bytes | None = None
    closed_by: bytes | None = None
    outcome: Tally | None = None
    claimed: Tally | None = None
    disputed: bool = False
    counted: tuple[Position, ...] = ()

    @property
    def current_round(self) -> bytes:
        return self.rounds[-1]


@dataclass(frozen=True, slots=True)
class NetworkState:
    """Everything a network is, as of a set of ops."""

    network_id: bytes
    genesis_id: bytes
    name: str
    network_type: str
    purpose: str
    settings: Settings
    members: Mapping[bytes, Member]
    agreements: Mapping[bytes, Agreement]
    versions: Mapping[bytes, AgreementVersion]
    decisions: Mapping[bytes, Decision]
    comments: Mapping[bytes, tuple[bytes, ...]]
    epochs: tuple[bytes, ...]
    equivocators: frozenset[bytes]
    applied: int
    invalid: int

    def active_members(self) -> frozenset[bytes]:
        return frozenset(k for k, m in self.members.items() if m.active)

    @property
    def current_epoch(self) -> bytes:
        """The epoch writers use: the newest announced (fold order)."""
        return self.epochs[-1]
