"""Peer scores: how a node remembers peers that broke the sync protocol.

Every session that ends in :class:`~protocol.RemoteProtocolError` costs the peer
:data:`PENALTY` points; a session that completes earns :data:`REWARD`, up to
:data:`CEILING`. Points decay towards zero by one per :data:`DECAY_S` seconds, so an old
fault is forgiven. A peer at or below :data:`BAN_AT` is refused until it decays back.
Time is passed in (the caller's clock): the table itself is pure and kept in memory; the
networking layer owns it (one table per network, keyed by per-network peer ids, so
scores never link a person's networks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BAN_AT", "PeerScores"]

PENALTY = 10
REWARD = 1
CEILING = 20
BAN_AT = -30
DECAY_S = 60.0
MAX_PEERS = 10_000


@dataclass(slots=True)
class _Entry:
    score: float
    at: float


@dataclass(slots=True)
class PeerScores:
    """Scores of the peers of one network."""

    _entries: dict[bytes, _Entry] = field(default_factory=dict)

    def score(self, peer: bytes, now: float) -> float:
        entry = self._entries.get(peer)
        if entry is None:
            return 0.0
        decay = max(now - entry.at, 0.0) / DECAY_S
        if entry.score > 0:
            return max(entry.score - decay, 0.0)
        return min(entry.score + decay, 0.0)

    def _set(self, peer: bytes, score: float, now: float) -> None:
        if peer not in self._entries and len(self._entries) >= MAX_PEERS:
            # Forget the peer closest to neutral: bounded memory against id churn.
            neutral = min(self._entries, key=lambda p: abs(self.score(p, now)))
            del self._entries[neutral]
        self._entries[peer] = _Entry(score, now)

    def misbehaved(self, peer: bytes, now: float) -> float:
        """Record a session the peer ended with a protocol violation."""
        score = self.score(peer, now) - PENALTY
        self._set(peer, score, now)
        return score

    def completed(self, peer: bytes, now: float) -> float:
        """Record a session that finished cleanly."""
        score = min(self.score(peer, now) + REWARD, CEILING)
        self._set(peer, score, now)
        return score

    def banned(self, peer: bytes, now: float) -> bool:
        """Whether to refuse this peer now."""
        return self.score(peer, now) <= BAN_AT
