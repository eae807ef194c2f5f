"""p2pnet's pnet layer against a third-party implementation: js-libp2p with @libp2p/pnet.

The js peer (tests/interop/pnet_peer.mjs: TCP + Noise + yamux, identify, ping) and a
py-libp2p host created with ``new_host(psk=...)`` after :func:`p2pnet.net.pnet.install`
share a PSK and talk both ways on 127.0.0.1. py-libp2p's own pnet layer fails all of this.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from crypto import NetworkSecret
from tests.net.test_pnet import ECHO, LOOPBACK, OTHER_PSK, close_hosts, echo, make_host, run

INTEROP = Path(__file__).resolve().parents[1] / "interop"
SCRIPT = INTEROP / "pnet_peer.mjs"
NODE = shutil.which("node")
PING = TProtocol("/ipfs/ping/1.0.0")

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(NODE is None, reason="node (20 or later) is not installed"),
    pytest.mark.skipif(
        not (INTEROP / "node_modules").is_dir(),
        reason="tests/interop/node_modules is missing: run `npm ci --prefix tests/interop`",
    ),
]


async def js_dial(addr: Multiaddr, psk: bytes) -> tuple[int, dict[str, Any]]:
    """Run the js peer's dial mode; its exit code and its one JSON line."""
    assert NODE is not None
    with trio.fail_after(20):
        done = await trio.run_process(
            [NODE, str(SCRIPT), "dial", str(addr), psk.hex()],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    lines = done.stdout.decode().splitlines()
    assert lines, f"no output from the js peer; stderr: {done.stderr.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return done.returncode, result


def test_js_libp2p_dials_identifies_and_pings_a_py_host() -> None:
    psk = NetworkSecret.generate().psk

    async def main() -> None:
        host = make_host(psk)
        host.set_stream_handler(ECHO, echo)
        async with host.run(LOOPBACK):
            try:
                code, result = await js_dial(host.get_addrs()[0], psk)
            finally:
                await close_hosts(host)
        assert code == 0, result
        assert result["ok"] is True
        assert result["remotePeerId"] == host.get_id().to_base58()
        assert result["agentVersion"].startswith("py-libp2p/")
        # Identify answered with this host's own protocols, ping among them.
        assert {PING, ECHO} <= set(result["protocols"])
        assert 0 <= result["rttMs"] < 1000

    run(main, timeout=30)


def test_js_libp2p_with_another_psk_is_refused() -> None:
    async def main() -> None:
        host = make_host(NetworkSecret.generate().psk)
        async with host.run(LOOPBACK):
            try:
                code, result = await js_dial(host.get_addrs()[0], OTHER_PSK)
            finally:
                await close_hosts(host)
        assert code == 1
        assert result["ok"] is False
        assert result["error"]

    run(main, timeout=30)


def test_a_py_host_dials_a_js_peer_and_pings_it() -> None:
    psk = NetworkSecret.generate().psk

    async def main() -> None:
        assert NODE is not None
        process = await trio.lowlevel.open_process(
            [NODE, str(SCRIPT), "listen", psk.hex()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        lines = _Lines(process.stdout)
        host = make_host(psk)
        try:
            with trio.fail_after(10):
                listening = json.loads(await lines.next())
            js_id = ID.from_base58(listening["peerId"])
            addr = Multiaddr(f"{listening['addrs'][0]}/p2p/{listening['peerId']}")
            async with host.run(LOOPBACK):
                try:
                    start = time.monotonic()
                    await host.connect(info_from_p2p_addr(addr))
                    assert time.monotonic() - start < 3
                    stream = await host.new_stream(js_id, [PING])
                    for _ in range(3):
                        payload = os.urandom(32)
                        await stream.write(payload)
                        with trio.fail_after(3):
                            echoed = b""
                            while len(echoed) < 32:
                                chunk = await stream.read(32 - len(echoed))
                                assert chunk, "the js peer closed the ping stream"
                                echoed += chunk
                        assert echoed == payload
                    await stream.close()
                    with trio.fail_after(5):
                        event = json.loads(await lines.next())
                    assert event == {"event": "connection", "remotePeerId": str(host.get_id())}
                finally:
                    await close_hosts(host)
        finally:
            await process.stdin.aclose()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0

    run(main, timeout=40)


class _Lines:
    """Lines from a trio receive stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise EOFError(f"the js peer ended its output after {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()
