"""The node's core: opening a profile, loading its networks (from the state cache or
by folding the store), events, the one write path, and key epochs. See p2pnet/node.py
for the theory of operation."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from crypto import EpochKey, Identity, KdfParams, NetworkSecret, random_bytes
from p2pnet._memory import release_free_heap
from p2pnet._runtime import (
    _CACHE_KEY,
    _NAME_KEY,
    _NETWORK_KEY,
    NodeEvent,
    _envelope_id,
    _kept_ops,
    _Network,
    _pack_network,
    now_ms,
)
from p2pnet.archive import StoreArchive, open_group_op
from p2pnet.errors import NodeError, P2pnetError, StoreError
from p2pnet.profile import Profile, create_profile, open_profile, wipe_profile
from p2pnet.references import check_name, resolve
from p2pnet.statecache import decode_state, encode_state
from p2pnet.store import StoredOp
from p2pnet.verify import ParallelVerifier
from protocol import (
    LocalProtocolError,
    NetworkState,
    ProtocolError,
    RemoteProtocolError,
    VerifiedOp,
    seal_group,
    wire,
)
from protocol.build import genesis_op
from protocol.fold import no_gc_pauses
from protocol.holdings import Archive, MemoryHoldings, Verifier, verify_all
from protocol.settings import defaults_for
from protocol.signed import reload_verified_op
from protocol.vocabulary import NETWORK_TYPES

__all__ = ["NodeCore"]


class NodeCore:
    """An unlocked profile and its networks: what every part of the node builds on."""

    def __init__(self, profile: Profile, *, verifier: Verifier | None = None) -> None:
        self.profile = profile
        self._subscribers: list[Callable[[NodeEvent], None]] = []
        # Large imports check signatures on two threads (p2pnet.verify).
        self._pool = ParallelVerifier(2) if verifier is None else None
        self._verifier: Verifier = verifier or self._pool or verify_all
        self._networks: dict[bytes, _Network] = {}
        # Networks that could not be loaded, with the reason: one damaged network must
        # not lock its member out of the others.
        self.unavailable: dict[bytes, str] = {}
        for network_id, secret in profile.keystore.contents.networks.items():
            try:
                self._networks[network_id] = self._load(secret)
            except (NodeError, RemoteProtocolError) as exc:
                self.unavailable[network_id] = str(exc)

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        home: Path,
        profile: str,
        passphrase: str,
        *,
        name: str,
        kdf: KdfParams | None = None,
    ) -> Self:
        """Create a profile with a new identity called ``name``.

        Raises:
            ProfileError: the profile exists or its name is invalid.
            NodeError: the display name is invalid.
        """
        name = check_name(name)
        opened = create_profile(home, profile, passphrase, kdf=kdf)
        opened.store.put(None, _NAME_KEY, name.encode("utf-8"))
        return cls(opened)

    @classmethod
    def open(cls, home: Path, profile: str, passphrase: str) -> Self:
        """Unlock a profile.

        Raises:
            KeystoreMissing, KeystoreLocked, KeystoreCorrupt, StoreCorrupt.
        """
        opened = open_profile(home, profile, passphrase)
        try:
            return cls(opened)
        except BaseException:
            opened.close()
            raise

    def close(self) -> None:
        """Write the state cache of every loaded network, then close the profile (which
        is closed, and its key forgotten, whatever happens to the cache)."""
        try:
            for net in self._networks.values():
                if net.loaded is not None and net.loaded.replica.state() is not None:
                    data = encode_state(net.position, net.state())
                    with contextlib.suppress(P2pnetError):  # a cache is never worth an error
                        self.profile.store.put(net.network_id, _CACHE_KEY, data)
        finally:
            try:
                if self._pool is not None:
                    self._pool.close()
            finally:
                self.profile.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def panic(home: Path, profile: str) -> None:
        """Destroy the profile: keystore first, then every file (see profile.wipe_profile)."""
        wipe_profile(home, profile)

    def change_passphrase(self, new: str) -> None:
        """Re-encrypt the keystore under ``new`` (atomic)."""
        self.profile.keystore.change_passphrase(new)

    # -- identity ------------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        return self.profile.keystore.contents.identity

    @property
    def name(self) -> str:
        raw = self.profile.store.get(None, _NAME_KEY)
        return raw.decode("utf-8") if raw else ""

    # -- networks ------------------------------------------------------------------------

    def _load(self, secret: NetworkSecret) -> _Network:
        raw = self.profile.store.get(secret.network_id, _NETWORK_KEY)
        if raw is None:
            raise NodeError("a network's local record is missing: the store is incomplete")
        record = wire.decode(raw, max_size=1 << 20)
        epochs = {e[0]: EpochKey(e[0], e[1]) for e in record["epochs"]}
        net = _Network(secret=secret, genesis_id=record["genesis"], epochs=epochs)
        net.loader = self._build
        cache = self.profile.store.get(secret.network_id, _CACHE_KEY)
        last = self.profile.store.last_position(secret.network_id)
        decoded = decode_state(cache, position=last) if cache is not None else None
        if (
            decoded is not None
            and decoded[0] == last
            and decoded[1].network_id == secret.network_id
        ):
            net.cached = decoded[1]
        else:
            net.holdings  # noqa: B018 - build the DAG and the fold now
        return net

    def _build(self, net: _Network) -> MemoryHoldings:
        """Rebuild a network's DAG and fold from every row of the store (which then serves
        as its archive: only the DAG and the state stay in memory)."""
        archive = StoreArchive(self.profile.store, net.network_id, net.secret.route_tag, net.epochs)
        net.loaded = self._holdings(net.secret, net.genesis_id, net.epochs, archive=archive)
        net.position = 0
        with no_gc_pauses():
            self._catch_up(net)
            # What the build made (the DAG, the fold's records: some 200k objects the
            # cyclic collector tracks, at 100k ops) lives as long as the network. Move it
            # straight to the oldest generation, as if it had survived the young ones:
            # each young collection's pass over it would cost some 40 ms, in the first
            # reads after a start-up. (Freezing empties the young generations and resets
            # their count; unfreezing puts everything in the oldest.)
            gc.freeze()
            gc.unfreeze()
        release_free_heap()  # what the rebuild made and dropped (p2pnet/_memory.py)
        return net.loaded

    def _holdings(
        self,
        secret: NetworkSecret,
        genesis_id: bytes,
        epochs: Mapping[bytes, EpochKey],
        *,
        archive: Archive | None = None,
    ) -> MemoryHoldings:
        return MemoryHoldings(
            network_id=secret.network_id,
            genesis_id=genesis_id,
            route_tag=secret.route_tag,
            epochs=epochs,
            verifier=self._verifier,
            archive=archive,
        )

    def _catch_up(self, net: _Network) -> None:
        """Fold in what the store holds beyond what we have (another process's writes)."""
        # Reading 100k rows makes 100k objects that live on: no GC rescans meanwhile.
        with no_gc_pauses():
            self._catch_up_rows(net)

    def _catch_up_rows(self, net: _Network) -> None:
        # Rows are authenticated under the profile key; those verified when they arrived
        # (or written by this profile) are not checked again: their ops are read from the
        # store (one decryption each) and folded as a stream (MemoryHoldings.reload).
        # Verified rows stored before the store kept ops are opened as envelopes, and
        # their ops then kept too. Rows kept without a check (no key for them then) are
        # verified now like anything received, and their ops kept if they pass (so the
        # next start-up trusts them, and their envelope is found by op id).
        holdings = net.holdings  # first: building it may fold rows in already
        unchecked: list[bytes] = []
        older: list[tuple[bytes, VerifiedOp]] = []
        last = [net.position]

        def trusted() -> Iterator[Sequence[Any]]:
            for row in self.profile.store.load(net.network_id, after=net.position):
                if isinstance(row, StoredOp):
                    last[0] = row[4]
                    yield row  # (lamport, signed, op id, body checked, position): 4 read
                    continue
                last[0] = row.position
                if row.verified and (opened := self._open_stored(net, row.data)) is not None:
                    older.append(opened)
                    yield opened[1].lamport, opened[1].signed, opened[1].op_id, False
                else:
                    unchecked.append(row.data)

        before = holdings.held
        holdings.reload(trusted())
        if unchecked:
            try:
                holdings.receive(unchecked)
            except RemoteProtocolError:
                # What the batch kept before it failed stays (and keeps its op). One bad
                # row must not keep the others out: take them one by one; the bad ones
                # stay out of memory (a peer's sync may bring good copies).
                older += _kept_ops(holdings)
                for envelope in unchecked:
                    with contextlib.suppress(RemoteProtocolError):
                        holdings.receive([envelope])
                    older += _kept_ops(holdings)
            else:
                older += _kept_ops(holdings)
        if older:
            self._keep_ops(net, older)
        holdings.last_kept = []
        if last[0] == net.position:
            return
        net.position = last[0]
        self._emit(NodeEvent("ops", net.network_id, holdings.held - before))

    def _open_stored(self, net: _Network, data: bytes) -> tuple[bytes, VerifiedOp] | None:
        """The op of a verified row stored before the store kept ops (None: no op in it)."""
        opened = open_group_op(data, net.epochs, net.secret.route_tag)
        if opened is None:  # no key for it, or damaged: checked as received
            return None
        try:
            return opened[0], reload_verified_op(opened[1])
        except ProtocolError:
            return None

    def _keep_ops(self, net: _Network, older: list[tuple[bytes, VerifiedOp]]) -> None:
        # Fill in the ops of rows from before schema 4, or of rows stored unchecked and
        # verified since, so the next start-up reads them directly (and their envelopes
        # are found by op id). Inside a caller's transaction (a write that found the
        # network unloaded) this joins it (Store.keep_ops).
        with contextlib.suppress(StoreError):  # a busy store: the next start-up retries
            self.profile.store.keep_ops(net.network_id, older)

    # -- events --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[NodeEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with a :class:`NodeEvent` whenever something changes (new ops
        folded in, a network added, a new key). Returns a function that unsubscribes.

        Callbacks run synchronously in the caller's thread and must not raise; a UI
        hands them on to its own loop (Textual's ``App.post_message``).
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: NodeEvent) -> None:
        for callback in list(self._subscribers):
            callback(event)

    def create_network(
        self,
        name: str,
        network_type: str,
        *,
        purpose: str = "",
        display_name: str | None = None,
        kind: str = "individual",
    ) -> bytes:
        """Create a network (its genesis op) with the type's default rules.

        Raises:
            NodeError: an invalid name, type, purpose or kind.
        """
        if network_type not in NETWORK_TYPES:
            raise NodeError(
                f"unknown network type {network_type!r}; use one of {', '.join(NETWORK_TYPES)}"
            )
        secret = NetworkSecret.generate()
        epoch = EpochKey.generate()
        try:
            op = genesis_op(
                self.identity,
                network_id=secret.network_id,
                name=name,
                network_type=network_type,
                purpose=purpose,
                settings=defaults_for(network_type),
                epoch_id=epoch.epoch_id,
                display_name=display_name or self.name or "Founder",
                kind=kind,
                time=now_ms(),
            )
        except LocalProtocolError as exc:
            raise NodeError(str(exc)) from None
        net = _Network(
            secret=secret,
            genesis_id=op.op_id,
            epochs={epoch.epoch_id: epoch},
            loader=self._build,
        )
        envelope = seal_group(op, epoch=epoch, route_tag=secret.route_tag, nonce=random_bytes(24))
        with self.profile.store.transaction() as tx:
            tx.put(secret.network_id, _NETWORK_KEY, _pack_network(net))
            tx.add_envelopes(secret.network_id, [(_envelope_id(envelope), envelope, op)])
        keystore = self.profile.keystore
        keystore.save(keystore.contents.with_network(secret))
        self._catch_up(net)
        self._networks[secret.network_id] = net
        self._emit(NodeEvent("network", secret.network_id))
        return secret.network_id

    def networks(self) -> list[NetworkState]:
        """Every network of this profile, sorted by name."""
        return sorted((n.state() for n in self._networks.values()), key=lambda s: s.name)

    def network_id(self, ref: str) -> bytes:
        """Resolve a network name or id prefix.

        Raises:
            NotFound, AmbiguousReference.
        """
        candidates = {nid: net.name for nid, net in self._networks.items()}
        return resolve("network", ref, candidates)

    def state(self, ref: str) -> NetworkState:
        return self._net(ref).state()

    def _net(self, ref: str) -> _Network:
        return self._networks[self.network_id(ref)]
