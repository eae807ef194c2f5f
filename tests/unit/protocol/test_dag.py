"""protocol.dag: the DAG rules, waiting for parents, equivocation and causal queries.

Ops are hand-signed with :func:`protocol.sign_op` (real signatures, arbitrary fields), so
the DAG sees exactly the seq, lamport and parents each test means. The causal queries
are checked against a brute-force ancestor walk over random DAGs, with and without an
equivocating author (which sends :meth:`Dag.in_past` down its graph-walk fallback).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol.dag
from crypto import Identity
from protocol import VerifiedOp, sign_op
from protocol.build import next_op
from protocol.dag import Dag
from protocol.signed import MAX_PARENTS

NET = bytes(range(16))
ANA, BEN, CAI, DAN, EVE = (Identity(bytes([i]) * 32) for i in (1, 2, 3, 4, 5))
AUTHORS = (ANA, BEN, CAI, DAN)


def _sign(
    author: Identity,
    *,
    seq: int,
    parents: Sequence[VerifiedOp],
    lamport: int | None = None,
    body: dict[str, Any] | None = None,
) -> VerifiedOp:
    """An op by ``author``; ``lamport`` defaults to the valid one (1 + the parents' max)."""
    if lamport is None:
        lamport = 1 + max((p.lamport for p in parents), default=0)
    return sign_op(
        author,
        net=NET,
        seq=seq,
        lamport=lamport,
        parents=[p.op_id for p in parents],
        time=0,
        type="comment",
        body=body if body is not None else {"n": 0},
    )


def _genesis(body: dict[str, Any] | None = None) -> VerifiedOp:
    return sign_op(
        ANA,
        net=NET,
        seq=1,
        lamport=1,
        parents=[],
        time=0,
        type="genesis",
        body=body if body is not None else {"name": "net"},
    )


GENESIS = _genesis()


def _dag(*ops: VerifiedOp) -> Dag:
    dag = Dag(GENESIS.op_id)
    assert dag.add(GENESIS) == [GENESIS]
    for op in ops:
        dag.add(op)
    return dag


def _rejected_ids(dag: Dag) -> list[bytes]:
    return [r.op_id for r in dag.rejected]


# -- the genesis ---------------------------------------------------------------------------


def test_the_committed_genesis_is_indexed() -> None:
    dag = Dag(GENESIS.op_id)
    assert dag.add(GENESIS) == [GENESIS]
    assert GENESIS.op_id in dag
    assert len(dag) == 1
    assert dag.heads() == [GENESIS.op_id]
    assert dag.latest(ANA.public.key) == (1, GENESIS.op_id)
    assert dag.lamport(GENESIS.op_id) == 1
    assert dag.seq(GENESIS.op_id) == 1
    assert dag.author(GENESIS.op_id) == ANA.public.key
    assert dag.order_key(GENESIS.op_id) == (1, GENESIS.op_id)
    assert dag.rejected == []


def test_only_the_committed_genesis_may_be_parentless() -> None:
    other = _genesis({"name": "another network"})
    stray = _sign(BEN, seq=1, parents=[])  # parentless, lamport 1, seq 1: not the genesis
    dag = _dag()
    assert dag.add(other) == []
    assert dag.add(stray) == []
    assert other.op_id not in dag
    assert stray.op_id not in dag
    assert _rejected_ids(dag) == [other.op_id, stray.op_id]
    assert "genesis" in dag.rejected[0].reason
    assert len(dag) == 1


def test_a_dag_without_its_genesis_indexes_nothing() -> None:
    dag = Dag(GENESIS.op_id)
    assert dag.add(_genesis({"name": "impostor"})) == []
    assert len(dag) == 0
    assert dag.heads() == []
    assert dag.latest(ANA.public.key) is None


@pytest.mark.parametrize(("seq", "lamport"), [(1, 2), (2, 1), (2, 2)])
def test_the_genesis_must_have_lamport_1_and_seq_1(seq: int, lamport: int) -> None:
    bad = sign_op(ANA, net=NET, seq=seq, lamport=lamport, parents=[], time=0, type="g", body={})
    dag = Dag(bad.op_id)
    assert dag.add(bad) == []
    assert bad.op_id not in dag
    assert _rejected_ids(dag) == [bad.op_id]


# -- lamport -------------------------------------------------------------------------------


@pytest.mark.parametrize("lamport", [1, 2, 3, 5, 9])
def test_lamport_must_be_one_plus_the_parents_highest(lamport: int) -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])  # lamport 2
    c1 = _sign(CAI, seq=1, parents=[b1])  # lamport 3
    # Parents at lamport 1 and 3: only 4 is valid (1 + max, not 1 + min, not anything above).
    good = _sign(DAN, seq=1, parents=[GENESIS, c1])
    assert good.lamport == 4
    bad = _sign(DAN, seq=1, parents=[GENESIS, c1], lamport=lamport, body={"bad": True})
    dag = _dag(b1, c1)
    assert dag.add(bad) == []
    assert bad.op_id not in dag
    assert _rejected_ids(dag) == [bad.op_id]
    assert "lamport" in dag.rejected[0].reason
    assert dag.add(good) == [good]
    assert dag.lamport(good.op_id) == 4


