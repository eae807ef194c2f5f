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

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol

from crypto import CryptoError, EpochKey
from protocol._errors import MissingEpochKey, RemoteProtocolError
from protocol.dag import Dag
from protocol.envelope import Envelope, GroupEnvelope, decrypt_group, parse_envelope
from protocol.fold import Replica, no_gc_pauses
from protocol.signed import VerifiedOp, reload_verified_op, verify_signed_op
from protocol.syncpeer import ReceiveReport

__all__ = ["Archive", "DagChains", "MemoryHoldings"]

MAX_UNATTRIBUTED = 100_000
MAX_UNATTRIBUTED_BYTES = 256 << 20

Verifier = Callable[[Sequence[bytes]], list[VerifiedOp]]


def verify_all(signed: Sequence[bytes]) -> list[VerifiedOp]:
    """Verify signed ops one after the other (the default :data:`Verifier`).

    Raises:
        RemoteProtocolError, BadSignature: at the first bad one.
    """
    return [verify_signed_op(s) for s in signed]


class Archive(Protocol):
    """Where :class:`MemoryHoldings` reads back what it does not keep in memory: a node
    keeps envelopes and op bodies in its store, and only the DAG and the state in RAM."""

    def envelope(self, envelope_id: bytes) -> bytes:
        """The kept envelope with this id.

        Raises:
            KeyError: it is not kept.
        """
        ...

    def ops(self, op_ids: Collection[bytes]) -> Mapping[bytes, VerifiedOp]:
        """The kept ops with these ids (every one of them)."""
        ...


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

    def forks(self, author: bytes) -> tuple[int, int]:
        return self.dag.forks(author)


