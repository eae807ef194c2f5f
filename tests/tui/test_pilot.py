"""The terminal app driven by Textual's pilot: every main flow, bad input, panic."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from crypto import KdfParams
from p2pnet.net.background import NodeThread
from p2pnet.net.runner import NodeLock
from p2pnet.node import Node, NodeEvent
from p2pnet.profile import profile_dir
from tui.app import REFRESH_S, NodeChanged, P2pnetApp
from tui.forms import (
    ConfirmForm,
    CreateNetworkForm,
    InviteForm,
    PositionForm,
    ProposeForm,
    ReviseForm,
    ShowText,
    VerifyForm,
)
from tui.network import DecisionScreen, NetworkScreen
from tui.screens import NetworksScreen, UnlockScreen

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]
FAST = KdfParams.insecure_for_tests()
PASS = "correct horse battery staple"
SIZE = (100, 30)
LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio (anyio's pytest plugin drives the tests)


def _app(home: Path) -> P2pnetApp:
    return P2pnetApp(home, network=False, kdf=FAST)


def _cells(app: P2pnetApp, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def _press(pilot: object, selector: str) -> None:
    app = pilot.app  # type: ignore[attr-defined]
    app.screen.query_one(selector, Button).press()
    await pilot.pause()  # type: ignore[attr-defined]
    await app.workers.wait_for_complete()  # a key derivation runs on a worker thread
    await pilot.pause()  # type: ignore[attr-defined]


async def _type(pilot: object, selector: str, text: str) -> None:
    app = pilot.app  # type: ignore[attr-defined]
    field = app.screen.query_one(selector, Input)
    field.value = text


async def test_onboarding_creates_an_identity_and_shows_the_networks(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _type(pilot, "#name", "Shirin")
        await _type(pilot, "#pass", "short")
        await pilot.pause()
        assert "too short" in str(app.screen.query_one("#strength", Label).render())
        await _type(pilot, "#again", "short")
        await _press(pilot, "#create")
        assert "at least 10" in str(app.screen.query_one("#error", Label).render())
        assert not (profile_dir(tmp_path, "default") / "keystore").exists()  # nothing made
        await _type(pilot, "#pass", PASS)
        await _type(pilot, "#again", PASS + " typo")
        await _press(pilot, "#create")
        assert "differ" in str(app.screen.query_one("#error", Label).render())
        await _type(pilot, "#again", PASS)
        await _press(pilot, "#create")
        assert isinstance(app.screen, NetworksScreen)
    with Node.open(tmp_path, "default", PASS) as node:
        assert node.name == "Shirin"


def _profile_with_network(home: Path, *, with_ben: bool = False) -> None:
    with Node.create(home, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Union", "coordination")
        if with_ben:
            version = ana.add_agreement("Union", kind="charter", title="Charter", text="We agree.")
            ana.propose("Union", title="Adopt", kind="agreement_adoption", subject=version.op_id)
            ana.position("Union", "Adopt", "yes")
            ana.close_decision("Union", "Adopt")
            ben = Node.create(home / "ben", "default", PASS, name="Ben", kdf=FAST)
            request, welcome = home / "ben.request", home / "ben.welcome"
            ben.join_request(ana.create_invite("Union"), request)
            ana.accept_invite("Union", request, out=welcome)
            ben.bundle_import(welcome)
            ben.close()


async def _unlock(pilot: object) -> None:
    await _type(pilot, "#pass", PASS)
    await _press(pilot, "#unlock")


async def _open_network(pilot: object, tab: str) -> NetworkScreen:
    app = pilot.app  # type: ignore[attr-defined]
    await pilot.press("enter")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    screen = app.screen
    assert isinstance(screen, NetworkScreen)
    screen.query_one("#tabs").active = tab
    await pilot.pause()  # type: ignore[attr-defined]
    return screen


async def test_a_wrong_passphrase_says_so_and_changes_nothing(tmp_path: Path) -> None:
    _profile_with_network(tmp_path)
    before = sorted(p.stat().st_mtime_ns for p in profile_dir(tmp_path, "default").iterdir())
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, UnlockScreen)
        await _type(pilot, "#pass", "not the passphrase")
        await _press(pilot, "#unlock")
        assert "Wrong passphrase" in str(app.screen.query_one("#error", Label).render())
        assert isinstance(app.screen, UnlockScreen)
    after = sorted(p.stat().st_mtime_ns for p in profile_dir(tmp_path, "default").iterdir())
    assert before == after


def _slow_unlock(
    monkeypatch: pytest.MonkeyPatch, method: str = "open"
) -> tuple[threading.Event, list[int]]:
    """Node.open (or Node.create) waits for the event (a key derivation that takes its
    time); the list counts the calls."""
    release, opened = threading.Event(), []
    real = getattr(Node, method)

    def slow(*args: Any, **kwargs: Any) -> Node:
        opened.append(1)
        assert release.wait(10)
        return real(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Node, method, staticmethod(slow))
    return release, opened


async def _start_create(pilot: object) -> None:
    """Fill in the first-run form and press Create, without waiting for the derivation."""
    await _type(pilot, "#name", "Shirin")
    await _type(pilot, "#pass", PASS)
    await _type(pilot, "#again", PASS)
    pilot.app.screen.query_one("#create", Button).press()  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


async def _start_unlock(pilot: object) -> None:
    """Type the passphrase and press Unlock, without waiting for the derivation."""
    await _type(pilot, "#pass", PASS)
    pilot.app.screen.query_one("#unlock", Button).press()  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


async def test_the_key_is_derived_off_the_screens_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unlock (Argon2id, slow on purpose) runs on a worker: the screen says what it is
    doing meanwhile, and a second Enter does not open the profile twice."""
    _profile_with_network(tmp_path)
    release, opened = _slow_unlock(monkeypatch)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _start_unlock(pilot)
        assert "deriving the key" in str(app.screen.query_one("#error", Label).render())
        await _type(pilot, "#pass", PASS)
        app.screen.query_one("#unlock", Button).press()  # impatient: pressed again
        await pilot.pause()
        assert isinstance(app.screen, UnlockScreen)
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, NetworksScreen)
    assert len(opened) == 1


