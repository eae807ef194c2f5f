"""The ``p2pnet`` command line: every action of the node, for people and for scripts.

One boundary for errors: every failure a user, a file or a peer can cause becomes one
clear line on stderr and an exit code — 0 success, 1 user error (bad input, not found,
not allowed), 2 locked (wrong or missing passphrase), 3 data integrity problem (a
damaged profile, a decision log that does not verify, a bundle with refused parts).
``--debug`` shows the traceback.

Secrets never come from the command line: the passphrase comes from
``P2PNET_PASSPHRASE``, ``--passphrase-file`` or a prompt; a new passphrase from
``P2PNET_NEW_PASSPHRASE`` or a prompt (twice).

Reading commands print plain-text tables, or with ``--json`` one JSON document whose
field names docs/cli.md documents (built in :mod:`p2pnet._cli_output`). Writing
commands print what they did, or with ``--json`` the ids they created.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from crypto import (
    CryptoError,
    KeystoreCorrupt,
    KeystoreLocked,
    KeystoreMissing,
    is_valid_public_key,
)
from p2pnet import _cli_output as out
from p2pnet.errors import P2pnetError, StoreCorrupt
from p2pnet.node import Node, parse_rule
from p2pnet.profile import Profile, ProfileError, create_profile, open_profile, profile_dir
from protocol import LocalProtocolError, ProtocolError, verify_log
from protocol.log import MAX_LOG_BYTES
from protocol.rules import STANCES, RuleSpec
from protocol.state import NetworkState
from protocol.vocabulary import DECISION_KINDS

__all__ = ["main"]

EXIT_USER, EXIT_LOCKED, EXIT_INTEGRITY = 1, 2, 3
_NAME_KEY = "identity-name"
_MAX_TEXT_FILE = 256 * 1024  # bytes; the protocol limits texts to 20,000 characters
_DURATION = re.compile(r"(\d{1,6})\s*([dhm])")
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000}
_MAX_DURATION_MS = 365 * 86_400_000

Command = Callable[[argparse.Namespace], int | None]


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


# -- the command tree -------------------------------------------------------------------


def _json_flag() -> argparse.ArgumentParser:
    # ``--json`` is accepted after the command too; SUPPRESS keeps a global --json in force.
    flag = argparse.ArgumentParser(add_help=False)
    flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document"
    )
    return flag


def _group(commands: Any, name: str, help_text: str) -> Any:
    group = commands.add_parser(name, help=help_text)
    return group.add_subparsers(dest="action", required=True, metavar="ACTION")


def _leaf(
    commands: Any, name: str, func: Command, help_text: str, *positionals: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, parents=[_json_flag()]
    )
    parser.set_defaults(func=func)
    for positional in positionals:
        kind = Path if positional in ("file", "request") else str
        parser.add_argument(positional, metavar=positional.upper(), type=kind)
    return parser


def _text_source(parser: argparse.ArgumentParser, *, required: bool) -> None:
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--text", help="the text itself")
    source.add_argument("--file", type=Path, help="read the text from a UTF-8 file (- for stdin)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="p2pnet", description="Private coordination for civic networks.")
    parser.add_argument("--home", type=Path, help="where profiles live (default: platform)")
    parser.add_argument("--profile", default="default", help="profile name (default: default)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--passphrase-file", type=Path, help="read the passphrase from this file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = _leaf(commands, "init", _init, "create your identity in a new profile")
    init.add_argument("--name", required=True, help="your display name")
    _leaf(commands, "whoami", _whoami, "your fingerprint and public key")
    _leaf(commands, "version", _version, "the program's version")
    _network_commands(commands)
    _member_commands(commands)
    _agreement_commands(commands)
    _decision_commands(commands)
    _invite_commands(commands)
    _record_commands(commands)
    return parser


def _network_commands(commands: Any) -> None:
    network = _group(commands, "network", "create, list and show networks")
    create = _leaf(network, "create", _network_create, "create a network; you are its founder")
    create.add_argument("--name", required=True)
    create.add_argument("--type", required=True, help="information_exchange, coordination, …")
    create.add_argument("--purpose", default="", help="one or two sentences")
    _leaf(network, "list", _network_list, "your networks")
    _leaf(network, "show", _network_show, "a network and its rules", "net")
    _leaf(commands, "leave", _leave, "leave a network (cannot be undone)", "net")
    _leaf(
        commands,
        "rekey",
        _rekey,
        "make a new network key after a departure the designated member has not answered",
        "net",
    )


def _member_commands(commands: Any) -> None:
    member = _group(commands, "member", "members, their profiles, verification and matching")
    _leaf(member, "list", _member_list, "the members of a network", "net")
    _leaf(member, "show", _member_show, "one member", "net", "member")
    update = _leaf(member, "update", _member_update, "change your own member profile", "net")
    update.add_argument("--name")
    update.add_argument("--kind", help="individual, civil_society_org, media, …")
    update.add_argument("--offers", help="comma-separated, e.g. expertise_legal,funding")
    update.add_argument("--needs", help="comma-separated, e.g. meeting_space")
    help_text = "the number to compare in person"
    safety = _leaf(member, "safety-number", _safety_number, help_text, "net", "member")
    safety.add_argument("--qr", action="store_true", help="also show a QR code to scan")
    help_text = "record an in-person verification"
    verify = _leaf(member, "verify", _member_verify, help_text, "net", "member")
    verify.add_argument("--safety-number", required=True, dest="digits")
    _leaf(member, "match", _member_match, "needs matched to offers", "net")
    remove = _leaf(commands, "remove", _remove, "sign an emergency removal", "net", "member")
    remove.add_argument("--emergency", action="store_true", help="required: see docs/cli.md")
    remove.add_argument("--reason", default="emergency removal: device seized or member at risk")


def _agreement_commands(commands: Any) -> None:
    agreement = _group(commands, "agreement", "the network's charter and other agreements")
    add = _leaf(agreement, "add", _agreement_add, "write an agreement or a new version", "net")
    add.add_argument("--kind", required=True, help="charter, ethical_standards, …")
    add.add_argument("--title", required=True)
    _text_source(add, required=True)
    add.add_argument("--revise", metavar="AGREEMENT", help="a new version of this agreement")
    _leaf(agreement, "list", _agreement_list, "the network's agreements", "net")
    help_text = "one agreement and its versions"
    _leaf(agreement, "show", _agreement_show, help_text, "net", "agreement")
    help_text = "endorse the version in force"
    _leaf(agreement, "endorse", _agreement_endorse, help_text, "net", "agreement")


def _decision_commands(commands: Any) -> None:
    propose = _leaf(commands, "propose", _propose, "open a decision", "net")
    propose.add_argument("--title", required=True)
    propose.add_argument("--rule", help="consent, consensus, majority, supermajority:2/3:eligible…")
    _text_source(propose, required=False)
    propose.add_argument("--kind", default="general", help=", ".join(DECISION_KINDS))
    propose.add_argument("--subject", help="the member, new member's key or agreement")
    propose.add_argument("--role", help="the role to assign (with --kind role)")
    propose.add_argument("--quorum", help="a fraction like 1/2")
    propose.add_argument("--closes-in", help="a duration like 3d, 12h or 30m")
    propose.add_argument("--option", action="append", help="not yet: no rule has options")
    decision = _group(commands, "decision", "list and show decisions")
    _leaf(decision, "list", _decision_list, "the network's decisions", "net")
    help_text = "one decision, its positions and tally"
    _leaf(decision, "show", _decision_show, help_text, "net", "decision")
    help_text = "take (or change) your position; the stances depend on the rule"
    position = _leaf(commands, "position", _position, help_text, "net", "decision", "stance")
    position.add_argument("--reason", default="")
    help_text = "close a decision and record its outcome"
    _leaf(commands, "close", _close, help_text, "net", "decision")
    help_text = "comment on a decision or agreement"
    _leaf(commands, "comment", _comment, help_text, "net", "target", "text")


def _invite_commands(commands: Any) -> None:
    invite = _group(commands, "invite", "invite someone into a network, by hand")
    create = _leaf(invite, "create", _invite_create, "make an invite code", "net")
    create.add_argument("--uses", type=int, default=1, help="how many people (default 1)")
    create.add_argument("--expires-in", default="7d", help="e.g. 3d or 12h (at most 90d)")
    create.add_argument(
        "--qr", action="store_true", help="also show the code as a QR code in the terminal"
    )
    help_text = "admit the writer of a join request"
    accept = _leaf(invite, "accept", _invite_accept, help_text, "net", "request")
    accept.add_argument("--out", type=Path, required=True, help="where to write the welcome")
    join = _leaf(commands, "join", _join, "ask to join (the code comes from env or a prompt)")
    join.add_argument("--request", type=Path, required=True, help="the file for your inviter")


def _record_commands(commands: Any) -> None:
    log = _leaf(commands, "log", _log, "the decision log: show, export, verify")
    log.usage = "p2pnet log NET | log export NET FILE [--plain] | log verify FILE"
    log.add_argument("words", nargs="+", metavar="WORD")
    log.add_argument("--plain", action="store_true", help="export unencrypted (for auditors)")
    bundle = _group(commands, "bundle", "carry updates by hand (USB stick, file transfer)")
    help_text = "write what you hold, for a member"
    _leaf(bundle, "summary", _bundle_summary, help_text, "net", "file")
    export = _leaf(bundle, "export", _bundle_export, "write a bundle of updates", "net", "file")
    export.add_argument("--for", dest="for_summary", type=Path, help="only what it lacks")
    _leaf(bundle, "import", _bundle_import, "read a bundle or a welcome file", "file")
    passphrase = _group(commands, "passphrase", "your profile's passphrase")
    _leaf(passphrase, "change", _passphrase_change, "choose a new passphrase")
    panic = _leaf(commands, "panic", _panic, "destroy this profile now")
    panic.add_argument("--yes", action="store_true", help="do not ask for confirmation")


# -- passphrases, unlocking, input ------------------------------------------------------


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


def _check_new_passphrase(passphrase: str) -> str:
    if len(passphrase) < 8:
        raise UserError("choose a passphrase of at least 8 characters (a few words is best)")
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
    _emit(args, data, out.render(view, data))


def _short(value: bytes) -> str:
    return value.hex()[:8]


# -- identity ---------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> None:
    name = args.name.strip()
    if not 1 <= len(name) <= 100:
        raise UserError("the name must be 1 to 100 characters")
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


# -- networks ---------------------------------------------------------------------------


def _network_create(args: argparse.Namespace) -> None:
    name = args.name.strip()
    with _open_node(args) as node:
        if any(s.name.casefold() == name.casefold() for s in node.networks()):
            raise UserError(f"you already have a network called {name!r}; choose another name")
        network_id = node.create_network(name, args.type, purpose=args.purpose.strip())
    _emit(
        args,
        {"id": network_id.hex(), "name": name},
        f"Created network {name} ({network_id.hex()}). You are its first member.\n"
        f"Invite someone: p2pnet invite create {shlex.quote(name)}",
    )


def _network_list(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        _view(args, "network_list", out.network_list(node.networks()))


def _network_show(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        _view(args, "network", out.network_view(node.state(args.net)))


def _leave(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        state = node.state(args.net)
        op = node.leave(args.net)
    _emit(
        args,
        {"network": state.network_id.hex(), "op_id": op.op_id.hex()},
        f"You left {state.name}. What you wrote stays in its history.",
    )


def _rekey(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        made = node.rekey(args.net)
    _emit(
        args,
        {"new_epochs": made},
        f"Made {made} new network key(s); carry a bundle to the other members."
        if made
        else "Every departure already has its new key; nothing to do.",
    )


# -- members ----------------------------------------------------------------------------


def _member_list(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        state = node.state(args.net)
        _view(args, "member_list", out.member_list(state, node.identity.public.key))


def _member_show(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        key = node.member_key(args.net, args.member)
        state = node.state(args.net)
        _view(args, "member", out.member_view(state, key, node.identity.public.key))


def _member_update(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        op = node.update_profile(
            args.net,
            name=args.name,
            kind=args.kind,
            offers=_list_arg(args.offers),
            needs=_list_arg(args.needs),
        )
    _emit(args, {"op_id": op.op_id.hex()}, "Your member profile is updated.")


def _other_member(node: Node, net: str, member: str) -> bytes:
    key = node.member_key(net, member)
    if key == node.identity.public.key:
        raise UserError("that is you: choose another member")
    return key


def _active(state: NetworkState, key: bytes) -> bytes:
    """``key``, refused before anything is written when that member is not active."""
    status = state.members[key].status
    if status != "active":
        raise UserError("that member has left" if status == "left" else "that member was removed")
    return key


def _safety_number(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        key = _other_member(node, args.net, args.member)
        number = node.safety_number_with(args.net, args.member)
        words = node.safety_words(args.net, args.member)
        name = node.state(args.net).members[key].display_name
        qr = _qr_text(node.verification_qr(args.net, args.member)) if args.qr else ""
    _emit(
        args,
        {
            "member": key.hex(),
            "name": name,
            "safety_number": number,
            "digits": number.replace(" ", ""),
            "words": list(words),
        },
        f"{qr}Your safety number with {name or _short(key)}:\n{number}\n"
        f"In words: {' '.join(words)}\n"
        "Compare the digits in person (the words are an aid for reading aloud). If they "
        f"match: p2pnet member verify {shlex.quote(args.net)} {_short(key)} "
        "--safety-number DIGITS",
    )


def _member_verify(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        key = _other_member(node, args.net, args.member)
        op = node.verify_member(args.net, args.member, args.digits)
        name = node.state(args.net).members[key].display_name
    _emit(
        args,
        {"member": key.hex(), "op_id": op.op_id.hex()},
        f"Recorded: you verified {name or _short(key)} in person.",
    )


def _member_match(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        state = node.state(args.net)
        _view(args, "match", out.match_view(state, node.matches(args.net)))


def _remove(args: argparse.Namespace) -> None:
    if not args.emergency:
        raise UserError(
            "an ordinary removal is a decision: p2pnet propose NET --kind removal "
            "--subject MEMBER --title TITLE; add --emergency only if a device was seized"
        )
    with _open_node(args) as node:
        key = _active(node.state(args.net), _other_member(node, args.net, args.member))
        op = node.emergency_remove(args.net, args.member, args.reason)
        state = node.state(args.net)
    removed = state.members[key].status == "removed"
    needed = state.settings.emergency_k
    _emit(
        args,
        {"member": key.hex(), "op_id": op.op_id.hex(), "removed": removed},
        "The member is removed and a new network key was made for the others. Carry a "
        "bundle to the other members soon: until they have the new key, what they write "
        "can still be read with the old one."
        if removed
        else f"Your emergency-removal signature is recorded; the member is removed once "
        f"{needed} members have signed.",
    )


# -- agreements -------------------------------------------------------------------------


def _agreement_add(args: argparse.Namespace) -> None:
    text = _text_arg(args)
    with _open_node(args) as node:
        op = node.add_agreement(
            args.net, kind=args.kind, title=args.title, text=text, agreement=args.revise
        )
        agreement_id = node.state(args.net).versions[op.op_id].agreement
    _emit(
        args,
        {"agreement_id": agreement_id.hex(), "version_id": op.op_id.hex()},
        f"Written ({_short(agreement_id)}). To put it in force, propose its adoption:\n"
        f"  p2pnet propose {shlex.quote(args.net)} --kind agreement_adoption "
        f"--subject {_short(agreement_id)} --title TITLE",
    )


def _agreement_list(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        _view(args, "agreement_list", out.agreement_list(node.state(args.net)))


def _agreement_show(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        agreement_id = node.agreement_id(args.net, args.agreement)
        view = out.agreement_view(node.state(args.net), agreement_id, node.identity.public.key)
        _view(args, "agreement", view)


def _agreement_endorse(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        op = node.endorse(args.net, args.agreement)
    _emit(args, {"op_id": op.op_id.hex()}, "Your endorsement is recorded.")


# -- decisions --------------------------------------------------------------------------


def _chosen_rule(args: argparse.Namespace, state: NetworkState, kind: str) -> RuleSpec | None:
    fixed = state.settings.rule_for(kind)
    if fixed is None:
        if args.rule is None:
            raise UserError(
                f"a {kind} decision needs --rule: consent, consensus, majority, advice, "
                "sense_check or supermajority:NUM/DEN:BASE (base cast, participating, eligible)"
            )
        return parse_rule(args.rule, quorum=args.quorum)
    if args.rule is None and args.quorum is None:
        return None
    given = parse_rule(
        args.rule or out.rule_spec(fixed),
        quorum=args.quorum or f"{fixed.quorum.num}/{fixed.quorum.den}",
    )
    if given != fixed:
        raise UserError(
            f"a {kind} decision uses this network's rule {out.rule_spec(fixed)} with quorum "
            f"{fixed.quorum.num}/{fixed.quorum.den}; leave out --rule and --quorum"
        )
    return None


def _subject(node: Node, args: argparse.Namespace, state: NetworkState, kind: str) -> Any:
    if kind == "governance_change":
        raise UserError(
            "changing the network's settings cannot be proposed from the command line yet; "
            "use the terminal UI once it exists"
        )
    if args.role is not None and kind != "role":
        raise UserError("--role goes with --kind role")
    if kind == "general":
        if args.subject is not None:
            raise UserError("a general decision has no --subject")
        return None
    if args.subject is None:
        raise UserError(f"a {kind} decision needs --subject")
    if kind == "admission":
        return _new_member_key(args.subject, state)
    if kind == "agreement_adoption":
        agreement = state.agreements[node.agreement_id(args.net, args.subject)]
        if agreement.adopted == agreement.versions[-1]:
            raise UserError("the latest version of this agreement is already in force")
        return agreement.versions[-1]
    key = _active(state, node.member_key(args.net, args.subject))
    if kind == "role":
        if not args.role:
            raise UserError("a role decision needs --role NAME")
        return {"member": key, "role": args.role}
    return key


def _new_member_key(text: str, state: NetworkState) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32 or not is_valid_public_key(key):
        raise UserError(
            "an admission's --subject is the new member's public key, 64 hex digits "
            "(they see it with: p2pnet whoami)"
        )
    if key in state.members:
        raise UserError("that key is already a member or a former member")
    return key


def _propose(args: argparse.Namespace) -> None:
    kind = args.kind
    if kind not in DECISION_KINDS:
        raise UserError(f"unknown decision kind {kind!r}; use one of {', '.join(DECISION_KINDS)}")
    if args.option:
        raise UserError("no decision rule takes --option yet (ranked and score votes come later)")
    closes_in = _duration_ms(args.closes_in) if args.closes_in else None
    text = _text_arg(args)
    with _open_node(args) as node:
        state = node.state(args.net)
        rule = _chosen_rule(args, state, kind)
        subject = _subject(node, args, state, kind)
        op = node.propose(
            args.net,
            title=args.title,
            rule=rule,
            text=text,
            kind=kind,
            subject=subject,
            closes_in_ms=closes_in,
        )
        decision = node.state(args.net).decisions[op.op_id]
    stances = ", ".join(sorted(STANCES[decision.rule.rule]))
    _emit(
        args,
        {"decision_id": op.op_id.hex(), "rule": out.rule_view(decision.rule)},
        f"Proposed {decision.title} ({_short(op.op_id)}) under {out.rule_spec(decision.rule)}.\n"
        f"Take a position: p2pnet position {shlex.quote(args.net)} {_short(op.op_id)} STANCE\n"
        f"Stances: {stances}",
    )


def _decision_list(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        _view(args, "decision_list", out.decision_list(node.state(args.net)))


def _decision_show(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        decision_id = node.decision_id(args.net, args.decision)
        state = node.state(args.net)
        open_ = state.decisions[decision_id].status == "open"
        projected = node.projected_outcome(args.net, args.decision) if open_ else None
        found = state.decisions[decision_id]
        wanted = [
            found.rounds[-1],
            *(p.op_id for p in found.positions),
            *state.comments.get(decision_id, ()),
        ]
        texts = node.texts(args.net, wanted)
        _view(args, "decision", out.decision_view(state, decision_id, projected, texts))


def _open_decision(node: Node, net: str, decision: str) -> bytes:
    """The decision's id; refuses before anything is written when it is no longer open."""
    decision_id = node.decision_id(net, decision)
    status = node.state(net).decisions[decision_id].status
    if status != "open":
        raise UserError(f"this decision is {status}: nothing can change it any more")
    return decision_id


