"""The main screens at 100x30, compared as text with stored snapshots.

Text, not SVG: the layout and every word are compared, colours are not (they follow the
terminal's theme). To accept a deliberate change, run the tests with
``P2PNET_UPDATE_SNAPSHOTS=1`` and review the diff of tests/tui/snapshots/ in git.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from crypto import KdfParams
from p2pnet.node import Node
from tui.app import P2pnetApp
from tui.network import NetworkScreen

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]
FAST = KdfParams.insecure_for_tests()
PASS = "correct horse battery staple"
SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("P2PNET_UPDATE_SNAPSHOTS") == "1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _screen_text(app: P2pnetApp) -> str:
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system=None, legacy_windows=False)  # fmt: skip
    console.print(app.screen._compositor.render_update(full=True))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def _check(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path.name}: run with P2PNET_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed (see the diff)"


def _world(home: Path) -> None:
    ana = Node.create(home, "default", PASS, name="Ana", kdf=FAST)
    ben = Node.create(home / "ben", "default", PASS, name="بهار", kdf=FAST)  # Persian
    ana.create_network("Teachers Circle", "coordination", purpose="Coordinate campaigns.")
    request, welcome = home / "b.request", home / "b.welcome"
    ben.join_request(ana.create_invite("Teachers Circle"), request)
    ana.accept_invite("Teachers Circle", request, out=welcome)
    ben.bundle_import(welcome)
    ana.update_profile("Teachers Circle", offers=["meeting_space"], needs=["expertise_legal"])
    version = ana.add_agreement("Teachers Circle", kind="charter", title="Charter", text="x")
    ana.propose("Teachers Circle", title="Adopt the charter", kind="agreement_adoption",
                subject=version.op_id)  # fmt: skip
    ana.propose("Teachers Circle", title="جلسه‌ی ماهانه")
    ana.close()
    ben.close()


async def test_first_start_and_unlock(tmp_path: Path) -> None:
    app = P2pnetApp(tmp_path, network=False, kdf=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        _check("onboarding", _screen_text(app))
    _world(tmp_path / "w")
    app = P2pnetApp(tmp_path / "w", network=False, kdf=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        _check("unlock", _screen_text(app))


async def test_networks_and_a_networks_tabs(tmp_path: Path) -> None:
    _world(tmp_path)
    app = P2pnetApp(tmp_path, network=False, kdf=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        app.unlock(PASS)
        await pilot.pause()
        _check("networks", _screen_text(app))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NetworkScreen)
        for tab in ("overview", "members", "agreements", "decisions"):
            app.screen.query_one("#tabs").active = tab  # type: ignore[attr-defined]
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()  # the tab underline slides
            await pilot.pause()
            _check(f"network-{tab}", _screen_text(app))