async def test_a_panic_dialog_is_not_dismissed_by_an_unlock_finishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _profile_with_network(tmp_path)
    release, _opened = _slow_unlock(monkeypatch)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _start_unlock(pilot)
        await pilot.press("ctrl+x")  # panic, while the key is being derived
        await pilot.pause()
        assert isinstance(app.screen, ConfirmForm)
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmForm)  # still asking
        await _press(pilot, "#ok")
    assert not profile_dir(tmp_path, "default").exists()  # and the wipe happened


async def test_a_panic_dialog_cancelled_while_creating_the_identity_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, _created = _slow_unlock(monkeypatch, "create")
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _start_create(pilot)
        await pilot.press("ctrl+x")  # panic, while the identity is being made
        await pilot.pause()
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmForm)  # the dialog stays
        await pilot.press("escape")  # not now
        await pilot.pause()
        assert isinstance(app.screen, NetworksScreen)  # and the identity is open
    with Node.open(tmp_path, "default", PASS) as node:
        assert node.name == "Shirin"


async def test_a_panic_while_the_identity_is_being_created_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After wiping, the panic waits for the key derivation running on the worker and
    wipes again: the worker writes the new keystore and store only after the first wipe."""
    release, finished = threading.Event(), threading.Event()
    real = Node.create

    def slow_create(*args: Any, **kwargs: Any) -> Node:
        try:
            assert release.wait(10)
            return real(*args, **kwargs)
        finally:
            finished.set()

    monkeypatch.setattr(Node, "create", staticmethod(slow_create))
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _start_create(pilot)
        await pilot.press("ctrl+x")  # panic, while the identity is being made
        await pilot.pause()
        assert isinstance(app.screen, ConfirmForm)
        timer = threading.Timer(0.3, release.set)  # the derivation ends during the wipe
        timer.start()
        try:
            await _press(pilot, "#ok")
        finally:
            timer.cancel()
    release.set()
    assert finished.wait(10)  # the worker is done: nothing more can be written
    assert not profile_dir(tmp_path, "default").exists()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no keystore, no store


async def test_a_panic_during_an_unlock_wipes_at_once_and_closes_what_the_unlock_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wipe does not wait for the worker: the keystore is gone while the unlock is
    still running; the node that unlock opened is then closed (its key forgotten),
    never shown, though its files are gone."""
    _profile_with_network(tmp_path)
    keystore = profile_dir(tmp_path, "default") / "keystore"
    release, seen_gone, opened = threading.Event(), [], []
    real = Node.open

    def slow_open(*args: Any, **kwargs: Any) -> Node:
        node = real(*args, **kwargs)  # the key derived, the store open
        opened.append(node)
        assert release.wait(10)
        deadline = time.monotonic() + 5
        while keystore.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_gone.append(not keystore.exists())
        return node

    monkeypatch.setattr(Node, "open", staticmethod(slow_open))
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _start_unlock(pilot)
        await pilot.press("ctrl+x")
        await pilot.pause()
        release.set()  # the worker now waits for the keystore to go
        await _press(pilot, "#ok")
    assert seen_gone == [True]  # wiped while the unlock still ran
    assert not profile_dir(tmp_path, "default").exists()
    (node,) = opened
    assert node.profile.keystore._key == b""  # closed: the key forgotten