def _position(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        decision_id = _open_decision(node, args.net, args.decision)
        op = node.position(args.net, args.decision, args.stance, args.reason)
    _emit(
        args,
        {"decision_id": decision_id.hex(), "op_id": op.op_id.hex(), "stance": args.stance},
        f"Your position ({args.stance}) is recorded; every member can see it.",
    )


def _close(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        decision_id = _open_decision(node, args.net, args.decision)
        op = node.close_decision(args.net, args.decision)
        outcome = out.tally_view(node.state(args.net).decisions[decision_id].outcome)
    _emit(
        args,
        {"decision_id": decision_id.hex(), "op_id": op.op_id.hex(), "outcome": outcome},
        f"Closed: {outcome['outcome'] if outcome else 'recorded'}.",
    )


def _comment(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        op = node.comment(args.net, args.target, args.text)
    _emit(args, {"op_id": op.op_id.hex()}, "Your comment is recorded.")


# -- the decision log -------------------------------------------------------------------


def _log(args: argparse.Namespace) -> int | None:
    words: list[str] = args.words
    if words[0] == "export" and len(words) == 3:
        _log_export(args, words[1], Path(words[2]))
        return None
    if words[0] == "verify" and len(words) == 2:
        return _log_verify(args, Path(words[1]))
    if len(words) != 1:
        raise UserError("use: p2pnet log NET | log export NET FILE [--plain] | log verify FILE")
    if args.plain:
        raise UserError("--plain goes with: p2pnet log export NET FILE --plain")
    with _open_node(args) as node:
        _view(args, "log", out.log_view(node.state(words[0])))
    return None


def _log_export(args: argparse.Namespace, net: str, path: Path) -> None:
    with _open_node(args) as node:
        count = node.log_export(net, _out_path(path), plain=args.plain)
    if args.plain:
        sys.stderr.write(
            f"p2pnet: warning: {path} is NOT encrypted: anyone who gets the file can read "
            "every closed decision, who took which position and the members' names\n"
        )
    _emit(
        args,
        {"file": str(path), "decision_count": count, "plain": args.plain},
        f"Wrote {count} closed decision{'' if count == 1 else 's'} to {path}"
        + ("." if args.plain else " (encrypted: members of the network can read it)."),
    )


def _log_verify(args: argparse.Namespace, path: Path) -> int:
    if sys.stderr.isatty():
        sys.stderr.write("Verifying the decision log…\n")
    if not (profile_dir(_home(args), args.profile) / "keystore").exists():
        # An outside auditor has no profile: plain logs need no key.
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_LOG_BYTES + 1)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_LOG_BYTES:
            raise UserError(f"{path} is too large to be a decision log")
        report = verify_log(data)
    else:
        with _open_node(args) as node:
            report = node.log_verify(path)
    _view(args, "verify", out.verify_view(report))
    if report.ok:
        return 0
    sys.stderr.write(
        f"p2pnet: the decision log did NOT verify ({len(report.problems)} problem(s))\n"
    )
    return EXIT_INTEGRITY


# -- bundles ----------------------------------------------------------------------------


def _bundle_summary(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        data = node.bundle_summary(args.net, _out_path(args.file))
    _emit(
        args,
        {"file": str(args.file), "bytes": len(data)},
        f"Wrote what you hold to {args.file} ({len(data)} bytes). A member who has it "
        "can export just what you lack: p2pnet bundle export NET FILE --for SUMMARY",
    )


def _bundle_export(args: argparse.Namespace) -> None:
    progress = _Progress("Writing the bundle")
    with _open_node(args) as node:
        count = node.bundle_export(
            args.net, _out_path(args.file), for_summary=args.for_summary, progress=progress
        )
    progress.finish()
    _emit(
        args,
        {"file": str(args.file), "envelopes": count},
        f"Wrote {count} updates to {args.file} (encrypted for the network's members).",
    )


def _bundle_import(args: argparse.Namespace) -> int:
    progress = _Progress("Importing the bundle")
    with _open_node(args) as node:
        report = node.bundle_import(args.file, progress=progress)
        names = {s.network_id: s.name for s in node.networks()}
    progress.finish()
    _view(args, "import", out.import_view(report, names.get(report.network_id)))
    if report.problems or report.invalid or report.truncated:
        sys.stderr.write("p2pnet: parts of the bundle were refused or missing; the rest is kept\n")
        return EXIT_INTEGRITY
    return 0


# -- invites ----------------------------------------------------------------------------


def _invite_code() -> str:
    """The invite code: it admits whoever holds it, so it never comes from argv."""
    code = os.environ.get("P2PNET_INVITE_CODE")
    if code is None:
        prompt = sys.stdin.isatty()
        code = getpass.getpass("Invite code: ") if prompt else sys.stdin.readline(4096)
    if not code.strip():
        raise UserError(
            "no invite code: set P2PNET_INVITE_CODE, pipe it on stdin, or run in a terminal"
        )
    return code.strip()


def _invite_create(args: argparse.Namespace) -> None:
    expires_in = _duration_ms(args.expires_in)
    with _open_node(args) as node:
        state = node.state(args.net)
        code = node.create_invite(args.net, uses=args.uses, expires_in_ms=expires_in)
    qr = _qr_text(code) if args.qr and not args.json else ""
    _emit(
        args,
        {
            "network": state.network_id.hex(),
            "code": code,
            "uses": args.uses,
            "expires_in_ms": expires_in,
        },
        f"{qr}{code}\n\nGive this code in person or over a channel you trust: whoever holds it "
        f"can ask to join {state.name}. They run: p2pnet join --request FILE, and give you "
        f"FILE; then you run: p2pnet invite accept {shlex.quote(args.net)} FILE --out WELCOME",
    )


def _qr_text(text: str) -> str:
    """``text`` as a QR code drawn with block characters (dark on light terminals too)."""
    import io  # noqa: PLC0415 - only --qr needs these

    import segno  # noqa: PLC0415

    buffer = io.StringIO()
    segno.make(text, error="m").terminal(out=buffer, compact=True)
    return buffer.getvalue() + "\n"


def _join(args: argparse.Namespace) -> None:
    code = _invite_code()
    with _open_node(args) as node:
        network_id = node.join_request(code, _out_path(args.request))
    _emit(
        args,
        {"network_id": network_id.hex(), "request": str(args.request)},
        f"Wrote your join request to {args.request}. Give it to the member who invited you; "
        "when they give you a welcome file, run: p2pnet bundle import WELCOME",
    )


def _invite_accept(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        result = node.accept_invite(args.net, args.request, out=_out_path(args.out))
    decision = result.decision_id.hex() if result.decision_id else None
    if result.welcome_written:
        text = (
            f"Admitted. Give them {args.out} (encrypted for them alone); they run: "
            f"p2pnet bundle import {shlex.quote(args.out.name)}"
        )
    else:
        text = (
            f"This network admits new members by decision: {_short(result.decision_id or b'')} "
            "is open. Once it is adopted, run this command again to write the welcome."
        )
    _emit(
        args,
        {
            "status": result.status,
            "decision_id": decision,
            "welcome_written": result.welcome_written,
            "welcome": str(args.out) if result.welcome_written else None,
        },
        text,
    )


# -- passphrase and panic ---------------------------------------------------------------


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


# -- the boundary -----------------------------------------------------------------------


def _replace_unencodable() -> None:
    # A peer's Persian name must not crash a terminal that cannot show it.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = _parser().parse_args(argv)
    _replace_unencodable()
    command: Command = args.func
    try:
        return command(args) or 0
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
    except (P2pnetError, CryptoError, OSError, LocalProtocolError) as exc:
        _fail(args, str(exc))
        return EXIT_USER
    except ProtocolError as exc:
        # Not bad input: what the profile stores did not decode (damage or a bug).
        _fail(args, f"stored data is damaged: {exc}; restore the profile from a backup")
        return EXIT_INTEGRITY
    except KeyboardInterrupt:
        _fail(args, "interrupted")
        return EXIT_USER


def _fail(args: argparse.Namespace, message: str) -> None:
    if args.debug:
        import traceback  # noqa: PLC0415 - only with --debug

        traceback.print_exc()
    sys.stderr.write(f"p2pnet: {message}\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
