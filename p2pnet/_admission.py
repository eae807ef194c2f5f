"""Invites, join requests and welcomes (by hand, or online through p2pnet.net.invite)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto import CryptoError, random_bytes
from p2pnet._governance import Governance
from p2pnet._runtime import (
    _DAY_MS,
    _INVITES_KEY,
    _MAX_WELCOME,
    _NETWORK_KEY,
    _PENDING_KEY,
    NodeEvent,
    _all_envelopes,
    _envelope_id,
    _Network,
    _pack_network,
    _quiet,
    _StoreHoldings,
    now_ms,
)
from p2pnet.bundle import ImportReport, Progress, import_bundle_from, write_private_file
from p2pnet.errors import NodeError, NotAllowed
from p2pnet.files import read_limited
from p2pnet.store import Transaction
from protocol import NetworkState, RemoteProtocolError, wire
from protocol.bundle import seal_bundle
from protocol.invite import (
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
from protocol.vocabulary import MEMBER_KINDS

__all__ = ["AcceptResult", "Admission"]


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What ``invite accept`` did: ``admitted`` (welcome written) or ``decision_pending``."""

    status: str
    decision_id: bytes | None
    welcome_written: bool


class Admission(Governance):
    """Inviting, admitting and joining."""

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


def _safe_name(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch.isprintable()).strip()[:100].strip()
    return cleaned or "New member"
