"""The app's node thread (p2pnet.net.background.NodeThread): a network created or joined
goes online only when the node is online, never before or instead of the one-node lock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from p2pnet.net.background import NodeThread
from p2pnet.net.runner import NodeLock
from p2pnet.node import Node
from tests.net.world import FAST, LOOPBACK, PASS, reset_logging

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _quiet_logs() -> object:
    yield
    reset_logging()  # the node thread set up its log


def _wait_for(condition: object, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_network_created_before_going_online_stays_offline(tmp_path: Path) -> None:
    node = Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST)
    thread = NodeThread(node, listen=LOOPBACK, dial_members=False, defer_network=True).start()
    try:
        thread.call(node.create_network, "Net", "coordination")
        time.sleep(0.3)
        assert thread.runtimes == {}  # the user has not gone online yet
        assert not NodeLock.held(node.profile.path)
    finally:
        thread.stop()
        node.close()


def test_a_network_created_while_another_node_runs_stays_offline(tmp_path: Path) -> None:
    node = Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST)
    said: list[str] = []
    thread = NodeThread(
        node, listen=LOOPBACK, dial_members=False, defer_network=True, say=said.append
    ).start()
    try:
        with NodeLock(node.profile.path):  # p2pnet run, in another process
            thread.start_networks()
            assert _wait_for(lambda: said)
            assert "offline" in said[0]
            thread.call(node.create_network, "Net", "coordination")
            time.sleep(0.3)
            assert thread.runtimes == {}
    finally:
        thread.stop()
        node.close()


def test_a_network_created_while_online_goes_online(tmp_path: Path) -> None:
    node = Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST)
    thread = NodeThread(node, listen=LOOPBACK, dial_members=False, defer_network=True).start()
    try:
        thread.start_networks()
        assert _wait_for(lambda: NodeLock.held(node.profile.path))
        network_id = thread.call(node.create_network, "Net", "coordination")
        assert _wait_for(lambda: network_id in thread.runtimes)
    finally:
        thread.stop()
        node.close()
    assert not NodeLock.held(tmp_path / "profiles" / "default")
