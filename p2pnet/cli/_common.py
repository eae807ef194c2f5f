"""What every command shares: the passphrase, the profile, texts from files, durations, output."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from p2pnet.cli._text import render
from p2pnet.errors import P2pnetError
from p2pnet.node import Node
from p2pnet.profile import Profile, open_profile, passphrase_problem

EXIT_USER, EXIT_LOCKED, EXIT_INTEGRITY = 1, 2, 3
_NAME_KEY = "identity-name"
_MAX_TEXT_FILE = 256 * 1024  # bytes; the protocol limits texts to 20,000 characters
_DURATION = re.compile(r"(\d{1,6})\s*([dhm])")
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000}
_MAX_DURATION_MS = 365 * 86_400_000

Command = Callable[[argparse.Namespace], int | None]


class UserError(P2pnetError):
    """Bad input from the user: exit code 1."""


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    from_env = os.environ.get("P2PNET_PASSPHRASE")
    if from_env is not None:
        return from_env
    if args.passphrase_file is not None:
        try:
            text: str = args.passphrase_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read the passphrase file: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            # Not the decoder's message: it quotes a byte of the passphrase and its position.
            raise UserError("the passphrase file is not UTF-8 text") from None
        return text.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError(
            "no passphrase: set P2PNET_PASSPHRASE, use --passphrase-file, or run in a terminal"
        )
    first = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Passphrase again: ") != first:
        raise UserError("the two passphrases differ; nothing was created")
    return first


def _check_new_passphrase(passphrase: str) -> str:
    problem = passphrase_problem(passphrase)
    if problem:
        raise UserError(problem)
    return passphrase


def _home(args: argparse.Namespace) -> Path:
    home: Path = args.home or _default_home()
    return home


def _unlocking(args: argparse.Namespace) -> str:
    passphrase = _passphrase(args, confirm=False)
    if sys.stderr.isatty():
        sys.stderr.write("Unlocking (deriving the key from your passphrase)…\n")
    return passphrase


def _unlock(args: argparse.Namespace) -> Profile:
    return open_profile(_home(args), args.profile, _unlocking(args))


@contextmanager
def _open_node(args: argparse.Namespace) -> Iterator[Node]:
    node = Node.open(_home(args), args.profile, _unlocking(args))
    try:
        yield node
    finally:
        node.close()


def _read_text(path: Path) -> str:
    """A text file (or stdin for ``-``), at most :data:`_MAX_TEXT_FILE` bytes of UTF-8."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(_MAX_TEXT_FILE + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(_MAX_TEXT_FILE + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_TEXT_FILE:
        raise UserError(
            f"{path} is over {_MAX_TEXT_FILE // 1024} KiB; a text is at most 20,000 characters"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; save it as UTF-8 and try again") from None
    return text.replace("\r\n", "\n").strip()


def _text_arg(args: argparse.Namespace) -> str:
    if args.file is not None:
        return _read_text(args.file)
    text: str = args.text or ""
    return text


def _out_path(path: Path) -> Path:
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"there is no directory {path.parent}")
    return path


def _duration_ms(text: str) -> int:
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UserError(f"{text!r} is not a duration; write it like 3d, 12h or 30m")
    ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if not 0 < ms <= _MAX_DURATION_MS:
        raise UserError("a duration is at least a minute and at most a year")
    return ms


def _list_arg(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [word.strip() for word in text.split(",") if word.strip()]


class _Progress:
    """Progress on stderr, only when stderr is a terminal (scripts get clean output)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self.shown:
            sys.stderr.write(f"\r{self.label}: {done}/{total or '?'}")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if args.json else text)


def _view(args: argparse.Namespace, view: str, data: dict[str, Any]) -> None:
    _emit(args, data, render(view, data))


def _short(value: bytes) -> str:
    return value.hex()[:8]


def _new_passphrase() -> str:
    from_env = os.environ.get("P2PNET_NEW_PASSPHRASE")
    if from_env is not None:
        return _check_new_passphrase(from_env)
    if not sys.stdin.isatty():
        raise UserError("no new passphrase: set P2PNET_NEW_PASSPHRASE or run in a terminal")
    first = _check_new_passphrase(getpass.getpass("New passphrase: "))
    if getpass.getpass("New passphrase again: ") != first:
        raise UserError("the two passphrases differ; nothing was changed")
    return first


def _default_home() -> Path:
    import platformdirs  # noqa: PLC0415 - imported only when no --home is given

    return Path(platformdirs.user_data_dir("p2pnet", appauthor=False))
