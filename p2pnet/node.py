"""The node: the one API the command line and the terminal UI use.

Theory of operation
-------------------
A :class:`Node` is an unlocked profile: the keystore (identity, network secrets), the
store (envelopes and local data, sealed under the profile key) and, per network, a
:class:`_Network` runtime holding the folded state in memory.

Every action validates its input, builds the op through :mod:`protocol` (which signs
it), seals it under the network's current epoch key, and stores it — all inside one
IMMEDIATE store transaction that first reads whatever another process (a CLI command
while the TUI runs) wrote meanwhile, so the author's ``seq`` chain never forks. Reads
come from the folded state.

Errors: :class:`NodeError` and its subclasses carry a message fit for the user, with
the remedy where there is one; the CLI and TUI show them as they are.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto import (
    CryptoError,
    EpochKey,
    Identity,
    KdfParams,
    NetworkSecret,
    PublicIdentity,
    qr_payload,
    random_bytes,
    safety_number,
)
from p2pnet.archive import StoreArchive
from p2pnet.bundle import (
    ImportReport,
    Progress,
    export_bundle,
    import_bundle,
    import_bundle_from,
    read_summary,
    write_private_file,
    write_summary,
)
from p2pnet.errors import (
    AmbiguousReference,
    NodeError,
    NotAllowed,
    NotFound,
    P2pnetError,
    StoreError,
)
from p2pnet.files import open_or_fail, read_limited
from p2pnet.profile import Profile, create_profile, open_profile, wipe_profile
from p2pnet.references import by_long_prefix, check_name, parse_rule, resolve
from p2pnet.statecache import decode_state, encode_state
from p2pnet.store import StoredOp, Transaction
from p2pnet.verify import ParallelVerifier
from protocol import (
    LocalProtocolError,
    LogReport,
    NetworkState,
    ProtocolError,
    RemoteProtocolError,
    VerifiedOp,
    export_log,
    parse_envelope,
    seal_group,
    verify_log,
    wire,
)
from protocol.build import genesis_op, next_op
from protocol.bundle import seal_bundle
from protocol.envelope import Envelope, GroupEnvelope, SealedEnvelope, decrypt_group
from protocol.epochs import open_epoch_key, rotate_epoch
from protocol.fold import Folder, close_refusal, no_gc_pauses, projected_tally
from protocol.holdings import Archive, DagChains, MemoryHoldings, Verifier, verify_all
from protocol.invite import (
    WELCOME_MAGIC,
    InviteCode,
    JoinRequest,
    Welcome,
    open_join_request,
    open_welcome,
    parse_invite_code,
    seal_join_request,
    seal_welcome,
    split_welcome_file,
    welcome_file,
)
from protocol.log import MAX_LOG_BYTES
from protocol.matching import Match, matches
from protocol.rules import RuleSpec, validate_position
from protocol.settings import defaults_for
from protocol.signed import reload_verified_op
from protocol.syncpeer import ReceiveReport
from protocol.vocabulary import MEMBER_KINDS, NETWORK_TYPES

__all__ = [
    "AcceptResult",
    "AmbiguousReference",
    "Node",
    "NodeError",
    "NodeEvent",
    "NotAllowed",
    "NotFound",
    "parse_rule",
]

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


class Node:
    """An unlocked profile and its networks. Close it when done."""

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
    ) -> Node:
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
    def open(cls, home: Path, profile: str, passphrase: str) -> Node:
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
        """Write the state cache of every loaded network, then close the profile."""
        for net in self._networks.values():
            if net.loaded is not None and net.loaded.replica.state() is not None:
                data = encode_state(net.position, net.state())
                with contextlib.suppress(P2pnetError):  # a cache is never worth an error
                    self.profile.store.put(net.network_id, _CACHE_KEY, data)
        if self._pool is not None:
            self._pool.close()
        self.profile.close()

    def __enter__(self) -> Node:
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
        decoded = decode_state(cache) if cache is not None else None
        last = self.profile.store.last_position(secret.network_id)
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
                    last[0] = row[2]
                    yield row  # (lamport, signed, position): reload reads the first two
                    continue
                last[0] = row.position
                if row.verified and (opened := self._open_stored(net, row.data)) is not None:
                    older.append(opened)
                    yield opened[1].lamport, opened[1].signed
                else:
                    unchecked.append(row.data)

        before = holdings.held
        holdings.reload(trusted())
        if unchecked:
            try:
                holdings.receive(unchecked)
                older += _kept_ops(holdings)
            except RemoteProtocolError:
                # One bad row must not keep the others out: take them one by one; the
                # bad ones stay out of memory (a peer's sync may bring good copies).
                for envelope in unchecked:
                    with contextlib.suppress(RemoteProtocolError):
                        holdings.receive([envelope])
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
        try:
            envelope = parse_envelope(data)
            if not isinstance(envelope, GroupEnvelope):
                return None
            signed = decrypt_group(envelope, epochs=net.epochs, route_tag=net.secret.route_tag)
            return envelope.envelope_id, reload_verified_op(signed)
        except (CryptoError, ProtocolError):  # no key for it, or damaged: checked as received
            return None

    def _keep_ops(self, net: _Network, older: list[tuple[bytes, VerifiedOp]]) -> None:
        # Fill in the ops of rows from before schema 4, or of rows stored unchecked and
        # verified since, so the next start-up reads them directly (and their envelopes
        # are found by op id). Inside a caller's transaction (a write that found the
        # network unloaded) this joins it; otherwise it takes its own.
        store = self.profile.store
        if store.in_transaction:
            Transaction(store).keep_ops(net.network_id, older)
        else:
            with contextlib.suppress(StoreError):  # a busy store: the next start-up retries
                store.keep_ops(net.network_id, older)

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

    # -- writing -------------------------------------------------------------------------

    def _write(self, ref: str, op_type: str, body: dict[str, Any]) -> VerifiedOp:
        net = self._net(ref)
        with self.profile.store.transaction() as tx:
            self._catch_up(net)
            folder = net.folder
            me = folder.members.get(self.identity.public.key)
            if me is None or me.status != "active":
                raise NotAllowed("you are not an active member of this network")
            # The newest announced epoch whose key we hold (DESIGN.md): a key we have not
            # received yet must never stop us from writing, least of all a removal.
            epoch = next((net.epochs[e] for e in reversed(folder.epochs) if e in net.epochs), None)
            if epoch is None:
                raise NodeError(
                    "you do not hold this network's current key yet: sync with a member"
                )
            try:
                op = next_op(
                    self.identity,
                    net.holdings.replica.dag,
                    network_id=net.network_id,
                    op_type=op_type,
                    body=body,
                    time=now_ms(),
                )
            except LocalProtocolError as exc:
                raise NodeError(str(exc)) from None
            envelope = seal_group(
                op, epoch=epoch, route_tag=net.secret.route_tag, nonce=random_bytes(24)
            )
            tx.add_envelopes(net.network_id, [(_envelope_id(envelope), envelope, op)])
        self._catch_up(net)
        invalid = dict(net.holdings.replica.folder.reasons).get(op.op_id)
        if invalid is not None:
            # Stored (it is signed and may be a parent later) but it changed nothing.
            raise NotAllowed(invalid)
        if op_type in _EXIT_TYPES:
            self._rotate_if_due(net)
        return op

    # -- key epochs ----------------------------------------------------------------------

    def _rotate_if_due(self, net: _Network) -> None:
        """Start a new key epoch for every departure not yet answered by one.

        Who rotates: the author of the op that removed the member (the closer, the
        k-th emergency signer); for a leave, the remaining active member with the
        smallest key. Concurrent rotations are all valid; writers use the newest epoch
        they hold. The new key is sealed to every remaining member; the announcing op is
        sealed under the new key itself, so the departed member learns nothing from it.
        """
        folder = net.folder
        me = self.identity.public.key
        mine = folder.members.get(me)
        if mine is None or mine.status != "active":
            return
        active = sorted(k for k, m in folder.members.items() if m.status == "active")
        for member in list(folder.members.values()):
            cause = member.exit_op
            if cause is None or cause in folder.epoch_causes:
                continue
            rotator = (
                active[0] if member.status == "left" else net.holdings.replica.dag.author(cause)
            )
            if rotator != me:
                continue
            self._rotate(net, cause)

    def rekey(self, ref: str) -> int:
        """Answer every departure that has no new epoch yet, whoever was meant to (the
        designated member may be offline or gone). Returns how many epochs were made.

        Raises:
            NotAllowed: not an active member.
        """
        net = self._net(ref)
        folder = net.folder
        mine = folder.members.get(self.identity.public.key)
        if mine is None or mine.status != "active":
            raise NotAllowed("you are not an active member of this network")
        causes = [
            m.exit_op
            for m in list(folder.members.values())
            if m.exit_op is not None and m.exit_op not in folder.epoch_causes
        ]
        for cause in causes:
            self._rotate(net, cause)
        return len(causes)

    def _rotate(self, net: _Network, cause: bytes) -> None:
        new = EpochKey.generate()
        with self.profile.store.transaction() as tx:
            self._catch_up(net)
            state = net.state()
            op, sealed = rotate_epoch(
                self.identity,
                net.holdings.replica.dag,
                state,
                new_epoch=new,
                cause=cause,
                route_tag=net.secret.route_tag,
                time=now_ms(),
            )
            net.epochs[new.epoch_id] = new
            net.holdings.epochs[new.epoch_id] = new
            tx.put(net.network_id, _NETWORK_KEY, _pack_network(net))
            announce = seal_group(
                op, epoch=new, route_tag=net.secret.route_tag, nonce=random_bytes(24)
            )
            tx.add_envelopes(net.network_id, [(_envelope_id(announce), announce, op)])
            tx.add_envelopes(net.network_id, [(_envelope_id(e), e) for e in sealed], verified=False)
        self._catch_up(net)

    def _absorb_keys(self, net: _Network) -> int:
        """Open sealed epoch keys addressed to us among what we hold; returns how many
        new keys we learned (and re-reads what they unlock)."""
        learned = 0
        tried = net.extra.setdefault("tried", set())
        for envelope_id, data in list(net.holdings.unattributed().items()):
            if envelope_id in tried:
                continue
            tried.add(envelope_id)
            envelope = parse_envelope(data)
            if not isinstance(envelope, SealedEnvelope):
                continue
            state = net.state()
            try:
                key, _announced = open_epoch_key(envelope, self.identity, state)
            except (CryptoError, RemoteProtocolError):
                continue  # for another member, or not an epoch key
            if key.epoch_id in net.epochs:
                continue
            net.epochs[key.epoch_id] = key
            self.profile.store.put(net.network_id, _NETWORK_KEY, _pack_network(net))
            # The rows these envelopes are in were stored unchecked: keep their ops now
            # that they are verified.
            self._keep_ops(net, net.holdings.add_key(key))
            learned += 1
            self._emit(NodeEvent("key", net.network_id))
        return learned

    # -- members -------------------------------------------------------------------------

    def member_key(self, ref: str, member: str) -> bytes:
        net = self._net(ref)
        cached = net.cached if net.loaded is None else None
        members = cached.members if cached else net.folder.members
        return resolve("member", member, {k: m.display_name for k, m in members.items()})

    def update_profile(
        self,
        ref: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        offers: list[str] | None = None,
        needs: list[str] | None = None,
    ) -> VerifiedOp:
        body: dict[str, Any] = {}
        if name is not None:
            body["display_name"] = name.strip()
        if kind is not None:
            body["kind"] = kind
        if offers is not None:
            body["offers"] = sorted(set(offers))
        if needs is not None:
            body["needs"] = sorted(set(needs))
        if not body:
            raise NodeError("nothing to update: give --name, --kind, --offers or --needs")
        return self._write(ref, "member_update", body)

    def verification_qr(self, ref: str, member: str) -> str:
        """The text to show as a QR code to ``member`` in person (crypto.qr_payload)."""
        key = self.member_key(ref, member)
        return qr_payload(self.identity.public, PublicIdentity(key))

    def safety_words(self, ref: str, member: str) -> tuple[str, ...]:
        """The word form of the safety number with ``member``, for reading aloud."""
        key = self.member_key(ref, member)
        return safety_number(self.identity.public, PublicIdentity(key)).words

    def safety_number_with(self, ref: str, member: str) -> str:
        key = self.member_key(ref, member)
        return str(safety_number(self.identity.public, PublicIdentity(key)))

    def verify_member(self, ref: str, member: str, digits: str) -> VerifiedOp:
        """Record that you compared safety numbers with ``member`` in person.

        Raises:
            NotAllowed: the digits are not your safety number with that member.
        """
        key = self.member_key(ref, member)
        number = safety_number(self.identity.public, PublicIdentity(key))
        if not number.matches(digits):
            raise NotAllowed(
                "that is not your safety number with this member: compare again, in person"
            )
        digest = hashlib.blake2b(number.digits.encode(), digest_size=32).digest()
        return self._write(ref, "verify", {"safety": digest, "subject": key})

    def matches(self, ref: str) -> list[Match]:
        return matches(self.state(ref))

    def leave(self, ref: str) -> VerifiedOp:
        return self._write(ref, "leave", {})

    def emergency_remove(self, ref: str, member: str, reason: str) -> VerifiedOp:
        key = self.member_key(ref, member)
        return self._write(ref, "emergency_remove", {"reason": reason, "subject": key})

    # -- agreements ----------------------------------------------------------------------

    def agreement_id(self, ref: str, agreement: str) -> bytes:
        state = self.state(ref)
        labels = {
            a.agreement_id: state.versions[a.versions[-1]].title for a in state.agreements.values()
        }
        return resolve("agreement", agreement, labels)

    def add_agreement(
        self, ref: str, *, kind: str, title: str, text: str, agreement: str | None = None
    ) -> VerifiedOp:
        body: dict[str, Any] = {"kind": kind, "text": text, "title": title}
        if agreement is not None:
            body["agreement"] = self.agreement_id(ref, agreement)
        return self._write(ref, "agreement_version", body)

    def endorse(self, ref: str, agreement: str) -> VerifiedOp:
        """Endorse the version in force of ``agreement``."""
        state = self.state(ref)
        found = state.agreements[self.agreement_id(ref, agreement)]
        if found.adopted is None:
            raise NotAllowed("no version of this agreement has been adopted yet")
        return self._write(ref, "endorse", {"version": found.adopted})

    # -- decisions -----------------------------------------------------------------------

    def decision_id(self, ref: str, decision: str) -> bytes:
        net = self._net(ref)
        # Reads need no DAG: the cached state names decisions as well as the live fold.
        decisions = (
            net.cached.decisions if net.loaded is None and net.cached else net.folder.decisions
        )
        quick = by_long_prefix(decision, decisions)
        if quick is not None:
            return quick
        return resolve("decision", decision, {k: d.title for k, d in decisions.items()})

    def propose(
        self,
        ref: str,
        *,
        title: str,
        rule: RuleSpec | None = None,
        text: str = "",
        kind: str = "general",
        subject: Any = None,
        closes_in_ms: int | None = None,
    ) -> VerifiedOp:
        """Open a decision. Membership, agreement and governance decisions use the
        network's rule whatever ``rule`` says; others default to the ordinary rule."""
        state = self.state(ref)
        settings = state.settings
        chosen = settings.rule_for(kind) or rule or settings.ordinary_rule
        body: dict[str, Any] = {
            "closes_at": now_ms()
            + (settings.closes_in_ms if closes_in_ms is None else closes_in_ms),
            "kind": kind,
            "options": [],
            "rule": chosen.to_wire(),
            "text": text,
            "title": title,
        }
        if subject is not None:
            body["subject"] = subject
        return self._write(ref, "proposal", body)

    def position(self, ref: str, decision: str, stance: str, reason: str = "") -> VerifiedOp:
        decision_id = self.decision_id(ref, decision)
        found = self._net(ref).folder.decisions[decision_id]
        if found.status != "open":
            raise NotAllowed(f"the proposal is {found.status}")
        if self.identity.public.key not in found.electorate:
            raise NotAllowed("you are not in this proposal's electorate (you joined after it)")
        if stance != "withdraw":
            try:
                validate_position(found.rule, stance, reason)
            except LocalProtocolError as exc:
                raise NodeError(str(exc)) from None
        body = {
            "proposal": decision_id,
            "reason": reason,
            "round": found.rounds[-1],
            "stance": stance,
        }
        return self._write(ref, "position", body)

    def texts(self, ref: str, op_ids: Sequence[bytes]) -> dict[bytes, dict[str, Any]]:
        """What ops say (their bodies stay out of the state): for each id we hold, the
        op's ``type``, ``author`` and its text fields (``title``, ``text``, ``reason``).

        Read from the store by op id (no DAG needed); only ops stored before the store
        recorded op ids make the node fold the network to find them."""
        net = self._net(ref)
        store = self.profile.store
        ops: dict[bytes, VerifiedOp] = {}
        for op_id, signed in store.signed_ops(net.network_id, op_ids).items():
            with contextlib.suppress(RemoteProtocolError):
                kept = reload_verified_op(signed)  # a verified row of our own
                if kept.op_id == op_id:  # (the op column is a keyed hash, not sealed)
                    ops[op_id] = kept
        rest = [op_id for op_id in op_ids if op_id not in ops]
        for op_id, data in store.envelopes_of_ops(net.network_id, rest).items():
            envelope = parse_envelope(data)
            if isinstance(envelope, GroupEnvelope):
                with contextlib.suppress(RemoteProtocolError, CryptoError):
                    signed = decrypt_group(
                        envelope, epochs=net.epochs, route_tag=net.secret.route_tag
                    )
                    kept = reload_verified_op(signed)  # a verified row of our own
                    if kept.op_id == op_id:
                        ops[op_id] = kept
        if len(ops) < len(set(op_ids)):
            ops = {**net.holdings.replica.index(), **ops}
        found: dict[bytes, dict[str, Any]] = {}
        for op_id in op_ids:
            op = ops.get(op_id)
            if op is not None:
                body = op.body
                found[op_id] = {
                    "type": op.type,
                    "author": op.author,
                    **{k: body[k] for k in ("title", "text", "reason") if k in body},
                }
        return found

    def projected_outcome(self, ref: str, decision: str) -> dict[str, Any]:
        """The tally a close written now would record (what the UI shows before closing)."""
        net = self._net(ref)
        found = net.state().decisions[self.decision_id(ref, decision)]  # cached or folded
        return projected_tally(found).to_wire()

    def close_decision(self, ref: str, decision: str) -> VerifiedOp:
        """Close a decision with the outcome every member will recompute.

        Raises:
            NotAllowed: closed already, or too early (checked before anything is signed).
        """
        decision_id = self.decision_id(ref, decision)
        refusal = close_refusal(
            self._net(ref).folder, decision_id, self.identity.public.key, now_ms()
        )
        if refusal is not None:
            raise NotAllowed(refusal)
        outcome = self.projected_outcome(ref, decision)
        return self._write(ref, "close", {"outcome": outcome, "proposal": decision_id})

    def comment(self, ref: str, target: str, text: str) -> VerifiedOp:
        folder = self._net(ref).folder
        quick = by_long_prefix(target, [*folder.decisions, *folder.agreements])
        if quick is not None:
            return self._write(ref, "comment", {"target": quick, "text": text})
        labels = {k: d.title for k, d in folder.decisions.items()}
        for agreement in folder.agreements.values():
            labels[agreement.agreement_id] = folder.versions[agreement.versions[-1]].title
        target_id = resolve("decision or agreement", target, labels)
        return self._write(ref, "comment", {"target": target_id, "text": text})

    # -- invites (carried by hand) -------------------------------------------------------

    def _invites(self, net: _Network, tx: Transaction) -> dict[bytes, list[Any]]:
        """Invite id -> [secret, uses left, expires at (ms), joiners it admitted]. Read
        and written inside one transaction, so a CLI and the TUI cannot both spend a
        one-time invite."""
        raw = tx.get(net.network_id, _INVITES_KEY)
        if raw is None:
            return {}
        rows = wire.decode(raw, max_size=1 << 22, max_items=1 << 16)
        return {row[0]: list(row[1:]) for row in rows}

    def _save_invites(
        self, net: _Network, tx: Transaction, invites: dict[bytes, list[Any]]
    ) -> None:
        rows = [[k, *invites[k]] for k in sorted(invites)]
        tx.put(net.network_id, _INVITES_KEY, wire.encode(rows))

    def create_invite(
        self,
        ref: str,
        *,
        uses: int = 1,
        expires_in_ms: int = 7 * _DAY_MS,
        addresses: Sequence[str] = (),
    ) -> str:
        """A one-time (or ``uses``-time) invite code for this network, valid for
        ``expires_in_ms``. The code holds no key that reads anything; ``addresses`` (the
        running node's invite addresses) let the joiner ask online.

        Raises:
            NotAllowed: not an active member. NodeError: bad uses or expiry.
        """
        if not 1 <= uses <= 100 or not 0 < expires_in_ms <= 90 * _DAY_MS:
            raise NodeError("an invite admits 1 to 100 people and lasts at most 90 days")
        net = self._net(ref)
        me = net.state().members.get(self.identity.public.key)
        if me is None or not me.active:
            raise NotAllowed("you are not an active member of this network")
        secret = random_bytes(16)
        code = InviteCode(net.network_id, self.identity.public.key, secret, tuple(addresses[:4]))
        with self.profile.store.transaction() as tx:
            invites = self._invites(net, tx)
            invites[code.invite_id] = [secret, uses, now_ms() + expires_in_ms, []]
            self._save_invites(net, tx, invites)
        return code.text()

    def join_request(self, code_text: str, path: Path) -> bytes:
        """Write a join request for the inviter of ``code_text``; returns the network id.

        Raises:
            NodeError: a damaged code, or a network we already belong to.
        """
        try:
            code = parse_invite_code(code_text)
        except RemoteProtocolError as exc:
            raise NodeError(str(exc)) from None
        network_id, request = self.join_request_bytes(code)
        write_private_file(path, [request])
        return network_id

    def join_request_bytes(self, code: InviteCode) -> tuple[bytes, bytes]:
        """A join request for ``code``'s inviter (remembering that we asked); returns the
        network id and the request.

        Raises:
            NodeError: a network we already belong to.
        """
        if code.network_id in self._networks:
            raise NodeError("you already belong to this network")
        request = seal_join_request(
            code, self.identity, display_name=self.name or "New member", kind="individual"
        )
        with self.profile.store.transaction() as tx:
            pending = self._pending_joins(tx)
            pending[code.network_id] = code.inviter
            self._save_pending(tx, pending)
        return code.network_id, request

    def _pending_joins(self, tx: Transaction) -> dict[bytes, bytes]:
        """Network id -> the inviter's key, for joins asked and not yet welcomed."""
        raw = tx.get(None, _PENDING_KEY)
        return {row[0]: row[1] for row in wire.decode(raw, max_size=1 << 20)} if raw else {}

    def _save_pending(self, tx: Transaction, pending: dict[bytes, bytes]) -> None:
        rows = [[k, pending[k]] for k in sorted(pending)]
        tx.put(None, _PENDING_KEY, wire.encode(rows))

    def accept_invite(self, ref: str, request: Path, *, out: Path) -> AcceptResult:
        """Admit the person who wrote ``request`` (or open the admission decision the
        network's rules require) and, once they are a member, write their welcome file.

        Raises:
            NodeError: a request that is not for us, damaged, for a used or expired
                invite, or for another network.
        """
        self._net(ref)  # an unknown network is named before any file is read
        data = read_limited(request, 8192, f"{request} is too large to be a join request")
        result, welcome = self.accept_request(ref, data)
        if welcome is not None:
            write_private_file(out, [welcome])
        return result

    def accept_request(self, ref: str, data: bytes) -> tuple[AcceptResult, bytes | None]:
        """:meth:`accept_invite` on the request's bytes; returns the result and the
        welcome file's bytes once the joiner is a member (for a file or the network).

        Raises:
            NodeError: as :meth:`accept_invite`.
        """
        net = self._net(ref)
        with self.profile.store.transaction() as tx:
            invites = self._invites(net, tx)
        now = now_ms()
        # Open invites, plus used ones for the joiners they were spent on (to write the
        # welcome again, or once an admission decision passed, even after the expiry).
        secrets = {i: v[0] for i, v in invites.items() if (v[2] > now and v[1] > 0) or v[3]}
        try:
            joining = open_join_request(data, self.identity, secrets)
        except RemoteProtocolError as exc:
            raise NodeError(str(exc)) from None
        if joining.network_id != net.network_id:
            raise NodeError("this request is for another network")
        if not self._spend_invite(net, joining):
            raise NodeError("this invite was already used, or has expired")
        folder = net.folder
        member = folder.members.get(joining.joiner)
        decision_id: bytes | None = None
        if member is None:
            if net.state().settings.admission == "any_member":
                self._write(
                    ref,
                    "member_admit",
                    {
                        "display_name": _safe_name(joining.display_name),
                        "kind": joining.kind if joining.kind in MEMBER_KINDS else "individual",
                        "member": joining.joiner,
                    },
                )
            else:
                decision_id = self._admission_decision(ref, net.state(), joining)
        elif member.status != "active":
            raise NotAllowed("this person left or was removed; they must join with a new key")
        if joining.joiner not in folder.members:
            return AcceptResult("decision_pending", decision_id, welcome_written=False), None
        welcome = self._welcome(net, joining.joiner)
        return AcceptResult("admitted", decision_id, welcome_written=True), welcome

    def _spend_invite(self, net: _Network, joining: JoinRequest) -> bool:
        """Count one use of the invite for this joiner, atomically (once per joiner)."""
        with self.profile.store.transaction() as tx:
            invites = self._invites(net, tx)
            record = invites.get(joining.invite_id)
            if record is None:
                return False
            if joining.joiner in record[3]:
                return True
            if record[1] <= 0 or record[2] <= now_ms():
                return False
            record[1] -= 1
            record[3].append(joining.joiner)
            self._save_invites(net, tx, invites)
            return True

    def _admission_decision(self, ref: str, state: NetworkState, joining: JoinRequest) -> bytes:
        for decision in state.decisions.values():
            if (
                decision.kind == "admission"
                and decision.subject == joining.joiner
                and (decision.status == "open")
            ):
                return decision.decision_id
        name = _safe_name(joining.display_name)
        op = self.propose(
            ref,
            title=f"Admit {name}",
            kind="admission",
            subject=joining.joiner,
            text=f"{name} asks to join, invited by {self.name or 'a member'}.",
        )
        return op.op_id

    def _welcome(self, net: _Network, joiner: bytes) -> bytes:
        envelope = seal_welcome(
            self.identity,
            joiner,
            secret=net.secret,
            genesis_id=net.genesis_id,
            epochs=list(net.epochs.values()),
        )
        bundle = b"".join(
            seal_bundle(net.network_id, _all_envelopes(net.holdings), key=net.secret.bundle_key)
        )
        # It also travels by sync; if the store refuses it (a flood of junk filling the
        # unattributed pool), the file still carries it.
        with contextlib.suppress(RemoteProtocolError):
            _StoreHoldings(self, net).receive([envelope])
        return welcome_file(envelope, bundle, joiner=joiner)

    def _import_welcome(self, path: Path, progress: Progress) -> ImportReport:
        data = read_limited(path, _MAX_WELCOME, f"{path} is too large to be a welcome file")
        return self.import_welcome(data, progress=progress)

    def import_welcome(self, data: bytes, *, progress: Progress | None = None) -> ImportReport:
        """Join the network of a welcome (a file's bytes, or what the network brought).

        Raises:
            NodeError: no join asked, damaged, or not for us.
        """
        progress = progress or _quiet
        with self.profile.store.transaction() as tx:
            pending = self._pending_joins(tx)
        if not pending:
            raise NodeError(
                "you have not asked to join a network: run p2pnet join --request FILE first"
            )
        try:
            envelope, bundle = split_welcome_file(data, self.identity)
        except RemoteProtocolError as exc:
            raise NodeError(str(exc)) from None
        for network_id, inviter in pending.items():
            try:
                welcome = open_welcome(envelope, self.identity, inviter=inviter)
            except (CryptoError, RemoteProtocolError):
                continue
            if welcome.secret.network_id != network_id:
                continue
            return self._join(welcome, bundle, progress)
        raise NodeError("this welcome is not for you, or not from the member who invited you")

    def _join(self, welcome: Welcome, bundle: bytes, progress: Progress) -> ImportReport:
        """Import the welcome's bundle first; only a complete import registers the network
        (a damaged bundle leaves the profile as it was)."""
        secret = welcome.secret
        epochs = {e.epoch_id: e for e in welcome.epochs}
        net = _Network(
            secret=secret,
            genesis_id=welcome.genesis_id,
            epochs=epochs,
            loaded=self._holdings(secret, welcome.genesis_id, epochs),
            loader=self._build,
        )
        networks = {secret.network_id: (secret.bundle_key, net.holdings)}
        try:
            stream = io.BytesIO(bundle)
            report = import_bundle_from(stream, len(bundle), networks, progress=progress)
        except RemoteProtocolError as exc:
            raise NodeError(f"the welcome's bundle is damaged: {exc}") from None
        if report.truncated or net.holdings.replica.state() is None:
            raise NodeError("the welcome's bundle is incomplete: ask your inviter for a new one")
        store = self.profile.store
        unattributed = net.holdings.unattributed()
        ops = net.holdings.replica.index()  # (an op still waiting for a parent has none)
        kept = [(_envelope_id(d), d, ops.get(o)) for o, d in net.holdings.by_op.items()]
        store.add_envelopes(secret.network_id, kept)
        store.add_envelopes(secret.network_id, list(unattributed.items()), verified=False)
        with store.transaction() as tx:
            tx.put(secret.network_id, _NETWORK_KEY, _pack_network(net))
            pending = self._pending_joins(tx)
            pending.pop(secret.network_id, None)
            self._save_pending(tx, pending)
        keystore = self.profile.keystore
        keystore.save(keystore.contents.with_network(secret))
        self._networks[secret.network_id] = net
        # From now on the store is the archive: fold the network again from it, as at any
        # start-up, instead of keeping the import's envelopes and ops in memory.
        net.loaded = None
        self._catch_up(net)
        self._emit(NodeEvent("network", secret.network_id))
        return report

    # -- decision log --------------------------------------------------------------------

    def log_export(self, ref: str, path: Path, *, plain: bool = False) -> int:
        """Write the decision log (encrypted under a key every member holds, or plain for
        an outside auditor). Returns the number of closed decisions in it."""
        net = self._net(ref)
        state = net.state()
        ops = net.holdings.replica.ops()
        key = None if plain else net.secret.export_key
        data = export_log(state, ops, key=key, nonce=None if plain else random_bytes(24))
        write_private_file(path, [data])
        return sum(1 for d in state.decisions.values() if d.status == "closed")

    def log_check(self, ref: str) -> LogReport:
        """Export the network's decision log in memory and verify it, as anyone holding
        the file would (no file is written)."""
        net = self._net(ref)
        data = export_log(
            net.state(),
            net.holdings.replica.ops(),
            key=net.secret.export_key,
            nonce=random_bytes(24),
        )
        return verify_log(data, keys={net.secret.export_key.epoch_id: net.secret.export_key})

    def log_verify(self, path: Path) -> LogReport:
        """Check a decision log file, with the export keys of every network we hold."""
        data = read_limited(path, MAX_LOG_BYTES, f"{path} is too large to be a decision log")
        keys = {n.secret.export_key.epoch_id: n.secret.export_key for n in self._networks.values()}
        return verify_log(data, keys=keys)

    # -- bundles -------------------------------------------------------------------------

    def bundle_summary(self, ref: str, path: Path) -> bytes:
        net = self._net(ref)
        return write_summary(
            path, net.holdings, network_id=net.network_id, key=net.secret.bundle_key
        )

    def bundle_export(
        self,
        ref: str,
        path: Path,
        *,
        for_summary: Path | None = None,
        progress: Progress | None = None,
    ) -> int:
        net = self._net(ref)
        summary = None
        if for_summary is not None:
            keys = {net.network_id: net.secret.bundle_key}
            try:
                _, summary = read_summary(
                    read_limited(
                        for_summary, 1 << 20, f"{for_summary} is too large to be a summary"
                    ),
                    keys,
                )
            except RemoteProtocolError as exc:
                raise NodeError(f"that summary cannot be used: {exc}") from None
        return export_bundle(
            path,
            net.holdings,
            network_id=net.network_id,
            key=net.secret.bundle_key,
            for_summary=summary,
            progress=progress or _quiet,
        )

    def bundle_import(self, path: Path, *, progress: Progress | None = None) -> ImportReport:
        """Import a bundle into whichever network it belongs to.

        Raises:
            NodeError: not a bundle, damaged at the start, or for none of our networks.
        """
        with open_or_fail(path) as fh:
            head = fh.read(len(WELCOME_MAGIC))
        if head == WELCOME_MAGIC:
            return self._import_welcome(path, progress or _quiet)
        networks = {
            nid: (net.secret.bundle_key, _StoreHoldings(self, net))
            for nid, net in self._networks.items()
        }
        try:
            report = import_bundle(path, networks, progress=progress or _quiet)
        except RemoteProtocolError as exc:
            raise NodeError(str(exc)) from None
        except OSError as exc:
            raise NodeError(f"cannot read {path}: {exc.strerror or exc}") from None
        net = self._networks[report.network_id]
        if self._absorb_keys(net):
            self._persist_opened(net)
        self._rotate_if_due(net)
        return report

    # -- networking (p2pnet.net) ---------------------------------------------------------

    def network_ids(self) -> list[bytes]:
        """The ids of the networks this profile can use now."""
        return list(self._networks)

    def network_secret(self, network_id: bytes) -> NetworkSecret:
        """The network's secret (for the network layer's PSK and LAN token only)."""
        return self._networks[network_id].secret

    def peer_seed(self, network_id: bytes, *, purpose: str = "sync") -> bytes:
        """The 32-byte seed of this profile's libp2p key for the network: made once,
        kept sealed in the store (never in libp2p's peerstore), one per network so that
        peer ids never link a person's networks. ``purpose="invite"``: the key of the
        host that answers invite codes (its peer id is in the codes, so it is not the
        one members sync with)."""
        name = _PEER_KEY if purpose == "sync" else f"{_PEER_KEY}-{purpose}"
        with self.profile.store.transaction() as tx:
            seed = tx.get(network_id, name)
            if seed is None:
                seed = random_bytes(32)
                tx.put(network_id, name, seed)
        return seed

    def lan_discovery(self, network_id: bytes) -> bool:
        """Whether this profile advertises and looks for the network on the local network
        (opt-in, off by default: see docs/decisions.md "LAN discovery")."""
        return self.profile.store.get(network_id, _LAN_KEY) == b"\x01"

    def set_lan_discovery(self, ref: str, on: bool) -> None:
        """Turn LAN discovery on or off for a network (takes effect at the next run)."""
        self.profile.store.put(self.network_id(ref), _LAN_KEY, b"\x01" if on else b"\x00")

    def sign_peer(self, network_id: bytes, peer_id: bytes) -> bytes:
        """This member's signature binding libp2p ``peer_id`` to it in the network (the
        membership proof's signature; see p2pnet.net.membership)."""
        return self.identity.sign(b"peer", network_id + peer_id)

    def is_active(self, network_id: bytes, member: bytes) -> bool:
        """Whether ``member`` is an active member of the network in this node's view."""
        net = self._networks.get(network_id)
        if net is None:
            return False
        if net.loaded is None and net.cached is not None:
            cached = net.cached.members.get(member)
            return cached is not None and cached.active
        found = net.folder.members.get(member)  # the live record: no view is built
        return found is not None and found.status == "active"

    def published_peers(self, network_id: bytes) -> dict[bytes, tuple[str, tuple[str, ...]]]:
        """Active members other than us that published a peer id: key -> (peer id,
        addresses)."""
        me = self.identity.public.key
        return {
            key: (m.peer_id, m.addresses)
            for key, m in self._networks[network_id].state().members.items()
            if m.active and m.peer_id and key != me
        }

    def publish_addresses(self, network_id: bytes, peer_id: str, addresses: list[str]) -> bool:
        """Publish our peer id and addresses to the network (inside the encrypted state),
        unless it already holds them. Returns whether an op was written.

        Raises:
            NotAllowed: we are not an active member.
        """
        net = self._networks[network_id]
        me = net.state().members.get(self.identity.public.key)
        addresses = addresses[:8]
        if me is not None and me.peer_id == peer_id and list(me.addresses) == addresses:
            return False
        self._write(
            net.network_id.hex(), "member_update", {"peer_id": peer_id, "addresses": addresses}
        )
        return True

    def sync_holdings(self, network_id: bytes) -> _StoreHoldings:
        """What a sync session with a peer reads and fills (every batch is stored)."""
        net = self._networks[network_id]
        return _StoreHoldings(self, net)

    def after_sync(self, network_id: bytes) -> None:
        """Take in what sessions received: keys addressed to us, a rotation that is due."""
        net = self._networks[network_id]
        if self._absorb_keys(net):
            self._persist_opened(net)
        self._rotate_if_due(net)

    def refresh(self, network_id: bytes) -> None:
        """Fold in what another process (a CLI command) stored meanwhile."""
        net = self._networks[network_id]
        if self.profile.store.last_position(network_id) != net.position:
            self._catch_up(net)  # (a network served from the cache is loaded here)

    def envelopes_after(self, network_id: bytes, position: int) -> tuple[int, list[bytes]]:
        """The stored envelopes that arrived after local ``position``, and the newest
        position (for pushing what is new to live sessions)."""
        rows = list(self.profile.store.envelopes(network_id, after=position))
        return (rows[-1].position if rows else position), [r.data for r in rows]

    def last_position(self, network_id: bytes) -> int:
        return self.profile.store.last_position(network_id)

    def _persist_opened(self, net: _Network) -> None:
        # Rows a new key opened stay flagged unverified in the store (so every start-up
        # checks their signatures again); fold in anything else that arrived meanwhile.
        self._catch_up(net)


