"""The node's runtime pieces: a network's in-memory record, its events, the names of
its local rows, and the holdings that store what sync brings (:class:`_StoreHoldings`)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crypto import EpochKey, NetworkSecret
from p2pnet.errors import NodeError
from protocol import NetworkState, VerifiedOp, wire
from protocol.envelope import Envelope
from protocol.fold import Folder
from protocol.holdings import MemoryHoldings
from protocol.syncpeer import ForwardingHoldings, ReceiveReport

if TYPE_CHECKING:
    from p2pnet._core import NodeCore

__all__ = ["NodeEvent"]

_NAME_KEY = "identity-name"
_NETWORK_KEY = "network"
_INVITES_KEY = "invites"
_PENDING_KEY = "pending-joins"
_DAY_MS = 86_400_000
_CACHE_KEY = "state-cache"
_PEER_KEY = "peer-key"
_LAN_KEY = "lan-discovery"
_EXIT_TYPES = frozenset({"leave", "close", "emergency_remove"})
_MAX_WELCOME = 1 << 30


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something changed: ``kind`` is ``ops`` (``count`` new rows folded in), ``network``
    (a network was created or joined) or ``key`` (a new epoch key was learned)."""

    kind: str
    network_id: bytes
    count: int = 1


@dataclass(slots=True)
class _Network:
    """One network's runtime: its secret and keys, and the folded state (in memory).

    The DAG and the fold are built on first need (``loader``); until then, reads come
    from the state cache when it is fresh (p2pnet/statecache.py).
    """

    secret: NetworkSecret
    genesis_id: bytes
    epochs: dict[bytes, EpochKey]
    loaded: MemoryHoldings | None = None
    loader: Any = None  # Callable[[_Network], MemoryHoldings]
    cached: NetworkState | None = None
    position: int = 0  # the last store position folded in
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def network_id(self) -> bytes:
        return self.secret.network_id

    @property
    def holdings(self) -> MemoryHoldings:
        if self.loaded is None:
            self.loaded = self.loader(self)
            self.cached = None
        return self.loaded

    @property
    def folder(self) -> Folder:
        """The fold's live records: cheap reads for hot paths (no view is built)."""
        return self.holdings.replica.folder

    @property
    def name(self) -> str:
        if self.loaded is None and self.cached is not None:
            return self.cached.name
        genesis = self.folder.genesis
        return str(genesis["name"]) if genesis else ""

    def state(self) -> NetworkState:
        if self.loaded is None and self.cached is not None:
            return self.cached
        state = self.holdings.replica.state()
        if state is None:
            raise NodeError("this network's history is incomplete: import a bundle from a member")
        return state


def _pack_network(net: _Network) -> bytes:
    return wire.encode(
        {
            "epochs": [[k.epoch_id, k.key] for k in net.epochs.values()],
            "genesis": net.genesis_id,
        }
    )


def _quiet(done: int, total: int) -> None:
    return None


def _all_envelopes(holdings: MemoryHoldings) -> list[bytes]:
    index = holdings.chain_index()
    op_ids = [o for author, _, _ in index.chains() for o in index.ops_above(author, 0)]
    ordered = sorted(op_ids, key=holdings.order_key)
    return [holdings.envelope_of(o) for o in ordered] + list(holdings.unattributed().values())


def _kept_ops(holdings: MemoryHoldings) -> list[tuple[bytes, VerifiedOp]]:
    """The ops the last receive kept, with their envelope ids."""
    return [(eid, op) for eid, _, op in holdings.last_kept if op is not None]


def _envelope_id(envelope: bytes) -> bytes:
    return hashlib.blake2b(envelope, digest_size=32).digest()


class _StoreHoldings(ForwardingHoldings):
    """The network's in-memory holdings, with every newly accepted envelope also stored
    (a :class:`protocol.syncpeer.Holdings` for sync sessions and bundle imports)."""

    def __init__(self, node: NodeCore, net: _Network) -> None:
        self._node = node
        self._net = net
        self.written = (0, 0)  # store positions (before, after) of the last receive
        self.kept: list[bytes] = []  # the envelopes the last receive stored

    def _holdings(self) -> MemoryHoldings:
        # Looked up when used: a bundle import makes one of these for every network, and
        # only the bundle's own network needs its DAG built.
        return self._net.holdings

    def receive(self, envelopes: Sequence[bytes | Envelope]) -> ReceiveReport:
        inner = self._holdings()
        try:
            return inner.receive(envelopes)
        finally:
            # Store whatever memory kept, even when the batch failed part-way, so what a
            # restart reloads is exactly what this session holds.
            kept = inner.last_kept
            inner.last_kept = []
            verified = [(eid, data, op) for eid, data, op in kept if op is not None]
            unverified = [(eid, data) for eid, data, op in kept if op is None]
            self.written = self._store(verified, unverified)
            self.kept = [data for _, data, _ in kept]
            if kept:
                self._node._emit(NodeEvent("ops", self._net.network_id, len(kept)))

    def _store(
        self,
        verified: Sequence[tuple[bytes, bytes, VerifiedOp | None]],
        unverified: Sequence[tuple[bytes, bytes]],
    ) -> tuple[int, int]:
        """Insert in one transaction; returns the store positions (before, after). When
        nothing else was stored since the network's fold position, that position moves
        on too (these rows are in memory already: no need to read them back)."""
        net = self._net
        network_id = net.network_id
        with self._node.profile.store.transaction() as tx:
            before = tx.last_position(network_id)
            if verified:
                tx.add_envelopes(network_id, verified)
            if unverified:
                tx.add_envelopes(network_id, unverified, verified=False)
            after = tx.last_position(network_id)
        if before == net.position:
            net.position = after
        return before, after
