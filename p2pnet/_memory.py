"""Giving the C heap's free memory back to the system after a start-up fold.

A rebuild makes and drops some hundred megabytes of short-lived objects and buffers
(docs/decisions.md, "Memory after a rebuild"). glibc keeps blocks freed in the middle of
its heap resident, and after its first free of a large mapped block it also serves
larger requests from the heap (a dynamic threshold), so a rebuilt node held some 3.5 MB
of free heap for good. ``malloc_trim`` hands the free pages back; where the C library
has no such call (musl, macOS) nothing is done.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["release_free_heap"]


def release_free_heap() -> bool:
    """Return the C heap's free pages to the system; whether the C library could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes  # noqa: PLC0415 - only a rebuild needs it, not the CLI's reads

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, TypeError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
