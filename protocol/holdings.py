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

import hashlib
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from crypto import CryptoError, EpochKey
from protocol._errors import LocalProtocolError, MissingEpochKey, RemoteProtocolError
from protocol.dag import Dag
from protocol.envelope import Envelope, GroupEnvelope, decrypt_group, parse_envelope
from protocol.fold import Replica, no_gc_pauses
from protocol.signed import VerifiedOp, reload_kept_op, verify_signed_op
from protocol.syncpeer import ReceiveReport

__all__ = ["Archive", "DagChains", "MemoryHoldings"]

MAX_UNATTRIBUTED = 100_000
_blake2b = hashlib.blake2b
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

    def ops(self, op_ids: Collection[bytes]) -> Mapping[bytes, VerifiedOp]:
        """The kept ops with these ids (every one of them)."""
        ...

    def envelope_of_op(self, op_id: bytes) -> bytes:
        """The kept envelope that carries this op.

        Raises:
            KeyError: no kept envelope carries it.
        """
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
        # Without an archive the envelopes are kept here (op id -> envelope id -> bytes).
        # With one, the archive finds them by op id, and a duplicate is known by its op
        # (the DAG's index): 100k envelope ids in a set and a dict took 16 MB.
        self._eid_of: dict[bytes, bytes] | None = None if archive else {}
        self._data: dict[bytes, bytes] | None = None if archive else {}
        self._unattributed: dict[bytes, bytes] = {}
        self._unattributed_bytes = 0
        # What the last receive kept (still kept after the DAG's verdict), for a caller
        # that stores it: (envelope id, envelope, op or None when unattributed).
        self.last_kept: list[tuple[bytes, bytes, VerifiedOp | None]] = []

    # -- Holdings ------------------------------------------------------------------------

    def chain_index(self) -> DagChains:
        return self._chains

    def envelope_of(self, op_id: bytes) -> bytes:
        if self._eid_of is not None and self._data is not None:
            return self._data[self._eid_of[op_id]]
        if not self.holds_op(op_id):
            raise KeyError(op_id)
        assert self._archive is not None
        return self._archive.envelope_of_op(op_id)

    @property
    def by_op(self) -> dict[bytes, bytes]:
        """Every kept op's envelope, by op id (built on each call: for tests and tools)."""
        return {op_id: self.envelope_of(op_id) for op_id in self.replica.dag.held()}

    @property
    def envelope_ids(self) -> set[bytes]:
        """Every kept envelope's id (built on each call: for tests and tools).

        Raises:
            LocalProtocolError: with an archive, which alone knows them.
        """
        if self._eid_of is None:
            raise LocalProtocolError("the archive holds the envelope ids")
        return set(self._eid_of.values()) | self._unattributed.keys()

    @property
    def held(self) -> int:
        """How many envelopes are kept: ops indexed or waiting for parents, and
        unattributed envelopes."""
        dag = self.replica.dag
        return len(dag) + dag.waiting + len(self._unattributed)

    def holds_op(self, op_id: bytes) -> bool:
        """Whether an op is kept: indexed, or waiting for a parent."""
        dag = self.replica.dag
        return op_id in dag or dag.is_waiting(op_id)

    def order_key(self, op_id: bytes) -> tuple[int, bytes]:
        return self.replica.dag.order_key(op_id)

    def unattributed(self) -> Mapping[bytes, bytes]:
        return self._unattributed

    def receive(self, envelopes: Iterable[bytes | Envelope]) -> ReceiveReport:
        """Validate a batch (raw or already parsed envelopes), then keep it.

        Raises:
            RemoteProtocolError: an envelope is malformed, of another network, does not
                decrypt under the key its epoch id names, or carries a bad signature.
        """
        self.last_kept = []
        with no_gc_pauses():
            return self._receive(envelopes)

    def _receive(self, envelopes: Iterable[bytes | Envelope]) -> ReceiveReport:
        parsed: list[tuple[bytes, bytes, bytes | None]] = []  # (envelope id, data, signed)
        duplicates = 0
        dag = self.replica.dag
        seen: set[bytes] = set()  # the batch's envelope and op ids
        for item in envelopes:
            env = parse_envelope(item) if isinstance(item, bytes) else item
            if env.route_tag != self.route_tag:
                raise RemoteProtocolError("envelope of another network")
            envelope_id = env.envelope_id
            if (
                envelope_id in seen
                or envelope_id in self._unattributed
                or (self._data is not None and envelope_id in self._data)
            ):
                # A replay, known by its id alone. (With an archive the ids are not in
                # memory: a replay is decrypted, then known by its op, below. That costs
                # less than the transport's own decryption of the same bytes.)
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
            if signed is not None:
                # An op we hold, in this envelope or another (sealed again under another
                # nonce): the same signed bytes, so no need to check its signature again.
                op_id = _blake2b(signed, digest_size=32).digest()  # op_id_of, inlined
                if op_id in seen or dag.knows(op_id):
                    duplicates += 1
                    continue
                seen.add(op_id)
            seen.add(envelope_id)
            parsed.append((envelope_id, env.raw, signed))
        try:
            verified = iter(self._verify([s for _, _, s in parsed if s is not None]))
        except CryptoError:
            raise RemoteProtocolError("an op's signature does not verify") from None
        opened: list[tuple[bytes, bytes, VerifiedOp | None]] = []
        for envelope_id, data, signed in parsed:
            op = next(verified) if signed is not None else None
            if op is not None and op.net != self.network_id:
                raise RemoteProtocolError("op belongs to another network")
            opened.append((envelope_id, data, op))
        return self._keep(opened, duplicates)

    def _keep(
        self, opened: list[tuple[bytes, bytes, VerifiedOp | None]], duplicates: int
    ) -> ReceiveReport:
        unattributed = sum(1 for _, _, op in opened if op is None)
        unattributed_bytes = sum(len(data) for _, data, op in opened if op is None)
        if (
            len(self._unattributed) + unattributed > MAX_UNATTRIBUTED
            or self._unattributed_bytes + unattributed_bytes > MAX_UNATTRIBUTED_BYTES
        ):
            raise RemoteProtocolError("too many envelopes we cannot attribute")
        rejected = 0
        ready: list[VerifiedOp] = []
        for envelope_id, data, op in opened:
            if op is None:
                self._unattributed[envelope_id] = data
                self._unattributed_bytes += len(data)
                continue
            if self._eid_of is not None and self._data is not None:
                self._eid_of[op.op_id] = envelope_id
                self._data[envelope_id] = data
            ready.append(op)
        dag = self.replica.dag
        before = len(dag.rejected)
        try:
            self.replica.add_many(ready)
        except OverflowError:
            # The batch is refused: forget what of it waits for parents; what the DAG
            # already indexed and folded is valid and stays.
            dag.drop_waiting(op.op_id for op in ready)
            for op in ready:
                if op.op_id not in dag:
                    self._forget(op.op_id)
            raise RemoteProtocolError("too many ops wait for parents never sent") from None
        finally:
            self.last_kept = [k for k in opened if k[2] is None or self.holds_op(k[2].op_id)]
        batch = {op.op_id for op in ready}
        for bad in dag.rejected[before:]:
            # Ops the DAG refuses (a broken chain or lamport), from this batch or ones that
            # waited for a parent in it, are not kept.
            rejected += 1
            self._forget(bad.op_id)
        new = len(ready) - sum(1 for bad in dag.rejected[before:] if bad.op_id in batch)
        dag.rejected.clear()  # read: a member sending refused ops must not fill memory
        return ReceiveReport(new, duplicates, unattributed, rejected)

    def _forget(self, op_id: bytes) -> None:
        if self._eid_of is not None and self._data is not None:
            envelope_id = self._eid_of.pop(op_id, None)
            if envelope_id is not None:
                self._data.pop(envelope_id, None)

    def reload(self, stored: Iterable[Sequence[Any]]) -> int:
        """Take back ops this node verified and kept (its own store, through the archive):
        ``(lamport, signed_op, op_id, body_checked)`` in arrival order (an op already held
        is skipped); ``op_id`` None to have it computed, else trusted as the op's (it was
        kept with the op, under the same key), and so is ``body_checked``: the body passed
        :func:`~protocol.ops.body_error` under the current :data:`~protocol.ops.BODY_RULES`
        when the op was kept. Signatures are not checked again
        (:func:`~protocol.signed.reload_kept_op`), nor vouched-for bodies; the DAG rules
        and the rest of the fold run as for any op. Returns how many ops became indexed.

        The ops are folded as a stream: a first pass keeps only their signed bytes (in one
        buffer), lamports and ids, then each op is decoded, indexed, folded and dropped in
        fold order. The ops of a large network never all exist as objects at once (100k
        of them would take some 200 MB, and fragment the heap for good).

        Raises:
            RemoteProtocolError: a stored op is damaged, or of another network.
            LocalProtocolError: this object has no archive to serve the envelopes from.
        """
        if self._archive is None:
            raise LocalProtocolError("ops are reloaded only with an archive")
        stream = _KeptOps(self.network_id)
        buffer, ends, lamports, op_ids = stream.buffer, stream.ends, stream.lamports, stream.ids
        checked = stream.checked
        last_lamport, last_id = 0, b""
        for row in stored:
            # (The same op twice, in two envelopes, or one held already: the DAG indexes
            # it once.)
            lamport: int = row[0]
            signed: bytes = row[1]
            op_id: bytes | None = row[2]
            if op_id is None:
                op_id = _blake2b(signed, digest_size=32).digest()  # op_id_of, inlined
            if lamport < last_lamport or (lamport == last_lamport and op_id < last_id):
                stream.in_order = False
            last_lamport, last_id = lamport, op_id
            lamports.append(lamport)
            op_ids.append(op_id)
            checked.append(1 if row[3] else 0)
            buffer += signed
            ends.append(len(buffer))
        dag = self.replica.dag
        dag.reserve(len(op_ids))
        before = len(dag.rejected)
        with no_gc_pauses():
            indexed = self.replica.add_in_order(stream)
        for bad in dag.rejected[before:]:
            self._forget(bad.op_id)
        dag.rejected.clear()
        return indexed

    # -- local writes --------------------------------------------------------------------

    def add_local(self, op: VerifiedOp, envelope: bytes) -> None:
        """Keep an op we wrote (already sealed; with an archive, already stored)."""
        if self._eid_of is not None and self._data is not None:
            env = parse_envelope(envelope)
            self._eid_of[op.op_id] = env.envelope_id
            self._data[env.envelope_id] = envelope
        self.replica.add(op)

    def add_key(self, epoch: EpochKey) -> list[tuple[bytes, VerifiedOp]]:
        """Learn an epoch key; returns the unattributed envelopes it opened (their ids,
        with the op each carries, for a caller that keeps ops beside its envelopes)."""
        self.epochs[epoch.epoch_id] = epoch
        opened: list[tuple[bytes, VerifiedOp]] = []
        for envelope_id, data in list(self._unattributed.items()):
            env = parse_envelope(data)
            if isinstance(env, GroupEnvelope) and env.epoch_id == epoch.epoch_id:
                del self._unattributed[envelope_id]
                self._unattributed_bytes -= len(data)
                try:
                    self.receive([data])
                except RemoteProtocolError:
                    continue  # junk someone stored under that epoch: dropped
                opened.extend((k[0], k[2]) for k in self.last_kept if k[2] is not None)
        self.last_kept = []
        return opened


