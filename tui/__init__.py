"""The Textual terminal UI (arrives with its own issue). Talks to the node only via ``Node``."""

from __future__ import annotations

__all__: list[str] = []
