"""Reading files a user names: bounded, and every failure one clear :class:`NodeError`."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from p2pnet.errors import NodeError

__all__ = ["open_or_fail", "read_limited"]


def open_or_fail(path: Path) -> BinaryIO:
    """``path`` opened for reading, or a :class:`NodeError` naming it."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise NodeError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_limited(path: Path, limit: int, too_large: str) -> bytes:
    """At most ``limit`` bytes of ``path``; a larger file is refused with ``too_large``
    (never read whole: a hostile file can be any size)."""
    with open_or_fail(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise NodeError(too_large)
    return data
