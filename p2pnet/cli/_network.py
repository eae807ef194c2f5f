"""Commands on networks, members and invites."""

from __future__ import annotations

import argparse
import getpass
import io
import os
import shlex
import sys

from p2pnet.cli import _output as out
from p2pnet.cli._common import (
    UserError,
    _duration_ms,
    _emit,
    _list_arg,
    _open_node,
    _out_path,
    _short,
    _view,
)
from p2pnet.node import Node
from protocol.state import NetworkState


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
        addresses = _invite_addresses(node, state.network_id)
        code = node.create_invite(
            args.net, uses=args.uses, expires_in_ms=expires_in, addresses=addresses
        )
    qr = _qr_text(code) if args.qr and not args.json else ""
    how = (
        "They run: p2pnet join (with this code) while your node runs (p2pnet run), or by "
        "hand: p2pnet join --request FILE, and give you FILE; then you run: p2pnet invite "
        f"accept {shlex.quote(args.net)} FILE --out WELCOME"
        if addresses
        else "They run: p2pnet join --request FILE, and give you FILE; then you run: "
        f"p2pnet invite accept {shlex.quote(args.net)} FILE --out WELCOME. (Start your node "
        "with p2pnet run first, and the code lets them join online.)"
    )
    _emit(
        args,
        {
            "network": state.network_id.hex(),
            "code": code,
            "uses": args.uses,
            "expires_in_ms": expires_in,
            "online": bool(addresses),
        },
        f"{qr}{code}\n\nGive this code in person or over a channel you trust: whoever holds it "
        f"can ask to join {state.name}. {how}",
    )


def _invite_addresses(node: Node, network_id: bytes) -> list[str]:
    """The running node's invite addresses (none if no node runs on this profile)."""
    from p2pnet.net.runner import NodeLock, read_status  # noqa: PLC0415 - loads py-libp2p

    if not NodeLock.held(node.profile.path):
        return []
    status = read_status(node, network_id)
    return list(status.get("invite_addresses", [])) if status else []


def _qr_text(text: str) -> str:
    """``text`` as a QR code drawn with block characters (dark on light terminals too)."""

    import segno  # noqa: PLC0415

    buffer = io.StringIO()
    segno.make(text, error="m").terminal(out=buffer, compact=True)
    return buffer.getvalue() + "\n"


def _join(args: argparse.Namespace) -> None:
    code = _invite_code()
    if args.request is None:
        _join_online(args, code)
        return
    with _open_node(args) as node:
        network_id = node.join_request(code, _out_path(args.request))
    _emit(
        args,
        {"network_id": network_id.hex(), "request": str(args.request)},
        f"Wrote your join request to {args.request}. Give it to the member who invited you; "
        "when they give you a welcome file, run: p2pnet bundle import WELCOME",
    )


def _join_online(args: argparse.Namespace, text: str) -> None:
    from p2pnet.net.invite import ask_to_join  # noqa: PLC0415 - loads py-libp2p
    from protocol import RemoteProtocolError  # noqa: PLC0415
    from protocol.invite import parse_invite_code  # noqa: PLC0415

    try:
        code = parse_invite_code(text)
    except RemoteProtocolError as exc:
        raise UserError(str(exc)) from None

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            sys.stderr.write(f"\rReceiving the welcome: {done * 100 // max(total, 1)} %")

    with _open_node(args) as node:
        say("Asking the inviter's node…")
        ask_to_join(node, code, wait_s=args.wait, say=say, progress=progress)
        state = node.state(code.network_id.hex())
    _emit(
        args,
        {"network_id": code.network_id.hex(), "name": state.name, "joined": True},
        f"You joined {state.name}. Run p2pnet run to stay in sync.",
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