def test_a_child_of_a_rejected_op_waits_forever() -> None:
    bad = _sign(BEN, seq=1, parents=[GENESIS], lamport=7)
    child = _sign(CAI, seq=1, parents=[bad])
    dag = _dag(bad)
    assert dag.add(child) == []
    assert child.op_id not in dag
    assert dag.waiting == 1
    assert dag.missing() == {bad.op_id}
    # Offering the rejected parent again changes nothing.
    assert dag.add(bad) == []
    assert dag.waiting == 1
    assert bad.op_id not in dag
    assert child.op_id not in dag


def test_a_rejected_op_among_waiting_ops_does_not_block_the_others() -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    bad = _sign(CAI, seq=1, parents=[b1], lamport=9)
    good = _sign(DAN, seq=1, parents=[b1])
    dag = _dag(bad, good)
    assert dag.waiting == 2
    assert set(dag.add(b1)) == {b1, good}
    assert dag.waiting == 0
    assert _rejected_ids(dag) == [bad.op_id]


# -- the author's chain --------------------------------------------------------------------


def test_the_author_chain_accepts_consecutive_seqs() -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    b2 = _sign(BEN, seq=2, parents=[b1])
    c1 = _sign(CAI, seq=1, parents=[GENESIS])
    b3 = _sign(BEN, seq=3, parents=[b2, c1])
    dag = _dag(b1, b2, c1, b3)
    assert dag.rejected == []
    assert len(dag) == 5
    assert dag.latest(BEN.public.key) == (3, b3.op_id)


def test_genesis_author_continues_the_chain_from_the_genesis() -> None:
    a2 = _sign(ANA, seq=2, parents=[GENESIS])
    a_again = _sign(ANA, seq=1, parents=[GENESIS])  # seq 1 again: an equivocation, kept
    dag = _dag(a2, a_again)
    assert dag.rejected == []
    assert a2.op_id in dag
    assert a_again.op_id in dag
    assert dag.equivocators() == {ANA.public.key}


def test_the_author_chain_rejects_a_missing_previous_op() -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    b2 = _sign(BEN, seq=2, parents=[b1])
    c1 = _sign(CAI, seq=1, parents=[GENESIS])
    cases = {
        # seq 2 whose parents do not include the author's seq 1
        "skips_own_op": _sign(BEN, seq=2, parents=[c1], body={"k": 1}),
        # seq 3 naming seq 1: a gap
        "gap": _sign(BEN, seq=3, parents=[b1], body={"k": 2}),
        # seq 3 naming another author's op with seq 2 — none exists; use c1 (seq 1) + b1
        "names_only_older": _sign(BEN, seq=3, parents=[b1, c1], body={"k": 3}),
        # a first op of a new author with seq 2
        "new_author_seq_2": _sign(DAN, seq=2, parents=[b2]),
        # a known author's seq 2 naming another author's seq 1 op only
        "other_authors_seq_1": _sign(CAI, seq=2, parents=[b1], body={"k": 4}),
    }
    dag = _dag(b1, b2, c1)
    for op in cases.values():
        assert dag.add(op) == []
        assert op.op_id not in dag
    assert _rejected_ids(dag) == [op.op_id for op in cases.values()]
    assert all("previous op" in r.reason for r in dag.rejected)
    assert dag.latest(DAN.public.key) is None


