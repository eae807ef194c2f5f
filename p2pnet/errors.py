"""Exceptions of the node layer; the CLI and the TUI catch :class:`P2pnetError` at one place."""

from __future__ import annotations

__all__ = [
    "AmbiguousReference",
    "NodeError",
    "NotAllowed",
    "NotFound",
    "P2pnetError",
    "StoreCorrupt",
    "StoreError",
]


class P2pnetError(Exception):
    """Root of the errors raised by the p2pnet package."""


class StoreError(P2pnetError):
    """The local store cannot be used (locked by another writer, newer schema, disk full)."""


class StoreCorrupt(StoreError):
    """The local store failed its integrity check or holds data that does not decrypt."""


class NodeError(P2pnetError):
    """A user-facing error: the message says what went wrong and, where possible, how to
    fix it."""


class NotFound(NodeError):
    """No network, member, decision or agreement matches the reference."""


class AmbiguousReference(NodeError):
    """A reference matches several things; the message lists them."""


class NotAllowed(NodeError):
    """The action is not allowed (not a member, decision closed, too early, …)."""
