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
field names docs/cli.md documents (built in :mod:`p2pnet.cli._output`). Writing
commands print what they did, or with ``--json`` the ids they created.
"""

from p2pnet.cli._main import main

__all__ = ["main"]
