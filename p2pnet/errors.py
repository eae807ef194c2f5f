"""Exceptions of the node layer; the CLI and the TUI catch :class:`P2pnetError` at one place."""

from __future__ import annotations

__all__ = ["P2pnetError", "StoreCorrupt", "StoreError"]


class P2pnetError(Exception):
    """Root of the errors raised by the p2pnet package."""


class StoreError(P2pnetError):
    """The local store cannot be used (locked by another writer, newer schema, disk full)."""


class StoreCorrupt(StoreError):
    """The local store failed its integrity check or holds data that does not decrypt."""
