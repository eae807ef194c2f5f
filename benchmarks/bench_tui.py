"""The terminal app: first view on a 100k-op profile, and an arriving op reaching the screen.

Prints one JSON object:
- first_view_s: from starting a Python process to the first rendered network view (the
  network's tabs, its decisions listed), on a profile with 100,026 ops whose state cache
  is fresh (a clean close before), with the default Argon2id unlock, Textual's headless
  driver at 100x30, networking on (started once the first network view is drawn: loading
  the network's DAG for sync then runs in the background); median of 3 processes;
  first_view_rebuild_s: the same without a state cache (a crash before: the fold is
  rebuilt from the store);
- op_to_screen_ms: an op proposed on a peer's node, from the moment it is in our node's
  folded state to the moment its row is on screen (median of 20; both nodes in this
  process on loopback), measured to the table's update (Textual paints it at its next
  refresh); op_to_node_ms: from the peer's call to our node's state.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._history import History
from benchmarks.bench_node import PASS, _build_profile
from crypto import KdfParams
from p2pnet.net.background import NodeThread
from p2pnet.node import Node

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)

_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
import asyncio
from pathlib import Path
from tui.app import P2pnetApp
from tui.network import NetworkScreen
from textual.widgets import DataTable

async def main():
    app = P2pnetApp(Path({home!r}), listen=("/ip4/127.0.0.1/tcp/0",))
    async with app.run_test(size=(100, 30)):
        app.unlock({passphrase!r})  # as the unlock screen does
        network_id = app.call(app.node.network_ids)[0]
        app.push_screen(NetworkScreen(network_id))  # as Enter on the networks list does
        while True:  # polled without the test pilot's waits for idleness
            screen = app.screen
            if isinstance(screen, NetworkScreen) and screen.is_mounted:
                rows = screen.query_one("#decisions-table", DataTable).row_count
                if rows:
                    break
            await asyncio.sleep(0.002)
        print("VIEW", rows, flush=True)
asyncio.run(main())
"""


def _first_view(home: Path) -> float:
    root = str(Path(__file__).resolve().parents[1])
    script = _CHILD.format(root=root, home=str(home), passphrase=PASS)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    took = time.perf_counter() - t0
    proc.wait(timeout=120)
    assert line.startswith("VIEW"), line
    assert int(line.split()[1]) > 1000, line
    return took


async def _op_to_screen(tmp: Path) -> tuple[float, float]:
    from textual.widgets import TabbedContent  # noqa: PLC0415 - only this part needs it

    from tui.app import P2pnetApp  # noqa: PLC0415 - only this part needs Textual
    from tui.network import NetworkScreen  # noqa: PLC0415

    fast = KdfParams.insecure_for_tests()
    ana = Node.create(tmp / "ana", "default", PASS, name="Ana", kdf=fast)
    ben = Node.create(tmp / "ben", "default", PASS, name="Ben", kdf=fast)
    ana.create_network("Bench", "coordination")
    request, welcome = tmp / "ben.request", tmp / "ben.welcome"
    ben.join_request(ana.create_invite("Bench"), request)
    ana.accept_invite("Bench", request, out=welcome)
    ben.bundle_import(welcome)
    net_id = ana.network_id("Bench")
    ben_thread = NodeThread(ben, listen=LOOPBACK, dial_members=False).start()
    to_node, to_screen = [], []
    try:
        peer = ben_thread.runtimes[net_id].addresses[0]
        marks: dict[str, float] = {}

        class Timed(P2pnetApp):
            """Marks when an op event leaves our node and when the screen has it."""

            def _node_event(self, event: Any) -> None:
                if event.kind == "ops" and "node" not in marks:
                    marks["node"] = time.perf_counter()  # folded and stored: on the node
                super()._node_event(event)

            def _refresh_now(self) -> None:
                # Events are coalesced (tui.app.REFRESH_S): the screen has the row when
                # a refresh has run, not when the event arrived.
                super()._refresh_now()
                if "node" in marks and "screen" not in marks:
                    marks["screen"] = time.perf_counter()  # the table holds the row

        app = Timed(tmp / "ana", listen=LOOPBACK, peers=[peer], node=ana)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, NetworkScreen)
            app.screen.query_one("#tabs", TabbedContent).active = "decisions"
            while not (app._thread and app._thread.peers_online(net_id)):
                await pilot.pause(0.01)
            from textual.widgets import DataTable  # noqa: PLC0415

            table = app.screen.query_one("#decisions-table", DataTable)
            for i in range(20):
                marks.clear()
                t0 = time.perf_counter()
                ben_thread.call(ben.propose, "Bench", title=f"Topic {i}")
                while table.row_count < i + 1:
                    await asyncio.sleep(0.0005)
                while "screen" not in marks:
                    await asyncio.sleep(0.0005)
                to_node.append((marks["node"] - t0) * 1000)
                to_screen.append((marks["screen"] - marks["node"]) * 1000)
                await pilot.pause(0.1)
    finally:
        ben_thread.stop()
        ben.close()
    return statistics.median(to_node), statistics.median(to_screen)


def main() -> None:
    history = History(100_000)
    results: dict[str, object] = {"ops": len(history.ops)}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big"
        _build_profile(big, history)
        results["first_view_rebuild_s"] = round(_first_view(big), 3)  # no cache yet
        Node.open(big, "default", PASS).close()  # a clean close writes the cache
        results["first_view_s"] = round(statistics.median(_first_view(big) for _ in range(3)), 3)
        to_node, to_screen = asyncio.run(_op_to_screen(Path(tmp)))
        results["op_to_node_ms"] = round(to_node, 2)
        results["op_to_screen_ms"] = round(to_screen, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("TEXTUAL", "")
    main()
