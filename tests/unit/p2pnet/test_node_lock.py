"""The one-running-node lock of a profile: a probe (``NodeLock.held``, as ``p2pnet
peers`` uses) never makes a starting node fail, and a running node keeps others out."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from p2pnet.errors import NodeError
from p2pnet.net.runner import NodeLock


def test_a_probe_in_progress_never_makes_a_starting_node_fail(tmp_path: Path) -> None:
    (tmp_path / "node.lock").touch()
    with open(tmp_path / "node.lock", "rb") as probe:
        fcntl.flock(probe.fileno(), fcntl.LOCK_SH)  # a probe, at the very moment we start
        done = threading.Timer(0.05, fcntl.flock, (probe.fileno(), fcntl.LOCK_UN))
        done.start()
        try:
            with NodeLock(tmp_path):
                assert NodeLock.held(tmp_path)
        finally:
            done.join()
    assert not NodeLock.held(tmp_path)


def test_probes_do_not_stand_in_each_others_way(tmp_path: Path) -> None:
    (tmp_path / "node.lock").touch()
    with open(tmp_path / "node.lock", "rb") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_SH)  # another probe in progress
        assert not NodeLock.held(tmp_path)


def test_a_running_node_keeps_another_out_within_a_moment(tmp_path: Path) -> None:
    with NodeLock(tmp_path):
        started = time.monotonic()
        with pytest.raises(NodeError, match="already running"), NodeLock(tmp_path):
            pass
        assert time.monotonic() - started < 2
        assert NodeLock.held(tmp_path)
    assert not NodeLock.held(tmp_path)
    with NodeLock(tmp_path):  # free again
        pass
