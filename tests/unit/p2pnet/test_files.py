"""Bounded reads of files a user names."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnet.errors import NodeError
from p2pnet.files import read_limited


def test_a_file_at_the_limit_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_limited(path, 10, "too big") == b"x" * 10
    with pytest.raises(NodeError, match=r"^too big$"):
        read_limited(path, 9, "too big")


def test_a_missing_file_or_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match=r"cannot read .*missing"):
        read_limited(tmp_path / "missing", 10, "too big")
    with pytest.raises(NodeError, match="cannot read"):
        read_limited(tmp_path, 10, "too big")
