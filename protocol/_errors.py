"""Exceptions of the protocol layer, split by blame (as h11 does)."""

from __future__ import annotations

__all__ = ["LocalProtocolError", "MissingEpochKey", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Root of every error raised by the protocol package."""


class LocalProtocolError(ProtocolError, ValueError):
    """We tried to build something invalid: a bug or bad user input, never a peer's fault."""


class RemoteProtocolError(ProtocolError):
    """Bytes from a peer or a file broke the protocol: drop them, score the peer down."""


class MissingEpochKey(ProtocolError):
    """An envelope is under an epoch key we do not hold (yet): keep it, try again later."""