def test_a_seq_above_the_field_width_is_rejected() -> None:
    # A version-vector field holds 24 bits; a larger seq is refused before the chain
    # check (a real chain that long would need 16.7 million ops).
    huge = _sign(BEN, seq=(1 << 24), parents=[GENESIS])
    dag = _dag()
    assert dag.add(huge) == []
    assert _rejected_ids(dag) == [huge.op_id]
    assert "seq" in dag.rejected[0].reason


# -- waiting for parents -------------------------------------------------------------------


def _diamond() -> list[VerifiedOp]:
    """genesis <- b1, c1 <- b2 (names c1) <- d1 (names b2, c1): five ops."""
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    c1 = _sign(CAI, seq=1, parents=[GENESIS])
    b2 = _sign(BEN, seq=2, parents=[b1, c1])
    d1 = _sign(DAN, seq=1, parents=[b2, c1])
    return [GENESIS, b1, c1, b2, d1]


def test_ops_become_ready_in_any_arrival_order() -> None:
    ops = _diamond()
    for order in itertools.permutations(ops):
        dag = Dag(GENESIS.op_id)
        indexed: list[VerifiedOp] = []
        for op in order:
            ready = dag.add(op)
            assert (op in ready) == all(p in dag for p in op.parents), order
            indexed.extend(ready)
        assert sorted(o.op_id for o in indexed) == sorted(o.op_id for o in ops), order
        # Returned parents first: each op follows all of its parents.
        position = {o.op_id: n for n, o in enumerate(indexed)}
        for op in indexed:
            assert all(position[p] < position[op.op_id] for p in op.parents), order
        assert dag.waiting == 0
        assert dag.missing() == set()
        assert dag.rejected == []
        assert dag.heads() == [ops[-1].op_id]


def test_an_op_with_two_missing_parents_waits_for_both() -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    c1 = _sign(CAI, seq=1, parents=[GENESIS])
    d1 = _sign(DAN, seq=1, parents=[b1, c1])
    dag = _dag(d1)
    assert dag.waiting == 1
    assert dag.missing() <= {b1.op_id, c1.op_id}
    assert dag.missing()
    assert dag.add(c1) == [c1]
    assert dag.waiting == 1
    assert d1.op_id not in dag
    assert dag.missing() == {b1.op_id}
    assert dag.add(b1) == [b1, d1]
    assert dag.waiting == 0
    assert dag.missing() == set()


def test_a_long_chain_delivered_backwards_arrives_at_once() -> None:
    chain = [GENESIS]
    for seq in range(1, 60):
        chain.append(_sign(BEN, seq=seq, parents=[chain[-1]]))
    dag = Dag(GENESIS.op_id)
    for op in reversed(chain[1:]):
        assert dag.add(op) == []
    assert dag.waiting == len(chain) - 1
    assert dag.add(GENESIS) == chain
    assert dag.waiting == 0
    assert dag.latest(BEN.public.key) == (59, chain[-1].op_id)


def test_add_all_returns_everything_that_became_indexed() -> None:
    ops = _diamond()
    dag = Dag(GENESIS.op_id)
    assert set(dag.add_all(reversed(ops))) == set(ops)


# -- duplicates ----------------------------------------------------------------------------


def test_duplicates_are_no_ops() -> None:
    ops = _diamond()
    dag = Dag(GENESIS.op_id)
    assert dag.add(ops[4]) == []  # waits
    assert dag.add(ops[4]) == []  # a duplicate of a waiting op
    assert dag.waiting == 1
    dag.add_all(ops)
    heads, size = dag.heads(), len(dag)
    for op in ops:
        assert dag.add(op) == []
    assert dag.heads() == heads
    assert len(dag) == size
    assert dag.waiting == 0
    assert dag.rejected == []


