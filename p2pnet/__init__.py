"""The p2pnet node: local store, networking, and the command line.

Import submodules directly (``from p2pnet.store import Store``); this package does no
work at import time.
"""

from __future__ import annotations

from p2pnet.errors import P2pnetError, StoreCorrupt, StoreError

__all__ = ["P2pnetError", "StoreCorrupt", "StoreError"]
