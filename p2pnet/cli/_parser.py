"""The argument parser: every command, its options and its handler."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from p2pnet.cli._common import EXIT_USER, Command
from p2pnet.cli._decide import (
    _agreement_add,
    _agreement_endorse,
    _agreement_list,
    _agreement_show,
    _close,
    _comment,
    _decision_list,
    _decision_show,
    _position,
    _propose,
)
from p2pnet.cli._identity import _demo, _init, _panic, _passphrase_change, _ui, _version, _whoami
from p2pnet.cli._net import _lan, _peers, _run, _sync
from p2pnet.cli._network import (
    _invite_accept,
    _invite_create,
    _join,
    _leave,
    _member_list,
    _member_match,
    _member_show,
    _member_update,
    _member_verify,
    _network_create,
    _network_list,
    _network_show,
    _rekey,
    _remove,
    _safety_number,
)
from p2pnet.cli._records import _bundle_export, _bundle_import, _bundle_summary, _log
from protocol.vocabulary import DECISION_KINDS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"p2pnet: {message}\n")
        raise SystemExit(EXIT_USER)


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
    _leaf(commands, "ui", _ui, "open the terminal app on this profile")
    _leaf(commands, "demo", _demo, "a demonstration network of three nodes on this machine")
    _network_commands(commands)
    _member_commands(commands)
    _agreement_commands(commands)
    _decision_commands(commands)
    _invite_commands(commands)
    _record_commands(commands)
    _net_commands(commands)
    return parser


def _net_commands(commands: Any) -> None:
    run = _leaf(commands, "run", _run, "run every network of this profile until Ctrl-C")
    run.add_argument("--listen", action="append", help="multiaddr to listen on (repeatable)")
    run.add_argument("--announce", action="append", help="address to publish instead")
    run.add_argument("--peer", action="append", help="a peer's multiaddr to dial (repeatable)")
    run.add_argument(
        "--relay", action="store_true", help="serve as a circuit relay for your networks' members"
    )
    run.add_argument(
        "--via", action="append", help="a member's relay (multiaddr) to be reachable through"
    )
    sync = _leaf(commands, "sync", _sync, "sync a network now and report what moved", "net")
    sync.add_argument("--peer", action="append", help="a peer's multiaddr (default: members)")
    sync.add_argument("--once", action="store_true", help="stop after the first peer")
    sync.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    _leaf(commands, "peers", _peers, "connections, addresses and last sync", "net")
    help_text = "show or set LAN discovery for a network (off by default)"
    lan = _leaf(commands, "lan", _lan, help_text, "net")
    lan.add_argument("state", nargs="?", choices=["on", "off"], help="on or off")


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
    join.add_argument(
        "--request", type=Path, help="write a request file for your inviter (offline join)"
    )
    join.add_argument(
        "--wait", type=float, default=600.0, help="seconds to wait for an admission decision"
    )


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
