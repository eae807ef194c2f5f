"""Peer scores: misbehaving peers are refused, and forgiven with time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2pnet.peers import BAN_AT, CEILING, DECAY_S, MAX_PEERS, PENALTY, PeerScores

PEER = b"p" * 32


def test_repeated_violations_ban_a_peer_and_time_forgives() -> None:
    scores = PeerScores()
    scores.misbehaved(PEER, now=0.0)
    assert not scores.banned(PEER, now=0.0)  # one bad session is not a ban
    for _ in range(-BAN_AT // PENALTY):
        scores.misbehaved(PEER, now=0.0)
    assert scores.banned(PEER, now=0.0)  # -40
    assert scores.banned(PEER, now=DECAY_S * 9)  # -31
    assert not scores.banned(PEER, now=DECAY_S * 11)  # -29
    assert scores.score(PEER, now=DECAY_S * 1000) == 0.0


def test_good_sessions_build_credit_up_to_a_ceiling() -> None:
    scores = PeerScores()
    for _ in range(100):
        scores.completed(PEER, now=0.0)
    assert scores.score(PEER, now=0.0) == CEILING
    scores.misbehaved(PEER, now=0.0)
    assert not scores.banned(PEER, now=0.0)


def test_unknown_peers_are_neutral() -> None:
    assert PeerScores().score(b"x", now=5.0) == 0.0
    assert not PeerScores().banned(b"x", now=5.0)


def test_memory_is_bounded_against_peer_id_churn() -> None:
    scores = PeerScores()
    for i in range(MAX_PEERS + 50):
        scores.misbehaved(i.to_bytes(4, "big"), now=float(i))
    assert len(scores._entries) == MAX_PEERS


@given(st.lists(st.booleans(), max_size=50), st.floats(min_value=0, max_value=1e6))
def test_score_stays_within_bounds(events: list[bool], later: float) -> None:
    scores = PeerScores()
    for good in events:
        (scores.completed if good else scores.misbehaved)(PEER, now=0.0)
    assert -PENALTY * len(events) <= scores.score(PEER, now=later) <= CEILING
