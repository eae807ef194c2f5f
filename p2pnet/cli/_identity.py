"""Commands on the profile itself: init, whoami, version, passphrase change, panic."""

from __future__ import annotations

import argparse
import os
import sys

from p2pnet.cli._common import (
    _NAME_KEY,
    UserError,
    _check_new_passphrase,
    _emit,
    _home,
    _new_passphrase,
    _open_node,
    _passphrase,
    _unlock,
)
from p2pnet.node import Node
from p2pnet.profile import create_profile, profile_dir
from p2pnet.references import check_name


def _init(args: argparse.Namespace) -> None:
    name = check_name(args.name)
    passphrase = _check_new_passphrase(_passphrase(args, confirm=True))
    profile = create_profile(_home(args), args.profile, passphrase)
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


def _passphrase_change(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        new = _new_passphrase()
        node.change_passphrase(new)
    _emit(args, {"changed": True}, "Your passphrase is changed. The old one no longer opens it.")


def _panic(args: argparse.Namespace) -> None:
    home = _home(args)
    exists = profile_dir(home, args.profile).exists()
    if exists and not args.yes:
        sys.stderr.write(
            f"This destroys profile {args.profile!r} on this device: your identity, your "
            "networks and everything stored. Type WIPE to go ahead: "
        )
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not sys.stdin.isatty():
            sys.stderr.write("\n")  # the answer came from a pipe: end the prompt's line
        if answer.strip() != "WIPE":
            raise UserError("not confirmed; nothing was wiped")
    Node.panic(home, args.profile)
    _emit(
        args,
        {"profile": args.profile, "wiped": exists},
        f"Profile {args.profile!r} is wiped." if exists else f"No profile {args.profile!r} here.",
    )


def _demo(args: argparse.Namespace) -> None:
    """Hand over to the terminal app's demo (its own program: p2pnet does not import the
    UI layer)."""
    os.execv(sys.executable, [sys.executable, "-m", "tui.demo"])  # noqa: S606 - our module


def _ui(args: argparse.Namespace) -> None:
    """Open the terminal app on this profile."""
    argv = [sys.executable, "-m", "tui", "--profile", args.profile]
    if args.home is not None:
        argv += ["--home", str(args.home)]
    os.execv(sys.executable, argv)  # noqa: S606 - our own module