def test_offering_a_rejected_op_again_lists_it_once() -> None:
    """``rejected`` is bounded by distinct bad ops, not by how often a peer resends one."""
    bad = _sign(BEN, seq=1, parents=[GENESIS], lamport=5)
    dag = _dag()
    for _ in range(3):
        assert dag.add(bad) == []
    assert _rejected_ids(dag) == [bad.op_id]


def test_the_memory_of_rejected_ops_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond MAX_REJECTED_REMEMBERED ids the memory starts over: a member sending signed
    ops that break the rules cannot fill memory; a copy of a forgotten one is only
    rejected again."""
    monkeypatch.setattr(protocol.dag, "MAX_REJECTED_REMEMBERED", 2)
    bad = [_sign(BEN, seq=1, parents=[GENESIS], lamport=5 + i) for i in range(3)]
    dag = _dag()
    for op in bad:
        assert dag.add(op) == []
        assert len(dag._rejected) <= 2
    assert not dag.knows(bad[0].op_id)  # forgotten when the third came
    assert dag.knows(bad[2].op_id)
    dag.rejected.clear()  # as a long-lived caller does once it has read them
    assert dag.add(bad[2]) == []  # remembered: dropped as a copy
    assert dag.rejected == []
    assert dag.add(bad[0]) == []  # forgotten: checked and rejected again
    assert _rejected_ids(dag) == [bad[0].op_id]
    assert len(dag) == 1  # the genesis only


# -- the waiting bound ---------------------------------------------------------------------


def test_the_waiting_bound_raises_and_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol.dag, "MAX_WAITING", 3)
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    orphans = [_sign(c, seq=1, parents=[b1]) for c in (CAI, DAN, EVE)]
    extra = _sign(BEN, seq=2, parents=[b1])
    dag = _dag()
    for op in orphans:
        assert dag.add(op) == []
    assert dag.waiting == 3
    with pytest.raises(OverflowError):
        dag.add(extra)
    assert dag.waiting == 3
    assert extra.op_id not in dag
    # A duplicate of a waiting op is still a no-op, not an overflow.
    assert dag.add(orphans[0]) == []
    # The parent arrives: the waiting ops are indexed; the refused one was not kept.
    assert set(dag.add(b1)) == {b1, *orphans}
    assert extra.op_id not in dag
    assert dag.waiting == 0
    # Now that its parent is known it no longer needs to wait.
    assert dag.add(extra) == [extra]


def test_ops_with_known_parents_pass_a_full_waiting_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol.dag, "MAX_WAITING", 1)
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    c1 = _sign(CAI, seq=1, parents=[GENESIS])
    orphan = _sign(DAN, seq=1, parents=[b1])
    dag = _dag(orphan)
    assert dag.waiting == 1
    assert dag.add(c1) == [c1]


# -- equivocation --------------------------------------------------------------------------


def test_equivocation_keeps_both_ops_and_flags_the_author() -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    fork_x = _sign(BEN, seq=2, parents=[b1], body={"fork": "x"})
    fork_y = _sign(BEN, seq=2, parents=[b1], body={"fork": "y"})
    c1 = _sign(CAI, seq=1, parents=[fork_x, fork_y])
    b3 = _sign(BEN, seq=3, parents=[fork_x])
    for order in itertools.permutations([b1, fork_x, fork_y, c1, b3]):
        dag = _dag(*order)
        assert len(dag) == 6
        assert dag.rejected == []
        assert dag.equivocators() == {BEN.public.key}
        assert sorted(dag.ops_of(BEN.public.key, 2)) == sorted([fork_x.op_id, fork_y.op_id])
        assert dag.ops_of(BEN.public.key, 1) == [b1.op_id]
        assert dag.latest(BEN.public.key) == (3, b3.op_id)
        # b3 descends from fork_x only; c1 from both.
        assert dag.in_past(fork_x.op_id, b3.op_id)
        assert not dag.in_past(fork_y.op_id, b3.op_id)
        assert dag.in_past(fork_y.op_id, c1.op_id)
        assert dag.max_seq_in_past(b3.op_id, BEN.public.key) == 3
        assert dag.max_seq_in_past(c1.op_id, BEN.public.key) == 2


def test_latest_on_a_fork_is_the_highest_id() -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    forks = [_sign(BEN, seq=2, parents=[b1], body={"fork": n}) for n in range(3)]
    dag = _dag(b1, *forks)
    assert dag.latest(BEN.public.key) == (2, max(f.op_id for f in forks))
    assert len(dag.ops_of(BEN.public.key, 2)) == 3


def test_no_equivocation_without_two_ops_at_one_seq() -> None:
    dag = _dag(*_diamond()[1:])
    assert dag.equivocators() == set()
    assert dag.ops_of(BEN.public.key, 3) == []
    assert dag.ops_of(bytes(32), 1) == []


# -- causal queries against brute force ----------------------------------------------------


def _ancestors(ops: Iterable[VerifiedOp]) -> dict[bytes, set[bytes]]:
    """Brute force: each op's causal past, itself included."""
    by_id = {o.op_id: o for o in ops}
    past: dict[bytes, set[bytes]] = {}
    for op in sorted(by_id.values(), key=lambda o: o.lamport):
        mine = {op.op_id}
        for p in op.parents:
            mine |= past[p]
        past[op.op_id] = mine
    return past


