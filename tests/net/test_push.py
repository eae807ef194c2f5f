"""Pushing new envelopes to live sessions: a peer that stopped reading, or a push that
fails, delays and disturbs no one else; that session is dropped as a failed one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnet.net import service
from p2pnet.net.service import NetworkRuntime
from tests.net.world import LOOPBACK, close_all, make_nodes

pytestmark = pytest.mark.timeout(60)


class _Stuck:
    """A session whose peer stopped reading: its write never completes."""

    sent = 0
    closed = False

    async def push(self, envelopes: list[bytes]) -> None:
        await trio.sleep_forever()

    async def close(self) -> None:
        self.closed = True


class _Reading:
    sent = 0

    def __init__(self) -> None:
        self.got: list[tuple[float, list[bytes]]] = []

    async def push(self, envelopes: list[bytes]) -> None:
        self.got.append((trio.current_time(), envelopes))
        self.sent += len(envelopes)

    async def close(self) -> None:
        raise AssertionError("a reading peer is not dropped")


def test_a_peer_that_stopped_reading_delays_no_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "PUSH_S", 0.5)
    (ana,) = make_nodes(tmp_path, ["Ana"])
    runtime = NetworkRuntime(ana, ana.network_id("Net"), listen=LOOPBACK)
    stuck, reading = _Stuck(), _Reading()
    sessions: dict[Any, Any] = {"stuck": stuck, "reading": reading}  # the stuck one first
    runtime.sessions = sessions

    async def main() -> tuple[float, float]:
        start = trio.current_time()
        await runtime._push([([b"an envelope"], None)])
        return start, trio.current_time() - start

    try:
        start, took = trio.run(main)
    finally:
        close_all([ana])
    ((at, envelopes),) = reading.got
    assert envelopes == [b"an envelope"]
    assert at - start < 0.25  # at once, not after the stuck peer's bound
    assert runtime.status["reading"].sent == 1
    assert stuck.closed
    assert "stuck" not in runtime.sessions
    assert 0.4 < took < 2
    assert not runtime.status["stuck"].connected
    assert "stopped reading" in runtime.status["stuck"].last_error


class _Failing(_Stuck):
    """A push that fails in our own code (a store error while reading what to send)."""

    async def push(self, envelopes: list[bytes]) -> None:
        await trio.sleep(0)
        raise KeyError("an envelope the store lacks")


class _Slow(_Reading):
    async def push(self, envelopes: list[bytes]) -> None:
        await trio.sleep(0.2)
        await super().push(envelopes)


def test_a_failing_push_cancels_no_other_and_drops_only_its_session(tmp_path: Path) -> None:
    (ana,) = make_nodes(tmp_path, ["Ana"])
    runtime = NetworkRuntime(ana, ana.network_id("Net"), listen=LOOPBACK)
    failing, slow, other = _Failing(), _Slow(), _Reading()
    sessions: dict[Any, Any] = {"failing": failing, "slow": slow, "other": other}
    runtime.sessions = sessions
    batches = [([b"from the slow one"], slow), ([b"new here"], None)]
    try:
        trio.run(runtime._push, batches)
    finally:
        close_all([ana])
    # The slow session's write was not cut by the failure next to it, and got only what
    # it did not bring itself; the other got both, in order.
    assert [e for _, e in slow.got] == [[b"new here"]]
    assert [e for _, e in other.got] == [[b"from the slow one"], [b"new here"]]
    assert set(runtime.sessions) == {"slow", "other"}
    assert failing.closed
    assert "KeyError" in runtime.status["failing"].last_error