def _quiet(done: int, total: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What ``invite accept`` did: ``admitted`` (welcome written) or ``decision_pending``."""

    status: str
    decision_id: bytes | None
    welcome_written: bool


def _safe_name(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch.isprintable()).strip()[:100].strip()
    return cleaned or "New member"


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


class _StoreHoldings:
    """The network's in-memory holdings, with every newly accepted envelope also stored
    (a :class:`protocol.syncpeer.Holdings` for sync sessions and bundle imports)."""

    def __init__(self, node: Node, net: _Network) -> None:
        self._node = node
        self._net = net
        self.written = (0, 0)  # store positions (before, after) of the last receive
        self.kept: list[bytes] = []  # the envelopes the last receive stored

    @property
    def _inner(self) -> MemoryHoldings:
        # Looked up when used: a bundle import makes one of these for every network, and
        # only the bundle's own network needs its DAG built.
        return self._net.holdings

    def chain_index(self) -> DagChains:
        return self._inner.chain_index()

    def envelope_of(self, op_id: bytes) -> bytes:
        return self._inner.envelope_of(op_id)

    def order_key(self, op_id: bytes) -> tuple[int, bytes]:
        return self._inner.order_key(op_id)

    def unattributed(self) -> Mapping[bytes, bytes]:
        return self._inner.unattributed()

    def receive(self, envelopes: Sequence[bytes | Envelope]) -> ReceiveReport:
        inner = self._inner
        inner.last_kept = []
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