@st.composite
def random_dags(draw: st.DrawFn, *, equivocate: bool) -> list[VerifiedOp]:
    """A valid DAG rooted at GENESIS: each step an author writes on top of some ops.

    With ``equivocate``, some steps fork: the author rewrites an earlier seq of theirs
    (parents chosen among the ops before that seq's original plus its seq-1 op).
    """
    ops = [GENESIS]
    chains: dict[bytes, list[VerifiedOp]] = {ANA.public.key: [GENESIS]}
    steps = draw(st.integers(1, 24))
    for step in range(steps):
        author = draw(st.sampled_from(AUTHORS))
        chain = chains.setdefault(author.public.key, [])
        fork = equivocate and chain and draw(st.integers(0, 3)) == 0
        if fork:
            # Re-use seq s: name the author's seq s-1 op (if any) and ops outside the
            # future of the original op at s (any op not descending from it would do; we
            # pick from ops indexed before it, which cannot descend from it).
            s = draw(st.integers(1, len(chain)))
            original = chain[s - 1]
            earlier = ops[: ops.index(original)]
            required = [chain[s - 2]] if s > 1 else []
            pool = [o for o in earlier if o not in required]
            if s == 1 and not pool:
                continue
            extra = draw(st.lists(st.sampled_from(pool), max_size=3, unique=True)) if pool else []
            parents = required + extra
            if not parents:
                parents = [GENESIS]
            seq = s
        else:
            required = [chain[-1]] if chain else []
            extra = draw(
                st.lists(st.sampled_from(ops), min_size=0 if chain else 1, max_size=3, unique=True)
            )
            parents = list(dict.fromkeys(required + extra))
            seq = len(chain) + 1
        op = _sign(author, seq=seq, parents=parents, body={"step": step})
        ops.append(op)
        if not fork:
            chain.append(op)
    return ops


def _check_queries(dag: Dag, ops: list[VerifiedOp]) -> None:
    past = _ancestors(ops)
    assert len(dag) == len(ops)
    assert dag.rejected == []
    assert dag.waiting == 0
    for x in ops:
        assert set(dag.ancestors(x.op_id)) == past[x.op_id]
        chain_in_past = dag.chain_past_of(x.op_id)
        for a in ops:
            assert dag.in_past(a.op_id, x.op_id) == (a.op_id in past[x.op_id]), (a, x)
            assert chain_in_past(a.author, a.seq, a.op_id) == (a.op_id in past[x.op_id])
        for author in AUTHORS:
            key = author.public.key
            expected = max(
                (o.seq for o in ops if o.op_id in past[x.op_id] and o.author == key), default=0
            )
            assert dag.max_seq_in_past(x.op_id, key) == expected
    named = {p for o in ops for p in o.parents}
    assert dag.heads() == sorted(o.op_id for o in ops if o.op_id not in named)
    for author in AUTHORS:
        key = author.public.key
        mine = [o for o in ops if o.author == key]
        if not mine:
            assert dag.latest(key) is None
            continue
        top = max(o.seq for o in mine)
        assert dag.latest(key) == (top, max(o.op_id for o in mine if o.seq == top))
        for seq in range(1, top + 1):
            assert sorted(dag.ops_of(key, seq)) == sorted(o.op_id for o in mine if o.seq == seq)
    seqs: dict[tuple[bytes, int], int] = {}
    for o in ops:
        seqs[(o.author, o.seq)] = seqs.get((o.author, o.seq), 0) + 1
    assert dag.equivocators() == {a for (a, _), n in seqs.items() if n > 1}


