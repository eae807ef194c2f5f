"""Commands on agreements, proposals, decisions, positions, closes and comments."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from crypto import (
    is_valid_public_key,
)
from p2pnet.cli import _output as out
from p2pnet.cli._common import UserError, _duration_ms, _emit, _open_node, _short, _text_arg, _view
from p2pnet.cli._network import _active
from p2pnet.node import Node, parse_rule
from protocol.rules import STANCES, RuleSpec
from protocol.state import NetworkState
from protocol.vocabulary import DECISION_KINDS


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
