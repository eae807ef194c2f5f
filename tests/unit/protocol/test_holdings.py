"""MemoryHoldings.reload: ops a node kept, taken back from its store without their
envelopes; what it refuses (tests/property/test_fold_properties.py checks the fold)."""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any

import pytest

from protocol import LocalProtocolError, RemoteProtocolError, sign_op
from protocol.fold import fold
from protocol.holdings import MemoryHoldings
from protocol.ops import body_error
from protocol.rules import Ratio, RuleSpec
from protocol.signed import VerifiedOp
from tests.netsim import Sim, identity


class _Archive:
    def __init__(self, ops: Collection[VerifiedOp]) -> None:
        self.by_id = {op.op_id: op for op in ops}

    def envelope_of_op(self, op_id: bytes) -> bytes:
        return b"envelope" + self.by_id[op_id].signed

    def ops(self, op_ids: Collection[bytes]) -> dict[bytes, VerifiedOp]:
        return {op_id: self.by_id[op_id] for op_id in op_ids}


def _story() -> Sim:
    sim = Sim("ana")
    sim.join("ben")
    sim.admit("ana", "ben")
    sim.sync_all()
    sim.propose("ben", rule=RuleSpec("consent", Ratio(1, 2)).to_wire(), title="Meet on Thursday")
    return sim


def _holdings(sim: Sim, *, archive: bool = True) -> MemoryHoldings:
    return MemoryHoldings(
        network_id=sim.network_id,
        genesis_id=sim.genesis.op_id,
        route_tag=bytes(16),
        epochs={},
        archive=_Archive(list(sim.all_ops.values())) if archive else None,
    )


def _rows(ops: Collection[VerifiedOp]) -> list[tuple[int, bytes, bytes | None, bool]]:
    return [(op.lamport, op.signed, None, False) for op in ops]


def test_a_reload_equals_the_fold_and_keeps_one_envelope_per_op() -> None:
    sim = _story()
    ops = list(sim.all_ops.values())
    holdings = _holdings(sim)
    assert holdings.reload(reversed(_rows(ops))) == len(ops)
    assert holdings.replica.state() == fold(
        ops, network_id=sim.network_id, genesis_id=sim.genesis.op_id
    )
    assert holdings.held == len(ops)
    assert holdings.envelope_of(ops[-1].op_id) == b"envelope" + ops[-1].signed
    assert holdings.reload(_rows(ops)) == 0  # the same rows again: nothing new


def test_a_stored_lamport_that_is_not_the_ops_is_a_damaged_store() -> None:
    sim = _story()
    rows = _rows(list(sim.all_ops.values()))
    lamport, signed, _, _ = rows[-1]
    rows[-1] = (lamport + 1, signed, None, False)
    with pytest.raises(RemoteProtocolError, match="damaged"):
        _holdings(sim).reload(rows)


def test_an_op_of_another_network_is_refused() -> None:
    sim, other = _story(), Sim("ana", name="Another network")
    rows = [*_rows(list(sim.all_ops.values())), *_rows([other.genesis])]
    with pytest.raises(RemoteProtocolError):
        _holdings(sim).reload(rows)


@pytest.mark.parametrize("damage", [b"", b"\x92", b"\x92\xc4\x03abc" + bytes(70), bytes(80)])
def test_bytes_that_are_not_an_op_are_a_damaged_store(damage: bytes) -> None:
    sim = _story()
    rows = [*_rows([sim.genesis]), (2, damage, None, False)]
    with pytest.raises(RemoteProtocolError, match="damaged"):
        _holdings(sim).reload(rows)


def test_only_holdings_with_an_archive_reload() -> None:
    sim = _story()
    with pytest.raises(LocalProtocolError):
        _holdings(sim, archive=False).reload(_rows([sim.genesis]))


def test_a_damaged_row_part_way_leaves_the_replica_equal_to_the_fold_of_its_dag() -> None:
    sim = _story()
    ops = sorted(sim.all_ops.values(), key=lambda o: (o.lamport, o.op_id))
    rows = _rows(ops)
    lamport, signed, _, _ = rows[-2]
    rows[-2] = (lamport + 1, signed, None, False)  # a lamport that is not the op's
    holdings = _holdings(sim)
    with pytest.raises(RemoteProtocolError):
        holdings.reload(rows)
    dag = holdings.replica.dag
    indexed = [op for op in ops if op.op_id in dag]
    assert 0 < len(indexed) < len(ops)
    assert holdings.replica.state() == fold(
        indexed, network_id=sim.network_id, genesis_id=sim.genesis.op_id
    )


def test_a_reload_checks_only_the_bodies_not_vouched_for(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = _story()
    ops = list(sim.all_ops.values())
    checked: list[str] = []
    folding = sys.modules["protocol.fold"]  # (the package's `fold` is the function)
    real = folding.body_error

    def counting(op_type: str, body: Any) -> str | None:
        checked.append(op_type)
        return real(op_type, body)

    monkeypatch.setattr(folding, "body_error", counting)
    rows = [(op.lamport, op.signed, None, i % 2 == 0) for i, op in enumerate(ops)]
    holdings = _holdings(sim)
    assert holdings.reload(rows) == len(ops)
    assert len(checked) == len(ops) // 2  # the odd ones only
    assert holdings.replica.state() == fold(
        ops, network_id=sim.network_id, genesis_id=sim.genesis.op_id
    )


def test_an_op_that_waited_for_its_parent_has_its_body_checked_though_vouched_for() -> None:
    """A vouch is for the op in hand: an op the DAG releases from waiting, when its parent
    comes, is checked (here: a display name with a direction override, refused)."""
    sim = _story()
    parent = sim.op("ben", "comment", {"target": sim.genesis.op_id, "text": "Thursday it is"})
    child = sign_op(
        identity("ben"),
        net=sim.network_id,
        seq=parent.seq + 1,
        lamport=parent.lamport + 1,
        parents=[parent.op_id],
        time=sim.time + 1000,
        type="member_update",
        body={"display_name": "Ben\u202e"},
    )
    assert body_error(child.type, child.body) is not None
    sim.all_ops[child.op_id] = child
    ops = list(sim.all_ops.values())
    holdings = _holdings(sim)
    holdings.reload(
        [(op.lamport, op.signed, None, True) for op in ops if op is not parent]  # all vouched
    )
    assert holdings.replica.dag.is_waiting(child.op_id)
    holdings.reload([(parent.lamport, parent.signed, None, True)])
    assert holdings.replica.state() == fold(
        ops, network_id=sim.network_id, genesis_id=sim.genesis.op_id
    )
    assert holdings.replica.state().members[identity("ben").public.key].display_name == "Ben"