@settings(max_examples=60, deadline=None)
@given(ops=random_dags(equivocate=False), seed=st.randoms(use_true_random=False))
def test_causal_queries_match_brute_force(ops: list[VerifiedOp], seed: random.Random) -> None:
    shuffled = list(ops)
    seed.shuffle(shuffled)
    dag = Dag(GENESIS.op_id)
    dag.add_all(shuffled)
    _check_queries(dag, ops)


@settings(max_examples=60, deadline=None)
@given(ops=random_dags(equivocate=True), seed=st.randoms(use_true_random=False))
def test_causal_queries_match_brute_force_with_equivocation(
    ops: list[VerifiedOp], seed: random.Random
) -> None:
    shuffled = list(ops)
    seed.shuffle(shuffled)
    dag = Dag(GENESIS.op_id)
    dag.add_all(shuffled)
    _check_queries(dag, ops)


def test_the_walk_fallback_is_exercised() -> None:
    """A hand-made case where the version vector says yes and only the walk says no."""
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    fork_x = _sign(BEN, seq=2, parents=[b1], body={"fork": "x"})
    fork_y = _sign(BEN, seq=2, parents=[b1], body={"fork": "y"})
    c1 = _sign(CAI, seq=1, parents=[fork_y])
    dag = _dag(b1, fork_x, fork_y, c1)
    # c1's vector has BEN at 2, yet fork_x is not in its past.
    assert dag.max_seq_in_past(c1.op_id, BEN.public.key) == 2
    assert not dag.in_past(fork_x.op_id, c1.op_id)
    assert dag.in_past(fork_y.op_id, c1.op_id)
    assert dag.in_past(b1.op_id, c1.op_id)


