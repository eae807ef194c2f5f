"""The first CLI commands, end to end: init, whoami, errors and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2pnet.cli import main
from p2pnet.profile import profile_dir

PASS = "correct horse battery staple"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("P2PNET_PASSPHRASE", PASS)
    return tmp_path / "home"


def run(home: Path, *args: str) -> int:
    return main(["--home", str(home), *args])


def test_init_then_whoami(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(home, "--json", "init", "--name", "شیرین") == 0
    created = json.loads(capsys.readouterr().out)
    assert created["name"] == "شیرین"
    assert run(home, "--json", "whoami") == 0
    me = json.loads(capsys.readouterr().out)
    assert me["name"] == "شیرین"
    assert me["fingerprint"] == created["fingerprint"]
    assert len(bytes.fromhex(me["public_key"])) == 32


def test_wrong_passphrase_is_exit_2_with_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(home, "init", "--name", "Ana") == 0
    capsys.readouterr()
    monkeypatch.setenv("P2PNET_PASSPHRASE", "not the passphrase")
    assert run(home, "whoami") == 2
    err = capsys.readouterr().err
    assert err == "p2pnet: wrong passphrase (nothing was changed)\n"


def test_missing_profile_and_bad_names_are_user_errors(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(home, "whoami") == 1
    assert "p2pnet init --name" in capsys.readouterr().err
    assert run(home, "--profile", "../escape", "init", "--name", "Ana") == 1
    assert "invalid profile name" in capsys.readouterr().err
    assert run(home, "init", "--name", "Ana") == 0
    assert run(home, "init", "--name", "Ana") == 1
    assert "already exists" in capsys.readouterr().err


def test_short_passphrase_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PNET_PASSPHRASE", "short")
    assert run(home, "init", "--name", "Ana") == 1
    assert not (home / "profiles" / "default" / "keystore").exists()


def test_damaged_keystore_is_exit_3(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(home, "init", "--name", "Ana") == 0
    (home / "profiles" / "default" / "keystore").write_bytes(b"garbage" * 10)
    assert run(home, "whoami") == 3
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_command_is_a_user_error(home: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run(home, "launch")
    assert exc.value.code == 1


def test_console_script_with_passphrase_file(tmp_path: Path) -> None:
    passphrase_file = tmp_path / "pass"
    passphrase_file.write_text(PASS + "\n")
    env = {k: v for k, v in os.environ.items() if k != "P2PNET_PASSPHRASE"}
    base = [sys.executable, "-m", "p2pnet.cli", "--home", str(tmp_path / "h")]
    base += ["--passphrase-file", str(passphrase_file)]
    created = subprocess.run(
        [*base, "init", "--name", "Ana"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    shown = subprocess.run(
        [*base, "--json", "whoami"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == "Ana"
    # Without any passphrase source and no terminal: a clear error, not a hang.
    bare = [sys.executable, "-m", "p2pnet.cli", "--home", str(tmp_path / "h"), "whoami"]
    refused = subprocess.run(
        bare,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 1
    assert "no passphrase" in refused.stderr


def test_invite_code_as_a_qr_code(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import segno  # noqa: PLC0415

    assert run(home, "init", "--name", "Ana") == 0
    assert run(home, "network", "create", "--name", "Net", "--type", "coordination") == 0
    capsys.readouterr()
    assert run(home, "invite", "create", "Net", "--qr") == 0
    printed = capsys.readouterr().out
    code = next(line for line in printed.splitlines() if line.startswith("P2P1-"))
    expected = io.StringIO()
    segno.make(code, error="m").terminal(out=expected, compact=True)
    assert expected.getvalue() in printed


def test_a_bad_display_name_creates_no_profile(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("   ", "x" * 101):
        assert run(home, "init", "--name", bad) == 1
        assert "1 to 100 characters" in capsys.readouterr().err
    assert not profile_dir(home, "default").exists()
    assert run(home, "init", "--name", "  Ana  ") == 0


def test_a_passphrase_file_that_is_not_utf8_is_refused_without_quoting_it(
    tmp_path: Path,
) -> None:
    passphrase_file = tmp_path / "pass"
    passphrase_file.write_bytes(b"secret\xffpart")
    done = subprocess.run(
        [sys.executable, "-m", "p2pnet.cli", "--home", str(tmp_path), "--passphrase-file",
         str(passphrase_file), "whoami"],
        capture_output=True, text=True, check=False, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "P2PNET_PASSPHRASE"},
    )  # fmt: skip
    assert done.returncode == 1
    assert "not UTF-8" in done.stderr
    assert "0xff" not in done.stderr
    assert "position" not in done.stderr
