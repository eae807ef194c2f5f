"""An in-memory :class:`~protocol.syncpeer.Holdings`: a node's envelopes of one network,
validated exactly as sync requires. Used by tests, benchmarks and bundle tooling; the node
implements the same protocol over its store.

Receiving a batch validates every envelope before keeping any (all or nothing): the
structure and route tag (again), decryption under an epoch key we hold, the signature
and the network id. An envelope under an epoch we hold no key for, and every sealed
(kind-2) envelope, is kept *unattributed*, within a bound. Ops are then offered to the
DAG; ops the DAG rejects (a broken chain or lamport) are dropped and counted. Ops that
the fold finds unauthorised are kept: other members' ops may name them as parents, and
every node must hold the same set to reach the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from crypto import CryptoError, EpochKey
from protocol._errors import MissingEpochKey, RemoteProtocolError
from protocol.dag import Dag
from protocol.envelope import GroupEnvelope, open_group, parse_envelope
from protocol.fold import Replica
from protocol.signed import VerifiedOp
from protocol.syncpeer import ReceiveReport

__all__ = ["DagChains", "MemoryHoldings"]

MAX_UNATTRIBUTED = 100_000


class DagChains:
    """A :class:`~protocol.reconcile.ChainIndex` over a :class:`Dag`."""

    def __init__(self, dag: Dag) -> None:
        self.dag = dag

    def chains(self) -> Iterable[tuple[bytes, int, bytes]]:
        return self.dag.chains()

    def ops_of(self, author: bytes, seq: int) -> list[bytes]:
        return self.dag.ops_of(author, seq)

    def ops_above(self, author: bytes, seq: int) -> list[bytes]:
        return self.dag.ops_above(author, seq)


class MemoryHoldings:
    """Envelopes of one network held in memory, with a :class:`Replica` for the state."""

    def __init__(
        self,
        *,
        network_id: bytes,
        genesis_id: bytes,
        route_tag: bytes,
        epochs: Mapping[bytes, EpochKey],
    ) -> None:
        self.network_id = network_id
        self.route_tag = route_tag
        self.epochs = dict(epochs)
        self.replica = Replica(network_id=network_id, genesis_id=genesis_id)
        self._chains = DagChains(self.replica.dag)
        self.by_op: dict[bytes, bytes] = {}  # op id -> envelope
        self.envelope_ids: set[bytes] = set()
        self._unattributed: dict[bytes, bytes] = {}

    # -- Holdings ------------------------------------------------------------------------

    def chain_index(self) -> DagChains:
        return self._chains

    def envelope_of(self, op_id: bytes) -> bytes:
        return self.by_op[op_id]

    def order_key(self, op_id: bytes) -> tuple[int, bytes]:
        return self.replica.dag.order_key(op_id)

    def unattributed(self) -> Mapping[bytes, bytes]:
        return self._unattributed

    def receive(self, envelopes: Sequence[bytes]) -> ReceiveReport:
        """Validate a batch, then keep it.

        Raises:
            RemoteProtocolError: an envelope is malformed, of another network, does not
                decrypt under the key its epoch id names, or carries a bad signature.
        """
        opened: list[tuple[bytes, bytes, VerifiedOp | None]] = []
        duplicates = 0
        for data in envelopes:
            env = parse_envelope(data)
            if env.route_tag != self.route_tag:
                raise RemoteProtocolError("envelope of another network")
            if env.envelope_id in self.envelope_ids:
                duplicates += 1
                continue
            op: VerifiedOp | None = None
            if isinstance(env, GroupEnvelope):
                try:
                    op = open_group(
                        env,
                        epochs=self.epochs,
                        network_id=self.network_id,
                        route_tag=self.route_tag,
                    )
                except MissingEpochKey:
                    op = None
                except CryptoError:
                    raise RemoteProtocolError(
                        "an envelope failed decryption or its signature"
                    ) from None
            opened.append((env.envelope_id, data, op))
        unattributed = sum(1 for _, _, op in opened if op is None)
        if len(self._unattributed) + unattributed > MAX_UNATTRIBUTED:
            raise RemoteProtocolError("too many envelopes we cannot attribute")
        new = rejected = 0
        for envelope_id, data, op in opened:
            if envelope_id in self.envelope_ids:
                duplicates += 1
                continue
            self.envelope_ids.add(envelope_id)
            if op is None:
                self._unattributed[envelope_id] = data
                continue
            if op.op_id in self.by_op:  # the same op in another envelope (another nonce)
                duplicates += 1
                continue
            before = len(self.replica.dag.rejected)
            self.by_op[op.op_id] = data
            self.replica.add(op)
            if len(self.replica.dag.rejected) > before:
                rejected += 1
                self.by_op.pop(op.op_id, None)
            else:
                new += 1
        return ReceiveReport(new, duplicates, unattributed, rejected)

    # -- local writes --------------------------------------------------------------------

    def add_local(self, op: VerifiedOp, envelope: bytes) -> None:
        """Keep an op we wrote (already sealed)."""
        env = parse_envelope(envelope)
        self.envelope_ids.add(env.envelope_id)
        self.by_op[op.op_id] = envelope
        self.replica.add(op)

    def add_key(self, epoch: EpochKey) -> list[bytes]:
        """Learn an epoch key; returns the ids of unattributed envelopes it opened."""
        self.epochs[epoch.epoch_id] = epoch
        opened = []
        for envelope_id, data in list(self._unattributed.items()):
            env = parse_envelope(data)
            if isinstance(env, GroupEnvelope) and env.epoch_id == epoch.epoch_id:
                del self._unattributed[envelope_id]
                self.envelope_ids.discard(envelope_id)
                self.receive([data])
                opened.append(envelope_id)
        return opened