class MemoryHoldings:
    """Envelopes of one network held in memory, with a :class:`Replica` for the state."""

    def __init__(
        self,
        *,
        network_id: bytes,
        genesis_id: bytes,
        route_tag: bytes,
        epochs: Mapping[bytes, EpochKey],
        verifier: Verifier = verify_all,
        archive: Archive | None = None,
    ) -> None:
        """``verifier`` checks a batch of signed ops; a node passes one that spreads the
        signature checks over its cores (p2pnet.verify). With an ``archive``, envelopes
        and ops are not kept in memory once folded; it must hold every envelope this
        object accepted (the node stores each batch as soon as :meth:`receive` returns)."""
        self._verify = verifier
        self.network_id = network_id
        self.route_tag = route_tag
        self.epochs = dict(epochs)
        self._archive = archive
        self.replica = Replica(
            network_id=network_id,
            genesis_id=genesis_id,
            reload=archive.ops if archive is not None else None,
        )
        self._chains = DagChains(self.replica.dag)
        self._eid_of: dict[bytes, bytes] = {}  # op id -> envelope id
        self._data: dict[bytes, bytes] | None = None if archive else {}  # envelope id -> bytes
        self.envelope_ids: set[bytes] = set()
        self._unattributed: dict[bytes, bytes] = {}
        self.last_ops: dict[bytes, bytes] = {}  # envelope id -> op id, of the last receive
        self._unattributed_bytes = 0

    # -- Holdings ------------------------------------------------------------------------

    def chain_index(self) -> DagChains:
        return self._chains

    def envelope_of(self, op_id: bytes) -> bytes:
        envelope_id = self._eid_of[op_id]
        if self._data is not None:
            return self._data[envelope_id]
        assert self._archive is not None
        return self._archive.envelope(envelope_id)

    @property
    def by_op(self) -> dict[bytes, bytes]:
        """Every kept op's envelope, by op id (built on each call: for tests and tools)."""
        return {op_id: self.envelope_of(op_id) for op_id in self._eid_of}

    def holds_op(self, op_id: bytes) -> bool:
        return op_id in self._eid_of

    def order_key(self, op_id: bytes) -> tuple[int, bytes]:
        return self.replica.dag.order_key(op_id)

    def unattributed(self) -> Mapping[bytes, bytes]:
        return self._unattributed

    def receive(
        self, envelopes: Iterable[bytes | Envelope], *, from_own_store: bool = False
    ) -> ReceiveReport:
        """Validate a batch (raw or already parsed envelopes), then keep it.

        Raises:
            RemoteProtocolError: an envelope is malformed, of another network, does not
                decrypt under the key its epoch id names, or carries a bad signature.
        """
        with no_gc_pauses():
            return self._receive(envelopes, from_own_store)

    def _receive(
        self, envelopes: Iterable[bytes | Envelope], from_own_store: bool = False
    ) -> ReceiveReport:
        parsed: list[tuple[bytes, bytes, bytes | None]] = []  # (envelope id, data, signed)
        opened: list[tuple[bytes, bytes, VerifiedOp | None]] = []
        # Rows of our own store were verified when they arrived: they are reloaded as they
        # are read, without a signature check (protocol.signed.reload_verified_op), and
        # with an archive their bytes are not kept: a start-up holds one envelope at a
        # time, not 100k.
        keep_data = self._data is not None
        duplicates = 0
        for item in envelopes:
            env = parse_envelope(item) if isinstance(item, bytes) else item
            if env.route_tag != self.route_tag:
                raise RemoteProtocolError("envelope of another network")
            if env.envelope_id in self.envelope_ids:
                duplicates += 1
                continue
            signed: bytes | None = None
            if isinstance(env, GroupEnvelope):
                try:
                    signed = decrypt_group(env, epochs=self.epochs, route_tag=self.route_tag)
                except MissingEpochKey:
                    signed = None
                except CryptoError:
                    raise RemoteProtocolError("an envelope fails decryption") from None
            if not from_own_store:
                parsed.append((env.envelope_id, env.raw, signed))
                continue
            op = reload_verified_op(signed) if signed is not None else None
            if op is not None and op.net != self.network_id:
                raise RemoteProtocolError("op belongs to another network")
            opened.append((env.envelope_id, env.raw if keep_data or op is None else b"", op))
        if from_own_store:
            return self._keep(opened, duplicates, bounded=False)
        try:
            verified = iter(self._verify([s for _, _, s in parsed if s is not None]))
        except CryptoError:
            raise RemoteProtocolError("an op's signature does not verify") from None
        for envelope_id, data, signed in parsed:
            op = next(verified) if signed is not None else None
            if op is not None and op.net != self.network_id:
                raise RemoteProtocolError("op belongs to another network")
            opened.append((envelope_id, data, op))
        return self._keep(opened, duplicates, bounded=True)

    def _keep(
        self,
        opened: list[tuple[bytes, bytes, VerifiedOp | None]],
        duplicates: int,
        *,
        bounded: bool = True,
    ) -> ReceiveReport:
        unattributed = sum(1 for _, _, op in opened if op is None)
        unattributed_bytes = sum(len(data) for _, data, op in opened if op is None)
        if bounded and (
            len(self._unattributed) + unattributed > MAX_UNATTRIBUTED
            or self._unattributed_bytes + unattributed_bytes > MAX_UNATTRIBUTED_BYTES
        ):
            raise RemoteProtocolError("too many envelopes we cannot attribute")
        rejected = 0
        ready: list[VerifiedOp] = []
        envelope_of_op: dict[bytes, bytes] = {}
        for envelope_id, data, op in opened:
            if envelope_id in self.envelope_ids or (op is not None and op.op_id in self._eid_of):
                # A replay, or the same op sealed again under another nonce: not kept.
                duplicates += 1
                continue
            self.envelope_ids.add(envelope_id)
            if op is None:
                self._unattributed[envelope_id] = data
                self._unattributed_bytes += len(data)
                continue
            self._eid_of[op.op_id] = envelope_id
            if self._data is not None:
                self._data[envelope_id] = data
            envelope_of_op[op.op_id] = envelope_id
            ready.append(op)
        self.last_ops = {eid: op_id for op_id, eid in envelope_of_op.items()}
        before = len(self.replica.dag.rejected)
        dag = self.replica.dag
        try:
            self.replica.add_many(ready, bounded=bounded)
        except OverflowError:
            # The batch is refused: forget what of it waits for parents; what the DAG
            # already indexed and folded is valid and stays.
            dag.drop_waiting(op.op_id for op in ready)
            for op in ready:
                if op.op_id not in dag:
                    self._forget(op.op_id)
            raise RemoteProtocolError("too many ops wait for parents never sent") from None
        for bad in dag.rejected[before:]:
            # Ops the DAG refuses (a broken chain or lamport), from this batch or ones that
            # waited for a parent in it, are not kept.
            rejected += 1
            self._forget(bad.op_id)
        new = len(ready) - sum(1 for bad in dag.rejected[before:] if bad.op_id in envelope_of_op)
        return ReceiveReport(new, duplicates, unattributed, rejected)

    def _forget(self, op_id: bytes) -> None:
        envelope_id = self._eid_of.pop(op_id, None)
        if envelope_id is not None:
            self.envelope_ids.discard(envelope_id)
            if self._data is not None:
                self._data.pop(envelope_id, None)

    # -- local writes --------------------------------------------------------------------

    def add_local(self, op: VerifiedOp, envelope: bytes) -> None:
        """Keep an op we wrote (already sealed)."""
        env = parse_envelope(envelope)
        self.envelope_ids.add(env.envelope_id)
        self._eid_of[op.op_id] = env.envelope_id
        if self._data is not None:
            self._data[env.envelope_id] = envelope
        self.replica.add(op)

    def add_key(self, epoch: EpochKey) -> list[bytes]:
        """Learn an epoch key; returns the ids of unattributed envelopes it opened."""
        self.epochs[epoch.epoch_id] = epoch
        opened = []
        for envelope_id, data in list(self._unattributed.items()):
            env = parse_envelope(data)
            if isinstance(env, GroupEnvelope) and env.epoch_id == epoch.epoch_id:
                del self._unattributed[envelope_id]
                self._unattributed_bytes -= len(data)
                self.envelope_ids.discard(envelope_id)
                try:
                    self.receive([data])
                except RemoteProtocolError:
                    continue  # junk someone stored under that epoch: dropped
                opened.append(envelope_id)
        return opened