class _KeptOps:
    """Ops to reload, held as signed bytes in one buffer until they are folded; iterating
    decodes them one at a time in fold order ``(lamport, op_id)``, each with whether its
    body is vouched for. Iterable again (a fold that starts over).

    One buffer and two flat columns, not 100k objects: the ops' objects are made and
    freed one at a time among the long-lived ones of the DAG and the fold, so the heap
    does not keep 200 MB of half-empty arenas after a start-up. Rows usually arrive in
    fold order already (a store is written parents first, in batches); only when they do
    not is a sorted order made.
    """

    def __init__(self, network_id: bytes) -> None:
        self.network_id = network_id
        self.buffer = bytearray()
        self.ends = array("Q")  # where each op's bytes end in the buffer
        self.lamports = array("Q")
        self.ids: list[bytes] = []  # the op ids (which the holdings keep anyway)
        self.checked = bytearray()  # 1: the op's body is vouched for (see reload)
        self.in_order = True  # (lamport, op id) grew from each op to the next

    def __iter__(self) -> Iterator[tuple[VerifiedOp, bool]]:
        ends, lamports, ids, checked = self.ends, self.lamports, self.ids, self.checked
        order: Iterable[int] = range(len(ids))
        if not self.in_order:
            order = sorted(order, key=lambda i: (lamports[i], ids[i]))
        network_id = self.network_id
        with memoryview(self.buffer) as view:
            for i in order:
                op = reload_kept_op(bytes(view[ends[i - 1] if i else 0 : ends[i]]), ids[i])
                # The lamport stored beside it put it in this place: it must be the op's.
                if op[4] != lamports[i] or op[1] != network_id:
                    raise RemoteProtocolError("a stored op is damaged")
                yield op, checked[i] == 1
