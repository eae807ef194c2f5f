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
from protocol.fold import Replica, fold
from protocol.log import LogReport, export_log
from protocol.logverify import verify_log
from protocol.signed import VerifiedOp, op_id_of, sign_op, verify_signed_op
from protocol.state import NetworkState

__all__ = [
    "GroupEnvelope",
    "LocalProtocolError",
    "LogReport",
    "MissingEpochKey",
    "NetworkState",
    "ProtocolError",
    "RemoteProtocolError",
    "Replica",
    "SealedEnvelope",
    "VerifiedOp",
    "export_log",
    "fold",
    "op_id_of",
    "open_group",
    "open_sealed",
    "parse_envelope",
    "seal_group",
    "seal_to_member",
    "sign_op",
    "verify_log",
    "verify_signed_op",
]
