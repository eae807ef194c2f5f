"""A node killed with SIGKILL in the middle of a large sync restarts and completes it,
with a consistent store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pnet.node import Node
from p2pnet.profile import profile_dir
from tests.net.test_cli_net import ROOT, _cli, _start_run, _stop
from tests.net.world import PASS, close_all, make_nodes

pytestmark = pytest.mark.timeout(180)
OPS = 6000


def _rows(home: Path) -> int:
    db = profile_dir(home, "default") / "store.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT count(*) FROM envelopes").fetchone()[0])


def test_sigkill_mid_sync_then_the_next_sync_completes(tmp_path: Path) -> None:
    ana, ben = make_nodes(tmp_path, ["Ana", "Ben"])
    topic = ana.propose("Net", title="A long discussion")
    for i in range(OPS):
        ana.comment("Net", topic.op_id.hex(), f"comment {i}")
    close_all([ana, ben])
    before = _rows(tmp_path / "ben")
    proc, address = _start_run(tmp_path / "ana")
    try:
        syncing = subprocess.Popen(
            [sys.executable, "-m", "p2pnet.cli", "--home", str(tmp_path / "ben"), "sync", "Net",
             "--peer", address],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "P2PNET_PASSPHRASE": PASS},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while _rows(tmp_path / "ben") < before + 500 and time.monotonic() < deadline:
            time.sleep(0.005)
        syncing.send_signal(signal.SIGKILL)
        syncing.wait(timeout=10)
        partial = _rows(tmp_path / "ben")
        assert before + 500 <= partial < before + OPS, "the kill did not land mid-sync"
        again = _cli(tmp_path / "ben", "sync", "Net", "--peer", address)
        assert again.returncode == 0, again.stderr
    finally:
        _stop(proc)
    with (
        Node.open(tmp_path / "ana", "default", PASS) as a,
        Node.open(tmp_path / "ben", "default", PASS) as b,
    ):
        assert a.state("Net") == b.state("Net")
        assert len(b.state("Net").comments[topic.op_id]) == OPS
    check = sqlite3.connect(profile_dir(tmp_path / "ben", "default") / "store.db")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
