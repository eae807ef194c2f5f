"""Commands on files: the decision log and bundles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2pnet.cli import _output as out
from p2pnet.cli._common import (
    EXIT_INTEGRITY,
    UserError,
    _emit,
    _home,
    _open_node,
    _out_path,
    _Progress,
    _view,
)
from p2pnet.files import read_limited
from p2pnet.profile import profile_dir
from protocol import verify_log
from protocol.log import MAX_LOG_BYTES


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
        report = verify_log(
            read_limited(path, MAX_LOG_BYTES, f"{path} is too large to be a decision log")
        )
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