async def test_an_unexpected_failure_while_unlocking_can_be_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _profile_with_network(tmp_path)
    calls: list[int] = []

    def failing_open(*_: Any, **__: Any) -> Node:
        calls.append(1)
        raise RuntimeError("Unexpected failure in key derivation")  # as on ENOMEM

    monkeypatch.setattr(Node, "open", staticmethod(failing_open))
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(2):
            await _type(pilot, "#pass", PASS)
            await _press(pilot, "#unlock")
            error = str(app.screen.query_one("#error", Label).render())
            assert "could not be opened (RuntimeError)" in error
        assert len(calls) == 2  # the second Enter was not ignored
        assert isinstance(app.screen, UnlockScreen)


async def test_node_events_refresh_the_screen_at_most_every_refresh_period(
    tmp_path: Path,
) -> None:
    """A sync brings event after event: the first refreshes the screen at once, the rest
    within REFRESH_S share one refresh; another network's events refresh nothing."""
    _profile_with_network(tmp_path)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        screen = await _open_network(pilot, "decisions")
        calls: list[float] = []
        screen.refresh_data = lambda: calls.append(time.monotonic())  # type: ignore[method-assign]
        await pilot.pause(REFRESH_S)
        for _ in range(20):
            app.post_message(NodeChanged(NodeEvent("ops", b"another network")))
        await pilot.pause()
        assert calls == []
        for _ in range(20):
            app.post_message(NodeChanged(NodeEvent("ops", screen.network_id)))
        await pilot.pause(REFRESH_S * 3)
        # At once, and once more for the rest (events coalesced by a timer alone would
        # give one refresh).
        assert len(calls) == 2
        assert calls[1] - calls[0] >= REFRESH_S * 0.9


async def test_create_a_network_with_inline_errors_first(tmp_path: Path) -> None:
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST):
        pass
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, CreateNetworkForm)
        await _press(pilot, "#ok")
        assert "name" in str(form.query_one("#error", Label).render())
        await _type(pilot, "#name", "شبکه‌ی همبستگی")  # Persian: stored and shown intact
        await _press(pilot, "#ok")
        assert "type" in str(form.query_one("#error", Label).render())
        form.query_one("#type", Select).value = "coordination"
        await pilot.pause()
        assert "Rules by default" in str(form.query_one("#explain", Static).render())
        await _press(pilot, "#ok")
        assert isinstance(app.screen, NetworksScreen)
        assert _cells(app, "#networks")[0][0] == "شبکه‌ی همبستگی"
    with Node.open(tmp_path, "default", PASS) as node:
        assert [s.name for s in node.networks()] == ["شبکه‌ی همبستگی"]


