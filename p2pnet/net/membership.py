"""Who may sync: each side of a sync stream proves it speaks for a current member.

libp2p's Noise handshake authenticates a *peer id*, and the network PSK keeps out anyone
without the network secret; neither says which member a peer is, and a removed member
still knows the secret. So a sync stream opens, in both directions, with a **membership
proof**: canonical msgpack ``[1, member_key, signature]``, the signature (domain
``peer``) over ``network_id || peer_id`` by the member's identity key. The receiver checks
the signature against the peer id Noise authenticated for this connection (a proof cannot
be replayed by another peer) and that the key belongs to an *active* member in its
current state. Both happen before any sync byte is read, and again whenever the state
changes (p2pnet.net.service closes the sessions of members who are no longer active).
"""

from __future__ import annotations

from collections.abc import Callable

from crypto import CryptoError, verify_signature
from protocol import RemoteProtocolError, wire

__all__ = ["MAX_PROOF", "NotAMemberHere", "ProofRefused", "check_proof", "make_proof"]

MAX_PROOF = 256
_VERSION = 1
DOMAIN = b"peer"


class ProofRefused(RemoteProtocolError):
    """The peer's proof is malformed, forged, or for someone who is not a member now."""

    #: Whether the proof itself was bad (a protocol violation, scored against the peer),
    #: rather than valid for a key we do not hold as an active member (which may only
    #: mean that our state has not seen the admission yet).
    forged: bool = True


class NotAMemberHere(ProofRefused):
    """A valid proof by a key that is not an active member in our state."""

    forged = False


def make_proof(member_key: bytes, signature: bytes) -> bytes:
    """The proof bytes, from the member key and its :meth:`Node.sign_peer` signature."""
    return wire.encode([_VERSION, member_key, signature])


def check_proof(
    data: bytes,
    *,
    network_id: bytes,
    peer_id: bytes,
    is_active: Callable[[bytes], bool],
) -> bytes:
    """The member key the proof speaks for.

    Raises:
        ProofRefused: malformed, a bad signature, or not an active member.
    """
    try:
        proof = wire.decode(data, max_size=MAX_PROOF)
    except RemoteProtocolError:
        raise ProofRefused("a malformed membership proof") from None
    if (
        not isinstance(proof, list)
        or len(proof) != 3
        or proof[0] != _VERSION
        or not isinstance(proof[1], bytes)
        or len(proof[1]) != 32
        or not isinstance(proof[2], bytes)
        or len(proof[2]) != 64
    ):
        raise ProofRefused("a malformed membership proof")
    member, signature = proof[1], proof[2]
    try:
        verify_signature(member, DOMAIN, network_id + peer_id, signature)
    except CryptoError:
        raise ProofRefused("a membership proof that does not verify") from None
    if not is_active(member):
        raise NotAMemberHere("the peer is not a current member of this network")
    return member
