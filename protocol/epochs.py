"""Key epochs: rotating the group key when someone leaves or is removed.

Theory of operation
-------------------
:func:`rotate_epoch` is pure: given the rotator's identity, the DAG and the state, it
returns the ``epoch`` op announcing the new epoch and one kind-2 (sealed) envelope per
remaining active member, carrying the new key. The caller seals the ``epoch`` op itself
under the *new* epoch key, so a removed member, who still holds the old key, does not
even learn that a rotation happened from it.

A sealed box does not say who sealed it, so the payload is signed: canonical msgpack
``[body, signature]`` with ``body = ["p2pnet-epoch-key", network_id, epoch_id, key,
epoch_op_id, signer]`` and the signature (domain ``epoch-key``) by ``signer``.
:func:`open_epoch_key` accepts it only if the signer is an active member of the state
the recipient holds and the network id is ours. Concurrent rotations are all valid;
writers use the newest epoch in fold order (:attr:`NetworkState.current_epoch`).
"""

from __future__ import annotations

from crypto import (
    EpochKey,
    Identity,
    KeyLengthError,
    PublicIdentity,
    is_valid_public_key,
    verify_signature,
)
from protocol import wire
from protocol._errors import RemoteProtocolError
from protocol.build import next_op
from protocol.dag import Dag
from protocol.envelope import SealedEnvelope, open_sealed, seal_to_member
from protocol.signed import VerifiedOp
from protocol.state import NetworkState

__all__ = ["SignerNotActive", "open_epoch_key", "rotate_epoch"]

_TAG = "p2pnet-epoch-key"
_DOMAIN = b"epoch-key"
_MAX_PAYLOAD = 512


class SignerNotActive(RemoteProtocolError):
    """The payload's signer (who did sign it) is not an active member of the state we
    hold: perhaps one we have not learned of yet (the only refusal that a later state may
    lift)."""

    def __init__(self, signer: bytes) -> None:
        super().__init__("epoch key not sealed by an active member")
        self.signer = signer


def rotate_epoch(
    identity: Identity,
    dag: Dag,
    state: NetworkState,
    *,
    new_epoch: EpochKey,
    cause: bytes,
    route_tag: bytes,
    time: int,
) -> tuple[VerifiedOp, list[bytes]]:
    """Announce ``new_epoch`` (caused by the removal or leave op ``cause``) and seal its
    key to every active member but ``identity``.

    Raises:
        LocalProtocolError: the op cannot be built.
    """
    op = next_op(
        identity,
        dag,
        network_id=state.network_id,
        op_type="epoch",
        body={"cause": cause, "epoch": new_epoch.epoch_id},
        time=time,
    )
    body = wire.encode(
        [_TAG, state.network_id, new_epoch.epoch_id, new_epoch.key, op.op_id, identity.public.key]
    )
    payload = wire.encode([body, identity.sign(_DOMAIN, body)])
    envelopes = [
        seal_to_member(PublicIdentity(member), payload, route_tag=route_tag)
        for member in sorted(state.active_members())
        # The fold admits only valid keys; the check keeps one bad key from blocking
        # every rotation should a future rule let one in.
        if member != identity.public.key and is_valid_public_key(member)
    ]
    return op, envelopes


def open_epoch_key(
    env: SealedEnvelope,
    identity: Identity,
    state: NetworkState,
    *,
    epoch_op: VerifiedOp | None = None,
) -> tuple[EpochKey, bytes]:
    """Open a sealed epoch key addressed to ``identity``; returns the key and the id of
    the ``epoch`` op that announces it. Pass that op once held: the key is then accepted
    only if the op announces this epoch id and was written by the payload's signer, so
    one member cannot hand out a different key under another member's epoch.

    Raises:
        DecryptionFailed: not addressed to us.
        RemoteProtocolError: malformed, another network's, or not from an active member.
        BadSignature: the signature does not verify.
    """
    payload = open_sealed(env, identity)
    outer = wire.decode(payload, max_size=_MAX_PAYLOAD, max_items=2)
    if type(outer) is not list or len(outer) != 2 or not all(type(x) is bytes for x in outer):
        raise RemoteProtocolError("malformed epoch key payload")
    body_bytes, signature = outer
    body = wire.decode(body_bytes, max_size=_MAX_PAYLOAD, max_items=6)
    if type(body) is not list or len(body) != 6 or body[0] != _TAG:
        raise RemoteProtocolError("malformed epoch key payload")
    _, network_id, epoch_id, key, announced, signer = body
    if network_id != state.network_id:
        raise RemoteProtocolError("epoch key for another network")
    # The signature first: a refusal that a later state may lift then names a signer who
    # did sign the payload (not any bytes a sender put there).
    verify_signature(signer, _DOMAIN, body_bytes, signature)
    member = state.members.get(signer)
    if member is None or not member.active:
        raise SignerNotActive(signer)
    try:
        epoch = EpochKey(epoch_id, key)
    except KeyLengthError:
        raise RemoteProtocolError("malformed epoch key") from None
    if type(announced) is not bytes or len(announced) != 32:
        raise RemoteProtocolError("malformed epoch op id")
    if not epoch.id_matches:
        # Another key under an epoch's id: what a member would seal to a victim to cut
        # it off from that epoch (docs/protocol.md §5.2).
        raise RemoteProtocolError("the epoch key does not match its epoch id")
    if epoch_op is not None and (
        epoch_op.op_id != announced
        or epoch_op.type != "epoch"
        or epoch_op.author != signer
        or epoch_op.body.get("epoch") != epoch_id
    ):
        raise RemoteProtocolError("the epoch key does not match the op that announces it")
    return epoch, announced