async def _propose_form(pilot: object) -> ProposeForm:
    """Unlock, open the network's decisions, press p."""
    await _unlock(pilot)
    await _open_network(pilot, "decisions")
    await pilot.press("p")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    form = pilot.app.screen  # type: ignore[attr-defined]
    assert isinstance(form, ProposeForm)
    return form


async def test_propose_take_positions_and_close(tmp_path: Path) -> None:
    _profile_with_network(tmp_path)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        form = await _propose_form(pilot)
        await _press(pilot, "#ok")
        assert "title" in str(form.query_one("#error", Label).render())
        await _type(pilot, "#title", "جلسه در کتابخانه")
        await _type(pilot, "#quorum", "3/2")
        await _press(pilot, "#ok")
        assert "quorum" in str(form.query_one("#error", Label).render())
        await _type(pilot, "#quorum", "1/2")
        form.query_one("#rule", Select).value = "consensus"
        await _press(pilot, "#ok")
        network = app.screen
        assert isinstance(network, NetworkScreen)
        assert _cells(app, "#decisions-table")[0][:3] == ["جلسه در کتابخانه", "consensus", "open"]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DecisionScreen)
        await pilot.press("s")
        await pilot.pause()
        position = app.screen
        assert isinstance(position, PositionForm)
        position.query_one("#stance", Select).value = "block"
        await _press(pilot, "#ok")
        assert "needs a reason" in str(position.query_one("#error", Label).render())
        await _type(pilot, "#reason", "Not before we ask the neighbours")
        await _press(pilot, "#ok")
        detail = str(app.screen.query_one("#detail", Static).render())
        assert "block — Not before we ask the neighbours" in detail
        assert "If closed now: blocked" in detail
        await pilot.press("c")
        await pilot.pause()
        await _press(pilot, "#ok")
        assert "(closed)" in str(app.screen.query_one("#detail", Static).render())
        await pilot.press("s")  # positions on a closed decision: a notice, nothing else
        await pilot.pause()
        assert isinstance(app.screen, DecisionScreen)
    with Node.open(tmp_path, "default", PASS) as node:
        (decision,) = node.state("Union").decisions.values()
        assert decision.status == "closed"
        assert decision.outcome is not None
        assert decision.outcome.outcome == "blocked"
        assert len(decision.positions) == 1


async def test_a_supermajority_proposal_from_the_app(tmp_path: Path) -> None:
    _profile_with_network(tmp_path)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        form = await _propose_form(pilot)
        await _type(pilot, "#title", "Spend the fund on the hall")
        form.query_one("#rule", Select).value = "supermajority:2/3:eligible"
        await _press(pilot, "#ok")
        assert _cells(app, "#decisions-table")[0][:2] == [
            "Spend the fund on the hall",
            "supermajority",
        ]
        await pilot.press("enter")
        await pilot.pause()
        detail = str(app.screen.query_one("#detail", Static).render())
        assert "Rule: supermajority 2/3 of eligible — yes must reach a share" in detail
    with Node.open(tmp_path, "default", PASS) as node:
        (decision,) = node.state("Union").decisions.values()
        assert (decision.rule.rule, decision.rule.base) == ("supermajority", "eligible")
        assert (decision.rule.threshold.num, decision.rule.threshold.den) == (2, 3)  # type: ignore[union-attr]


