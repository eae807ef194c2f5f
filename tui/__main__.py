"""``python -m tui``: the terminal app on a profile (``make run``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import platformdirs

from tui.app import P2pnetApp


def main() -> None:
    parser = argparse.ArgumentParser(prog="p2pnet-ui", description="The p2pnet terminal app.")
    parser.add_argument("--home", type=Path, help="where profiles live (default: platform)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--offline", action="store_true", help="do not start the network")
    parser.add_argument("--listen", action="append", help="multiaddr to listen on")
    parser.add_argument("--peer", action="append", help="a peer's multiaddr to dial")
    args = parser.parse_args()
    home = args.home or Path(platformdirs.user_data_dir("p2pnet", appauthor=False))
    app = P2pnetApp(
        home,
        args.profile,
        network=not args.offline,
        listen=args.listen or ("/ip4/0.0.0.0/tcp/0",),
        peers=args.peer or (),
    )
    app.run()


if __name__ == "__main__":
    main()
