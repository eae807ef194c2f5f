"""The p2pnet protocol: pure, sans-I/O encoding, signing, envelopes and (later) state.

No module here does I/O, reads a clock or draws randomness: callers pass time and nonces.
"""

from __future__ import annotations

from protocol._errors import (
    LocalProtocolError,
    MissingEpochKey,
    ProtocolError,
    RemoteProtocolError,
)
from protocol.envelope import (
    GroupEnvelope,
    SealedEnvelope,
    open_group,
    open_sealed,
    parse_envelope,
    seal_group,
    seal_to_member,
)
from protocol.signed import VerifiedOp, op_id_of, sign_op, verify_signed_op

__all__ = [
    "GroupEnvelope",
    "LocalProtocolError",
    "MissingEpochKey",
    "ProtocolError",
    "RemoteProtocolError",
    "SealedEnvelope",
    "VerifiedOp",
    "op_id_of",
    "open_group",
    "open_sealed",
    "parse_envelope",
    "seal_group",
    "seal_to_member",
    "sign_op",
    "verify_signed_op",
]
