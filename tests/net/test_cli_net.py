"""``p2pnet run``, ``sync`` and ``peers`` as whole processes on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pnet.net.runner import redact, setup_logging
from p2pnet.node import Node
from p2pnet.profile import profile_dir
from tests.net.world import PASS, close_all, make_nodes, reset_logging

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]


def _cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pnet.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "P2PNET_PASSPHRASE": PASS},
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def _start_run(home: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pnet.cli", "--home", str(home), "run",
         "--listen", "/ip4/127.0.0.1/tcp/0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "P2PNET_PASSPHRASE": PASS}, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line:
            return proc, line.split("listening on ", 1)[1].split(",")[0].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"p2pnet run did not start: {proc.stderr.read() if proc.stderr else ''}")


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def test_run_sync_and_peers_as_processes(tmp_path: Path) -> None:
    ana, ben = make_nodes(tmp_path, ["Ana", "Ben"])
    ana.propose("Net", title="Written before the run")
    close_all([ana, ben])
    proc, address = _start_run(tmp_path / "ana")
    try:
        again = _cli(tmp_path / "ana", "run", "--listen", "/ip4/127.0.0.1/tcp/0")
        assert again.returncode == 1
        assert "already running" in again.stderr
        synced = _cli(tmp_path / "ben", "--json", "sync", "Net", "--peer", address)
        assert synced.returncode == 0, synced.stderr
        report = json.loads(synced.stdout)
        assert report["peers"] == 1
        assert report["received"] >= 1  # the proposal (and Ana's published address)
        time.sleep(2.5)  # the running node writes its status every 2 s
        peers = _cli(tmp_path / "ana", "--json", "peers", "Net")
        assert peers.returncode == 0, peers.stderr
        shown = json.loads(peers.stdout)
        assert shown["running"] is True
        assert [p["name"] for p in shown["peers"]] == ["Ben"]
        last = shown["peers"][0]["last_sync_ms"]
        assert last is not None
        assert abs(last / 1000 - time.time()) < 60  # a wall-clock time, shown to people
    finally:
        code, out, err = _stop(proc)
    assert code == 0, err
    assert "Stopped." in out
    assert "Traceback" not in err
    with Node.open(tmp_path / "ben", "default", PASS) as node:
        titles = {d.title for d in node.state("Net").decisions.values()}
    assert "Written before the run" in titles
    log = (profile_dir(tmp_path / "ana", "default") / "node.log").read_text(encoding="utf-8")
    assert "127.0.0.1" not in log
    assert "12D3Koo" not in log


def test_sync_errors_are_one_clear_line(tmp_path: Path) -> None:
    _ana, ben = make_nodes(tmp_path, ["Ana", "Ben"])
    close_all([_ana, ben])
    bad = _cli(tmp_path / "ben", "sync", "Net", "--peer", "not-an-address")
    assert bad.returncode == 1
    assert "--peer" in bad.stderr
    assert "Traceback" not in bad.stderr
    nobody = _cli(
        tmp_path / "ben", "sync", "Net", "--timeout", "2", "--peer",
        "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWCugzopk9fYBy1pvYVi94Qr2y9PL4CjSpYZUaXir3YWb7",
    )  # fmt: skip
    assert nobody.returncode == 1
    assert "could not sync" in nobody.stderr
    assert "Traceback" not in nobody.stderr
    unknown = _cli(tmp_path / "ben", "peers", "Nope")
    assert unknown.returncode == 1
    via = _cli(tmp_path / "ben", "run", "--via", "/ip4/127.0.0.1/tcp/1")  # no /p2p/ part
    assert via.returncode == 1
    assert "--via" in via.stderr


def test_the_log_keeps_no_address_or_peer_id(tmp_path: Path) -> None:
    path = setup_logging(tmp_path)
    try:
        _log_and_check(path)
    finally:
        reset_logging()
    assert redact("nothing to hide") == "nothing to hide"


def test_the_log_stays_private_across_rollovers(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask: new files readable by every user
    try:
        path = setup_logging(tmp_path)
        handler = logging.getLogger("p2pnet.net").handlers[0]
        try:
            logging.getLogger("p2pnet.net").warning("before the rollover")
            assert isinstance(handler, logging.handlers.RotatingFileHandler)
            handler.doRollover()
            logging.getLogger("p2pnet.net").warning("after the rollover")
        finally:
            reset_logging()
    finally:
        os.umask(old)
    rolled = path.with_name("node.log.1")
    assert "before the rollover" in rolled.read_text(encoding="utf-8")
    assert "after the rollover" in path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(rolled.stat().st_mode) == 0o600


def _log_and_check(path: Path) -> None:
    peer = "12D3KooWCugzopk9fYBy1pvYVi94Qr2y9PL4CjSpYZUaXir3YWb7"
    logging.getLogger("libp2p.network").warning(
        "dial to %s at /ip4/203.0.113.9/tcp/4001/p2p/%s failed (10.0.0.7:5555, fe80::1:2)",
        peer, peer,
    )  # fmt: skip
    text = path.read_text(encoding="utf-8")
    assert "dial to <peer>" in text
    for secret in (peer, "203.0.113.9", "4001", "10.0.0.7", "fe80::1:2"):
        assert secret not in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_lan_discovery_is_off_until_turned_on(tmp_path: Path) -> None:
    close_all(make_nodes(tmp_path, ["Ana"]))
    shown = _cli(tmp_path / "ana", "--json", "lan", "Net")
    assert json.loads(shown.stdout)["lan_discovery"] is False
    turned = _cli(tmp_path / "ana", "--json", "lan", "Net", "on")
    assert json.loads(turned.stdout)["lan_discovery"] is True
    assert json.loads(_cli(tmp_path / "ana", "--json", "lan", "Net").stdout)["lan_discovery"]
    bad = _cli(tmp_path / "ana", "lan", "Net", "maybe")
    assert bad.returncode == 1
