"""``python -m p2pnet.cli``."""

from p2pnet.cli._main import main

raise SystemExit(main())
