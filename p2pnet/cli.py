"""The ``p2pnet`` command line (first commands: the rest arrive with the node, issue 5).

One boundary for errors: every failure a user, a file or a peer can cause becomes one
clear line on stderr and an exit code — 0 success, 1 user error, 2 locked (wrong or
missing passphrase), 3 data integrity problem. ``--debug`` shows the traceback.
Passphrases come from ``P2PNET_PASSPHRASE``, ``--passphrase-file`` or a prompt, never
from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from crypto import (
    CryptoError,
    KeystoreCorrupt,
    KeystoreLocked,
    KeystoreMissing,
)
from p2pnet.errors import P2pnetError, StoreCorrupt
from p2pnet.profile import Profile, ProfileError, create_profile, open_profile

__all__ = ["main"]

EXIT_USER, EXIT_LOCKED, EXIT_INTEGRITY = 1, 2, 3
_NAME_KEY = "identity-name"


class UserError(P2pnetError):
    """Bad input from the user: exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"p2pnet: {message}\n")
        raise SystemExit(EXIT_USER)


def _default_home() -> Path:
    import platformdirs  # noqa: PLC0415 - imported only when no --home is given

    return Path(platformdirs.user_data_dir("p2pnet", appauthor=False))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="p2pnet", description="Private coordination for civic networks.")
    parser.add_argument("--home", type=Path, help="where profiles live (default: platform)")
    parser.add_argument("--profile", default="default", help="profile name (default: default)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--passphrase-file", type=Path, help="read the passphrase from this file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="create your identity in a new profile")
    init.add_argument("--name", required=True, help="your display name")
    commands.add_parser("whoami", help="your fingerprint and public key")
    commands.add_parser("version", help="the program's version")
    return parser


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    from_env = os.environ.get("P2PNET_PASSPHRASE")
    if from_env is not None:
        return from_env
    if args.passphrase_file is not None:
        try:
            text: str = args.passphrase_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the passphrase file: {exc}") from None
        return text.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError(
            "no passphrase: set P2PNET_PASSPHRASE, use --passphrase-file, or run in a terminal"
        )
    first = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Passphrase again: ") != first:
        raise UserError("the two passphrases differ; nothing was created")
    return first


def _unlock(args: argparse.Namespace) -> Profile:
    passphrase = _passphrase(args, confirm=False)
    if sys.stderr.isatty():
        sys.stderr.write("Unlocking (deriving the key from your passphrase)…\n")
    return open_profile(args.home or _default_home(), args.profile, passphrase)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if args.json else text)


def _init(args: argparse.Namespace) -> None:
    name = args.name.strip()
    if not 1 <= len(name) <= 100:
        raise UserError("the name must be 1 to 100 characters")
    passphrase = _passphrase(args, confirm=True)
    if len(passphrase) < 8:
        raise UserError("choose a passphrase of at least 8 characters (a few words is best)")
    profile = create_profile(args.home or _default_home(), args.profile, passphrase)
    try:
        profile.store.put(None, _NAME_KEY, name.encode("utf-8"))
        public = profile.keystore.contents.identity.public
    finally:
        profile.close()
    _emit(
        args,
        {"profile": args.profile, "name": name, "fingerprint": public.fingerprint},
        f"Created profile {args.profile!r} for {name}.\nYour fingerprint: {public.fingerprint}",
    )


def _whoami(args: argparse.Namespace) -> None:
    profile = _unlock(args)
    try:
        raw = profile.store.get(None, _NAME_KEY)
        public = profile.keystore.contents.identity.public
    finally:
        profile.close()
    name = raw.decode("utf-8") if raw else ""
    _emit(
        args,
        {"name": name, "fingerprint": public.fingerprint, "public_key": public.key.hex()},
        f"{name}\nfingerprint: {public.fingerprint}\npublic key:  {public.key.hex()}",
    )


def _version(args: argparse.Namespace) -> None:
    from importlib.metadata import version  # noqa: PLC0415 - only this command needs it

    _emit(args, {"version": version("p2pnet")}, f"p2pnet {version('p2pnet')}")


_COMMANDS = {"init": _init, "whoami": _whoami, "version": _version}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        _COMMANDS[args.command](args)
    except KeystoreLocked:
        _fail(args, "wrong passphrase (nothing was changed)")
        return EXIT_LOCKED
    except KeystoreMissing:
        _fail(args, f"no profile {args.profile!r} here; create one with: p2pnet init --name NAME")
        return EXIT_USER
    except (KeystoreCorrupt, StoreCorrupt) as exc:
        _fail(args, f"{exc}; restore the profile from a backup or from other members")
        return EXIT_INTEGRITY
    except (UserError, ProfileError) as exc:
        _fail(args, str(exc))
        return EXIT_USER
    except (P2pnetError, CryptoError, OSError) as exc:
        _fail(args, str(exc))
        return EXIT_USER
    except KeyboardInterrupt:
        _fail(args, "interrupted")
        return EXIT_USER
    return 0


def _fail(args: argparse.Namespace, message: str) -> None:
    if args.debug:
        import traceback  # noqa: PLC0415 - only with --debug

        traceback.print_exc()
    sys.stderr.write(f"p2pnet: {message}\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