async def test_invite_endorse_and_verify_in_person(tmp_path: Path) -> None:
    _profile_with_network(tmp_path, with_ben=True)
    with Node.open(tmp_path, "default", PASS) as ana:
        ben_key = next(k for k, m in ana.state("Union").members.items() if m.display_name == "Ben")
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        screen = await _open_network(pilot, "agreements")
        await pilot.press("i")
        await pilot.pause()
        invite = app.screen
        assert isinstance(invite, InviteForm)
        await _type(pilot, "#uses", "0")
        await _press(pilot, "#ok")
        assert "1 to 100" in str(invite.query_one("#error", Label).render())
        await _type(pilot, "#uses", "3")
        await _type(pilot, "#days", "2")
        await _press(pilot, "#ok")
        assert isinstance(app.screen, ShowText)
        assert "P2P1-" in str(app.screen.query_one("#shown", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        screen.query_one("#agreements-table", DataTable).focus()
        await pilot.press("e")
        await pilot.pause()
        assert _cells(app, "#agreements-table")[0][4] == "Ana"
        screen.query_one("#tabs").active = "members"
        await pilot.pause()
        table = screen.query_one("#members-table", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(ben_key.hex()))
        await pilot.press("v")
        await pilot.pause()
        verify = app.screen
        assert isinstance(verify, VerifyForm)
        digits = str(verify.query_one("#digits", Static).render())
        assert len(digits.replace(" ", "")) == 60
        await _press(pilot, "#differ")
        assert isinstance(app.screen, VerifyForm)  # nothing recorded, the warning shown
        assert "Do not trust" in str(verify.query_one("#error", Label).render())
        await _press(pilot, "#ok")
        assert isinstance(app.screen, NetworkScreen)
        row = _cells(app, "#members-table")[table.get_row_index(ben_key.hex())]
        assert row[4] == "Ana"
    with Node.open(tmp_path, "default", PASS) as ana:
        assert ana.identity.public.key in ana.state("Union").members[ben_key].verified_by


async def test_panic_asks_once_then_leaves_nothing(tmp_path: Path) -> None:
    _profile_with_network(tmp_path)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        await pilot.press("ctrl+x")
        await pilot.pause()
        await pilot.press("escape")  # cancelled: nothing happens
        await pilot.pause()
        assert profile_dir(tmp_path, "default").exists()
        await pilot.press("ctrl+x")
        await pilot.pause()
        await _press(pilot, "#ok")
    assert not profile_dir(tmp_path, "default").exists()


async def test_an_op_from_a_peer_appears_without_a_key_press(tmp_path: Path) -> None:
    _profile_with_network(tmp_path, with_ben=True)
    ben = Node.open(tmp_path / "ben", "default", PASS)
    ben_thread = NodeThread(ben, listen=LOOPBACK, dial_members=False).start()
    try:
        address = ben_thread.runtimes[ben.network_id("Union")].addresses[0]
        app = P2pnetApp(tmp_path, kdf=FAST, listen=LOOPBACK, peers=[address])
        async with app.run_test(size=SIZE) as pilot:
            await _unlock(pilot)
            await _open_network(pilot, "decisions")
            for _ in range(200):
                if app._thread and app._thread.peers_online(ben.network_id("Union")):
                    break
                await pilot.pause(0.05)
            ben_thread.call(ben.propose, "Union", title="Pushed from Ben's node")
            for _ in range(100):  # no key is pressed meanwhile
                if any(r[0] == "Pushed from Ben's node" for r in _cells(app, "#decisions-table")):
                    break
                await pilot.pause(0.05)
            assert any(r[0] == "Pushed from Ben's node" for r in _cells(app, "#decisions-table"))
    finally:
        ben_thread.stop()
        ben.close()


async def test_the_log_tab_lists_closed_decisions_and_verifies(tmp_path: Path) -> None:
    _profile_with_network(tmp_path, with_ben=True)  # the charter's adoption is closed
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        screen = await _open_network(pilot, "log")
        text = str(screen.query_one("#log-text", Static).render())
        assert "Adopt: adopted" in text
        await pilot.press("l")
        await pilot.pause()
        text = str(screen.query_one("#log-text", Static).render())
        assert "Verified at" in text
        assert "1 closed decision(s)" in text
        screen.query_one("#tabs").active = "agreements"  # type: ignore[attr-defined]
        await pilot.pause()
        await pilot.press("enter")  # read the agreement
        await pilot.pause()
        assert isinstance(app.screen, ShowText)
        assert "We agree." in str(app.screen.query_one("#shown", Static).render())


async def test_the_app_online_holds_the_profile_lock(tmp_path: Path) -> None:
    _profile_with_network(tmp_path)
    app = P2pnetApp(tmp_path, kdf=FAST, listen=LOOPBACK)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        await _open_network(pilot, "overview")  # the first view brings the node online
        for _ in range(100):
            if NodeLock.held(profile_dir(tmp_path, "default")):
                break
            await pilot.pause(0.05)
        assert NodeLock.held(profile_dir(tmp_path, "default"))  # p2pnet run would refuse
    assert not NodeLock.held(profile_dir(tmp_path, "default"))  # released on exit


async def test_revise_an_agreement_opens_its_adoption_decision(tmp_path: Path) -> None:
    _profile_with_network(tmp_path, with_ben=True)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        await _open_network(pilot, "agreements")
        await pilot.press("r")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ReviseForm)
        await _type(pilot, "#title", "")
        await _press(pilot, "#ok")
        assert "needs a title" in str(form.query_one("#error", Label).render())
        await _type(pilot, "#title", "Charter, second version")
        await _press(pilot, "#ok")
        assert isinstance(app.screen, NetworkScreen)
    with Node.open(tmp_path, "default", PASS) as ana:
        state = ana.state("Union")
        (charter,) = state.agreements.values()
        assert len(charter.versions) == 2
        assert any(
            d.title == "Adopt: Charter, second version" and d.status == "open"
            for d in state.decisions.values()
        )


async def test_markup_in_what_peers_write_is_shown_as_text(tmp_path: Path) -> None:
    """Names, titles, reasons and texts come from other members: Rich markup in them must
    neither style the screen nor break it (an unmatched closing tag raised MarkupError)."""
    # Escaping is not enough: Textual still reads "[ @click=…]" and "[ link=…]".
    hostile = "[/b][ @click=app.quit]x[/][ link='https://example.invalid']y[/][red"
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network(hostile, "coordination", purpose=hostile)
        ana.update_profile(hostile, name="[/x]Ana")
        topic = ana.propose(hostile, title=hostile, text=hostile)
        ana.comment(hostile, topic.op_id.hex(), hostile)
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        assert _cells(app, "#networks")[0][0] == hostile
        screen = await _open_network(pilot, "decisions")
        assert _cells(app, "#decisions-table")[0][0] == hostile
        assert hostile in str(screen.query_one("#title", Static).render())
        screen.query_one("#tabs").active = "members"  # type: ignore[attr-defined]
        await pilot.pause()
        assert "[/x]Ana" in [r[0] for r in _cells(app, "#members-table")]
        screen.query_one("#tabs").active = "decisions"  # type: ignore[attr-defined]
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DecisionScreen)
        detail = str(app.screen.query_one("#detail", Static).render())
        assert detail.count(hostile) >= 3  # title, text and the comment, literally


async def test_a_proposal_keeps_the_networks_own_rule_unless_another_is_chosen(
    tmp_path: Path,
) -> None:
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Fund", "joint_funding")  # its ordinary rule is not the form's default
        ordinary = ana.state("Fund").settings.ordinary_rule
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _unlock(pilot)
        await _open_network(pilot, "decisions")
        await pilot.press("p")
        await pilot.pause()
        await _type(pilot, "#title", "Buy a printer")
        await _press(pilot, "#ok")
        assert isinstance(app.screen, NetworkScreen)
    with Node.open(tmp_path, "default", PASS) as ana:
        (decision,) = ana.state("Fund").decisions.values()
        assert decision.rule == ordinary