@pytest.mark.parametrize("block", [None, 2])
def test_many_authors_grow_the_vector_fields(
    block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty authors: the packed vector spans many fields; queries stay exact. With
    vectors dropped two at a time (and one unpacked block cached), parents are read back
    from packed blocks while inserting, and blocks are packed at several widths."""
    if block is not None:
        monkeypatch.setattr(protocol.dag._Vectors, "TAIL", 4)
        monkeypatch.setattr(protocol.dag._Vectors, "BLOCK", block)
        monkeypatch.setattr(protocol.dag._Vectors, "CACHED", 1)
    authors = [Identity(bytes([i, 9]) * 16) for i in range(40)]
    ops = [GENESIS]
    rng = random.Random(11)
    chains: dict[bytes, VerifiedOp] = {}
    for step in range(160):
        author = authors[rng.randrange(len(authors))]
        previous = chains.get(author.public.key)
        extra = rng.sample(ops, min(len(ops), 2))  # often far back
        parents = list(dict.fromkeys(([previous] if previous else []) + extra))
        seq = previous.seq + 1 if previous else 1
        op = _sign(author, seq=seq, parents=parents, body={"step": step})
        ops.append(op)
        chains[author.public.key] = op
    dag = Dag(GENESIS.op_id)
    dag.add_all(ops)
    past = _ancestors(ops)
    for x in ops[::7]:
        for a in ops:
            assert dag.in_past(a.op_id, x.op_id) == (a.op_id in past[x.op_id])
        for author in authors:
            key = author.public.key
            expected = max(
                (o.seq for o in ops if o.op_id in past[x.op_id] and o.author == key), default=0
            )
            assert dag.max_seq_in_past(x.op_id, key) == expected
    if block is not None:
        assert len({width for width, _ in dag._vector._blocks}) > 3


@settings(max_examples=40, deadline=None)
@given(ops=random_dags(equivocate=True), seed=st.randoms(use_true_random=False))
def test_causal_queries_match_brute_force_from_packed_vectors(
    ops: list[VerifiedOp], seed: random.Random
) -> None:
    with pytest.MonkeyPatch.context() as patch:  # (hypothesis runs the body many times)
        patch.setattr(protocol.dag._Vectors, "TAIL", 4)
        patch.setattr(protocol.dag._Vectors, "BLOCK", 2)
        patch.setattr(protocol.dag._Vectors, "CACHED", 1)
        shuffled = list(ops)
        seed.shuffle(shuffled)
        dag = Dag(GENESIS.op_id)
        dag.add_all(shuffled)
        _check_queries(dag, ops)
        assert len(dag) < 8 or dag._vector._blocks  # old vectors were made again, packed


@given(
    values=st.lists(st.integers(0, 1 << 400), max_size=400),
    reads=st.lists(st.tuples(st.integers(0, 400), st.integers(-1, 400)), max_size=60),
)
def test_vectors_read_back_what_was_appended(
    values: list[int], reads: list[tuple[int, int]]
) -> None:
    """Reads between appends: dropped vectors are computed again (here: looked up) once,
    only those not packed yet, and packed."""
    asked: list[tuple[int, int]] = []

    def compute(start: int, stop: int) -> list[int]:
        asked.append((start, stop))
        return values[start:stop]

    vectors = protocol.dag._Vectors(compute)
    when: dict[int, list[int]] = {}
    for after, index in reads:
        when.setdefault(after, []).append(index)
    for n, v in enumerate([*values, None]):
        for index in when.get(n, []):
            if 0 <= index < n:
                assert vectors[index] == values[index]
            else:
                with pytest.raises(IndexError):
                    vectors[index]
        if v is not None:
            vectors.append(v)
    assert len(vectors) == len(values)
    starts = [start for start, _ in asked]
    assert starts == sorted(set(starts))  # nothing computed twice


# -- build.next_op -------------------------------------------------------------------------


def _next(author: Identity, dag: Dag, n: int) -> VerifiedOp:
    return next_op(
        author, dag, network_id=NET, op_type="member_update", body={"display_name": f"N{n}"}, time=n
    )


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30))
def test_next_op_always_builds_ops_the_dag_accepts(steps: list[tuple[int, int]]) -> None:
    """Four authors, each with their own DAG; a step writes one op (and delivers it to
    a second author's DAG, so views differ); every op is accepted everywhere."""
    dags = [_dag() for _ in AUTHORS]
    everything = [GENESIS]
    for n, (writer, reader) in enumerate(steps):
        dag = dags[writer]
        author = AUTHORS[writer]
        before = dag.latest(author.public.key)
        heads = set(dag.heads())
        op = _next(author, dag, n)
        assert op.seq == (before[0] + 1 if before else 1)
        assert set(op.parents) >= heads or len(op.parents) == MAX_PARENTS
        if before is not None:
            assert before[1] in op.parents
        assert dag.add(op) == [op]
        everything.append(op)
        # The reader receives everything the writer holds, in a shuffled order.
        held = [o for o in everything if o.op_id in dag]
        random.Random(n).shuffle(held)
        dags[reader].add_all(held)
        assert op.op_id in dags[reader]
    full = Dag(GENESIS.op_id)
    full.add_all(reversed(everything))
    assert len(full) == len(everything)
    assert full.rejected == []
    assert full.equivocators() == set()
    for dag in dags:
        assert dag.rejected == []


def _wide_dag(width: int) -> tuple[Dag, list[VerifiedOp]]:
    """GENESIS plus ``width`` concurrent first ops of distinct authors: ``width`` heads."""
    authors = [Identity(bytes([i, 9]) * 16) for i in range(width)]
    tips = [_sign(a, seq=1, parents=[GENESIS]) for a in authors]
    return _dag(*tips), tips


def test_next_op_caps_parents_and_keeps_the_authors_previous_op() -> None:
    dag, tips = _wide_dag(MAX_PARENTS + 8)
    # BEN's previous op is an old one that is no longer a head.
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    covering = _sign(CAI, seq=1, parents=[b1])
    dag.add_all([b1, covering])
    assert b1.op_id not in dag.heads()
    assert len(dag.heads()) == MAX_PARENTS + 9
    op = _next(BEN, dag, 1)
    assert len(op.parents) == MAX_PARENTS
    assert b1.op_id in op.parents
    assert op.seq == 2
    # The others are the newest heads in fold order.
    newest = sorted((h for h in dag.heads()), key=dag.order_key, reverse=True)
    assert set(op.parents) - {b1.op_id} == set(newest[: MAX_PARENTS - 1])
    assert dag.add(op) == [op]
    assert op.lamport == 1 + max(dag.lamport(p) for p in op.parents)
    assert tips  # the wide part is what made the cap bite


def test_next_op_caps_parents_when_the_previous_op_is_a_head() -> None:
    dag, tips = _wide_dag(MAX_PARENTS + 3)
    own = tips[5]
    author = Identity(bytes([5, 9]) * 16)
    assert own.author == author.public.key
    op = _next(author, dag, 1)
    assert len(op.parents) == MAX_PARENTS
    assert own.op_id in op.parents
    assert dag.add(op) == [op]


def test_next_op_caps_parents_for_a_first_op() -> None:
    dag, _ = _wide_dag(MAX_PARENTS + 3)
    op = _next(DAN, dag, 1)
    assert op.seq == 1
    assert len(op.parents) == MAX_PARENTS
    assert dag.add(op) == [op]


def test_next_op_on_a_fork_builds_on_the_highest_id() -> None:
    b1 = _sign(BEN, seq=1, parents=[GENESIS])
    forks = [_sign(BEN, seq=2, parents=[b1], body={"fork": n}) for n in range(2)]
    dag = _dag(b1, *forks)
    op = _next(BEN, dag, 1)
    assert op.seq == 3
    assert max(f.op_id for f in forks) in op.parents
    assert dag.add(op) == [op]


@settings(max_examples=60, deadline=None)
@given(
    ops=random_dags(equivocate=True),
    seed=st.randoms(use_true_random=False),
    near=st.integers(1, 3),
    reserve=st.integers(0, 40),
)
def test_the_op_id_index_finds_every_op_and_only_those(
    ops: list[VerifiedOp], seed: random.Random, near: int, reserve: int
) -> None:
    """Op ids move from the dict of recent ops to the table ``near`` at a time: every
    indexed op is found in either (and cached back in the dict), a copy of an op long
    moved to the table is still a duplicate, and an id never indexed is not found."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(protocol.dag._IdIndex, "NEAR", near)
        patch.setattr(protocol.dag._IdIndex, "FIRST_SIZE", 2)  # grown with ops in it
        shuffled = list(ops)
        seed.shuffle(shuffled)
        dag = Dag(GENESIS.op_id)
        dag.reserve(reserve)
        for n, op in enumerate(shuffled):
            dag.add(op)
            again = seed.choice(shuffled[: n + 1])  # a copy arrives, maybe long after
            assert dag.add(again) == []
        _check_queries(dag, ops)
        index = dag._index
        for op in seed.sample(ops, len(ops)):
            assert dag.knows(op.op_id)  # first: from the table, for the tabled ones
            assert op.op_id in index.near  # found, now kept in the dict
        index._cut_near()  # back to the untabled ops only
        for op in seed.sample(ops, len(ops)):
            assert op.op_id in dag
            assert dag.lamport(op.op_id) == op.lamport
            assert dag.add(op) == []
        assert len(dag) == len(ops)
        for i in range(20):
            stranger = bytes([i]) * 32
            assert stranger not in dag
            assert not dag.knows(stranger)
            with pytest.raises(KeyError):
                dag.lamport(stranger)
        assert b"not bytes" not in dag
        if len(ops) > 3 * near:
            assert dag._index.tabled > 0  # the table was used
