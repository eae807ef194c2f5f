"""The boundary: run one command and turn every failure into a line and an exit code."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence

from crypto import (
    CryptoError,
    KeystoreCorrupt,
    KeystoreLocked,
    KeystoreMissing,
)
from p2pnet.cli._common import EXIT_INTEGRITY, EXIT_LOCKED, EXIT_USER, Command, UserError
from p2pnet.cli._parser import _parser
from p2pnet.errors import P2pnetError, StoreCorrupt
from p2pnet.profile import ProfileError
from protocol import LocalProtocolError, ProtocolError


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
