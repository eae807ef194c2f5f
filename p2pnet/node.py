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

from p2pnet._admission import AcceptResult
from p2pnet._exchange import Exchange
from p2pnet._runtime import NodeEvent, _pack_network, _StoreHoldings, now_ms
from p2pnet.errors import AmbiguousReference, NodeError, NotAllowed, NotFound
from p2pnet.references import parse_rule

__all__ = [
    "AcceptResult",
    "AmbiguousReference",
    "Node",
    "NodeError",
    "NodeEvent",
    "NotAllowed",
    "NotFound",
    "_StoreHoldings",
    "_pack_network",
    "now_ms",
    "parse_rule",
]


class Node(Exchange):
    """An unlocked profile and its networks. Close it when done.

    Built in layers, a module each, every one adding to the one below: the core
    (p2pnet/_core.py: opening, loading from the cache or the store, events, reads),
    writing (the write path and key epochs), governance (members, agreements,
    decisions), admission (invites and joins) and exchange (the decision log, bundles,
    what networking asks).
    """
