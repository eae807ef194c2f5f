"""Joining online: ``p2pnet join`` with a code asks the inviter's running node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from p2pnet.net.invite import ask_once, note_text
from p2pnet.node import Node
from protocol.invite import parse_invite_code
from tests.net.test_cli_net import ROOT, _cli, _start_run, _stop
from tests.net.world import FAST, PASS, close_all, make_nodes, running, wait_for

pytestmark = pytest.mark.timeout(120)


def _join(home: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pnet.cli", "--home", str(home), "--json", "join", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "P2PNET_PASSPHRASE": PASS, "P2PNET_INVITE_CODE": code},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_join_online_then_sync_without_any_address_given(tmp_path: Path) -> None:
    (ana,) = make_nodes(tmp_path, ["Ana"])
    close_all([ana])
    for name in ("Ben", "Cyd"):
        Node.create(tmp_path / name.lower(), "default", PASS, name=name, kdf=FAST).close()
    proc, _address = _start_run(tmp_path / "ana")
    try:
        time.sleep(0.5)  # the status row with the invite addresses is written at start
        made = _cli(tmp_path / "ana", "--json", "invite", "create", "Net")
        assert made.returncode == 0, made.stderr
        invite = json.loads(made.stdout)
        assert invite["online"] is True
        joined = _join(tmp_path / "ben", invite["code"])
        assert joined.returncode == 0, joined.stderr
        assert json.loads(joined.stdout.splitlines()[-1])["joined"] is True
        # Ben knows Ana's address from the state he was welcomed with: no --peer needed.
        synced = _cli(tmp_path / "ben", "--json", "sync", "Net")
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["peers"] == 1
        start = time.monotonic()
        reused = _join(tmp_path / "cyd", invite["code"])
        took = time.monotonic() - start
        assert reused.returncode == 1
        assert "already used" in reused.stderr
        assert "Traceback" not in reused.stderr
        assert took < 10  # a whole process with the unlock; the refusal itself is quick
    finally:
        code, _out, err = _stop(proc)
    assert code == 0, err
    with Node.open(tmp_path / "ben", "default", PASS) as ben:
        assert {m.display_name for m in ben.state("Net").members.values()} == {"Ana", "Ben"}


def test_expired_and_reused_codes_are_refused_quickly(tmp_path: Path) -> None:
    ana, ben, cyd = nodes = make_nodes(tmp_path, ["Ana"]) + [
        Node.create(tmp_path / n, "default", PASS, name=n, kdf=FAST) for n in ("ben", "cyd")
    ]

    async def main() -> None:
        async with running([ana]) as (ra,):
            expiring = parse_invite_code(
                ana.create_invite("Net", expires_in_ms=1, addresses=ra.invite_addresses)
            )
            await trio.sleep(0.05)
            _net, request = ben.join_request_bytes(expiring)
            start = trio.current_time()
            outcome = await ask_once(expiring, request)
            assert trio.current_time() - start < 3
            assert outcome.status == "refused"
            assert "expired" in outcome.note
            code = parse_invite_code(ana.create_invite("Net", addresses=ra.invite_addresses))
            _net, request = ben.join_request_bytes(code)
            first = await ask_once(code, request)
            assert first.status == "welcome"
            _net, other = cyd.join_request_bytes(code)
            again = await ask_once(code, other)
            assert again.status == "refused"
            assert "already used" in again.note
            ben.import_welcome(first.welcome or b"")
            assert ben.is_active(ra.network_id, ben.identity.public.key)
            # A garbage request is refused, and the invite host keeps serving.
            junk = await ask_once(code, b"\x00" * 100)
            assert junk.status == "refused"

    try:
        trio.run(main)
    finally:
        close_all(nodes)


def test_an_online_joiner_sees_a_proposal_within_two_seconds(tmp_path: Path) -> None:
    (ana,) = make_nodes(tmp_path, ["Ana"])
    ben = Node.create(tmp_path / "ben", "default", PASS, name="Ben", kdf=FAST)

    async def main() -> None:
        async with running([ana]) as (ra,):
            code = parse_invite_code(ana.create_invite("Net", addresses=ra.invite_addresses))
            _net, request = ben.join_request_bytes(code)
            outcome = await ask_once(code, request)
            ben.import_welcome(outcome.welcome or b"")
            async with running([ben], links={0: []}, dial_members=True) as (rb,):
                await wait_for(lambda: rb.sessions, 5, "Ben reached Ana by her published address")
                ana.propose("Net", title="Welcome, Ben")
                await wait_for(
                    lambda: any(
                        d.title == "Welcome, Ben" for d in ben.state("Net").decisions.values()
                    ),
                    2,
                    "the proposal",
                )

    try:
        trio.run(main)
    finally:
        close_all([ana, ben])


def test_an_inviter_nodes_note_reaches_the_screen_without_control_characters() -> None:
    """The note comes from the node at the invite's address: escapes, line breaks and
    direction overrides it chose are not printed to the joiner's terminal."""
    hostile = "\x1b[2J\x1b]0;title\x07Decision \u202epending\u202c\nopen\r".encode()
    assert note_text(hostile) == "[2J]0;titleDecision pendingopen"
    assert note_text(b"\xff\xfe waiting") == "\ufffd\ufffd waiting"
