"""The one write path (an op validated, built, signed, sealed and stored in one
transaction) and key epochs (rotation after a departure, keys that arrive sealed)."""

from __future__ import annotations

from typing import Any

from crypto import CryptoError, EpochKey, random_bytes
from p2pnet._core import NodeCore
from p2pnet._runtime import (
    _EXIT_TYPES,
    _NETWORK_KEY,
    NodeEvent,
    _envelope_id,
    _Network,
    _pack_network,
    now_ms,
)
from p2pnet.errors import NodeError, NotAllowed
from protocol import LocalProtocolError, RemoteProtocolError, VerifiedOp, parse_envelope, seal_group
from protocol.build import next_op
from protocol.envelope import SealedEnvelope
from protocol.epochs import SignerNotActive, open_epoch_key, rotate_epoch

__all__ = ["Writing"]


_SIGNER_UNKNOWN_KEPT = 10_000  # sealed keys from unknown signers remembered (_absorb_keys)


class Writing(NodeCore):
    """Writing ops, and keeping the network's key epochs."""

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
        # Envelopes tried once are not tried again: not for us, not a key, or refused
        # for good. Those refused because their signer is not (yet) an active member
        # here are tried again once the active members change: the signer's admission
        # may arrive after the key. (Not at every call: anyone can seal envelopes to us.)
        tried = net.extra.setdefault("tried", set())
        # Signer -> the envelopes refused because that signer is not an active member
        # here (yet): tried again once it is, and only then. (The signer did sign them, but
        # anyone can make keys: made-up signers are never active, so they cost nothing
        # more; and only so many are remembered.)
        waiting: dict[bytes, set[bytes]] = net.extra.setdefault("signer-unknown", {})
        if waiting:
            active = net.state().active_members()
            for signer in [s for s in waiting if s in active]:
                tried -= waiting.pop(signer)
        remembered = sum(map(len, waiting.values()))  # (once: junk keys come by thousands)
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
            except SignerNotActive as refused:
                if remembered < _SIGNER_UNKNOWN_KEPT:
                    waiting.setdefault(refused.signer, set()).add(envelope_id)
                    remembered += 1
                continue
            except (CryptoError, RemoteProtocolError):
                continue  # for another member, or not an epoch key
            held = net.epochs.get(key.epoch_id)
            if held is not None and (held == key or held.id_matches):
                continue  # (a held key whose id is its own is this very key)
            # A new epoch, or a key that replaces one a welcome gave under this id which
            # is not its id's key (a welcome cannot check ids: older epochs have random
            # ones).
            net.epochs[key.epoch_id] = key
            self.profile.store.put(net.network_id, _NETWORK_KEY, _pack_network(net))
            # The rows these envelopes are in were stored unchecked: keep their ops now
            # that they are verified.
            self._keep_ops(net, net.holdings.add_key(key))
            learned += 1
            self._emit(NodeEvent("key", net.network_id))
        return learned
