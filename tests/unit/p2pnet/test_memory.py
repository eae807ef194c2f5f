"""Giving the C heap's free pages back after a rebuild (p2pnet/_memory.py)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pnet import _memory

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _fresh_lookup() -> Iterator[None]:
    _memory._malloc_trim.cache_clear()
    yield
    _memory._malloc_trim.cache_clear()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_free_blocks_in_the_middle_of_the_heap_go_back_to_the_system() -> None:
    # In a child: blocks of 100 KiB come from the heap (below glibc's mapping
    # threshold); all but the last freed, they stay resident until trimmed.
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from p2pnet._memory import release_free_heap

        def rss_kib():
            with open("/proc/self/status") as f:
                return int(next(l for l in f if l.startswith("VmRSS")).split()[1])

        blocks = [bytearray(b"x" * (100 * 1024)) for _ in range(300)]
        last = blocks[-1]
        del blocks
        before = rss_kib()
        print(release_free_heap(), before - rss_kib(), len(last))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) > 10 * 1024  # of some 30 MB freed, most given back


def test_a_c_library_without_malloc_trim_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTrim:  # musl, macOS: no such symbol
        pass

    monkeypatch.setattr("ctypes.CDLL", lambda _name: NoTrim())
    assert _memory.release_free_heap() is False
    assert _memory.release_free_heap() is False  # looked up once, still nothing to do
