"""A small simulated network for state tests: named members, each with a replica."""

from __future__ import annotations

import hashlib
from typing import Any

from crypto import Identity, NetworkSecret
from protocol.build import genesis_op, next_op
from protocol.fold import Replica
from protocol.settings import Settings, defaults_for
from protocol.signed import VerifiedOp
from protocol.state import NetworkState

T0 = 1_700_000_000_000
DAY = 86_400_000


def identity(name: str) -> Identity:
    return Identity(hashlib.blake2b(name.encode(), digest_size=32).digest())


def key(name: str) -> bytes:
    return identity(name).public.key


class Sim:
    """Members named by strings; each holds a Replica; ops are delivered explicitly."""

    def __init__(
        self,
        creator: str = "ana",
        *,
        network_type: str = "coordination",
        settings: Settings | None = None,
        name: str = "Teachers' Solidarity",
    ) -> None:
        self.secret = NetworkSecret(hashlib.blake2b(name.encode(), digest_size=32).digest())
        self.network_id = self.secret.network_id
        self.time = T0
        self.genesis = genesis_op(
            identity(creator),
            network_id=self.network_id,
            name=name,
            network_type=network_type,
            purpose="Coordinate our campaigns.",
            settings=settings or defaults_for(network_type),
            epoch_id=b"\x01" * 16,
            display_name=creator.title(),
            kind="civil_society_org",
            time=self.time,
        )
        self.replicas: dict[str, Replica] = {}
        self.all_ops: dict[bytes, VerifiedOp] = {self.genesis.op_id: self.genesis}
        self.join(creator)

    def join(self, name: str) -> Replica:
        """Give ``name`` a replica holding the genesis (as an invite/welcome would)."""
        replica = Replica(network_id=self.network_id, genesis_id=self.genesis.op_id)
        replica.add(self.genesis)
        self.replicas[name] = replica
        return replica

    def op(self, who: str, op_type: str, body: dict[str, Any], *, dt: int = 1000) -> VerifiedOp:
        self.time += dt
        replica = self.replicas[who]
        op = next_op(
            identity(who),
            replica.dag,
            network_id=self.network_id,
            op_type=op_type,
            body=body,
            time=self.time,
        )
        replica.add(op)
        self.all_ops[op.op_id] = op
        return op

    def deliver(self, to: str, ops: list[VerifiedOp] | None = None) -> None:
        replica = self.replicas[to]
        for op in ops if ops is not None else list(self.all_ops.values()):
            replica.add(op)

    def sync(self, *names: str) -> None:
        """Everyone named ends with the union of what they all hold."""
        union: dict[bytes, VerifiedOp] = {}
        for name in names:
            union.update({o.op_id: o for o in self._held(name)})
        for name in names:
            self.deliver(name, list(union.values()))

    def sync_all(self) -> None:
        self.sync(*self.replicas)

    def _held(self, name: str) -> list[VerifiedOp]:
        replica = self.replicas[name]
        return [o for o in self.all_ops.values() if o.op_id in replica.dag]

    def state(self, who: str) -> NetworkState:
        state = self.replicas[who].state()
        assert state is not None
        return state

    # -- story helpers -----------------------------------------------------------------

    def admit(self, by: str, new: str, *, kind: str = "individual") -> VerifiedOp:
        op = self.op(
            by, "member_admit", {"member": key(new), "display_name": new.title(), "kind": kind}
        )
        if new not in self.replicas:
            self.join(new)
        self.deliver(new, self._held(by))
        return op

    def propose(
        self,
        who: str,
        *,
        rule: dict[str, Any],
        kind: str = "general",
        subject: Any = None,
        title: str = "A proposal",
        closes_in: int = DAY,
    ) -> VerifiedOp:
        body: dict[str, Any] = {
            "closes_at": self.time + closes_in,
            "kind": kind,
            "options": [],
            "rule": rule,
            "text": "",
            "title": title,
        }
        if subject is not None:
            body["subject"] = subject
        return self.op(who, "proposal", body)

    def position(
        self,
        who: str,
        proposal: VerifiedOp,
        stance: str,
        reason: str = "",
        *,
        round_id: bytes | None = None,
    ) -> VerifiedOp:
        return self.op(
            who,
            "position",
            {
                "proposal": proposal.op_id,
                "reason": reason,
                "round": round_id or proposal.op_id,
                "stance": stance,
            },
        )

    def close(
        self, who: str, proposal: VerifiedOp, *, claim: dict[str, Any] | None = None, dt: int = 1000
    ) -> VerifiedOp:
        folder = self.replicas[who].folder
        claimed = claim if claim is not None else folder.projected_tally(proposal.op_id).to_wire()
        return self.op(who, "close", {"outcome": claimed, "proposal": proposal.op_id}, dt=dt)
