"""``make demo`` / ``p2pnet demo``: three real nodes on loopback, the app as one of them.

A temporary home holds three profiles: you, Leyla and Omid. Together they run a
``coordination`` network with an adopted charter and a few decisions. All three nodes run
on 127.0.0.1 and sync over real libp2p; Leyla's and Omid's nodes react to what you do:
a few seconds after you propose something, they take positions, and you see them
arrive. Quitting removes the temporary home. The demo's profiles use a cheap key
derivation: it is a demo, not a place for real work.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
from pathlib import Path

from crypto import KdfParams
from p2pnet.errors import P2pnetError
from p2pnet.net.background import NodeThread
from p2pnet.node import Node
from protocol.rules import REASON_REQUIRED, STANCES
from tui.app import P2pnetApp

__all__ = ["build_demo", "main"]

PASS = "demo passphrase, not a secret"  # noqa: S105 - a throwaway demo home
NET = "Riverside Coordination"
log = logging.getLogger("p2pnet.demo")
LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)
_CHOICES = {
    "consent": ["consent", "consent", "concern"],
    "consensus": ["agree", "agree", "stand_aside"],
    "majority": ["yes", "yes", "no"],
    "sense_check": ["yes", "unsure"],
    "advice": ["advice"],
}


def build_demo(home: Path) -> list[Node]:
    """You, Leyla and Omid, in a coordination network with some history."""
    kdf = KdfParams.insecure_for_tests()
    you = Node.create(home / "you", "default", PASS, name="You", kdf=kdf)
    leyla = Node.create(home / "leyla", "default", PASS, name="Leyla", kdf=kdf)
    omid = Node.create(home / "omid", "default", PASS, name="Omid", kdf=kdf)
    leyla.create_network(
        NET, "coordination", purpose="Neighbourhood groups align their relief work."
    )
    for joiner in (you, omid):
        request, welcome = home / f"{joiner.name}.request", home / f"{joiner.name}.welcome"
        joiner.join_request(leyla.create_invite(NET), request)
        leyla.accept_invite(NET, request, out=welcome)
        joiner.bundle_import(welcome)
    charter = leyla.add_agreement(
        NET,
        kind="charter",
        title="Charter",
        text="We share information, respect each group's independence, and decide by consent.",
    )
    adopt = leyla.propose(NET, title="Adopt the charter", kind="agreement_adoption",
                          subject=charter.op_id)  # fmt: skip
    _carry(leyla, [you, omid], home)
    for node, stance in ((leyla, "yes"), (omid, "yes"), (you, "yes")):
        node.position(NET, adopt.op_id.hex(), stance)
        _carry(node, [n for n in (you, leyla, omid) if n is not node], home)
    leyla.close_decision(NET, adopt.op_id.hex())
    leyla.update_profile(NET, offers=["meeting_space", "logistics"], needs=["expertise_legal"])
    omid.update_profile(NET, offers=["expertise_legal"], needs=["funding"])
    leyla.propose(NET, title="Share the warehouse on Saturdays", text="From 9 to 13.")
    omid.propose(NET, title="جلسه‌ی ماهانه در کتابخانه", text="اولین پنجشنبه‌ی هر ماه.")
    for node in (leyla, omid):
        _carry(node, [n for n in (you, leyla, omid) if n is not node], home)
    return [you, leyla, omid]


def _carry(sender: Node, receivers: list[Node], home: Path) -> None:
    bundle = home / "demo.bundle"
    sender.bundle_export(NET, bundle)
    for receiver in receivers:
        receiver.bundle_import(bundle)


class Bot:
    """A member's node that takes a position on each new open decision, after a pause."""

    def __init__(self, thread: NodeThread, seed: int) -> None:
        self.thread = thread
        self._rng = random.Random(seed)  # noqa: S311 - a demo's choices, not secrets
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)

    def _loop(self) -> None:
        node = self.thread.node
        me = node.identity.public.key
        while not self._stop.wait(1.0):
            try:
                state = self.thread.call(node.state, NET)
            except P2pnetError:  # the network is still arriving
                log.debug("demo bot: no state yet")
                continue
            for d in state.decisions.values():
                if d.status != "open" or me not in d.electorate:
                    continue
                if any(p.member == me for p in d.positions):
                    continue
                if self._stop.wait(self._rng.uniform(1.5, 4.0)):
                    return
                stance = self._rng.choice(_CHOICES.get(d.rule.rule, sorted(STANCES[d.rule.rule])))
                reason = "I need more detail first" if stance in REASON_REQUIRED else ""
                try:
                    self.thread.call(node.position, NET, d.decision_id.hex(), stance, reason)
                except P2pnetError:  # closed meanwhile: nothing to do
                    log.debug("demo bot: position refused")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="p2pnet-demo-"))
    threads: list[NodeThread] = []
    bots: list[Bot] = []
    nodes: list[Node] = []
    try:
        print("Building the demo network (three nodes on this machine)…")
        nodes = build_demo(home)
        you, others = nodes[0], nodes[1:]
        for i, node in enumerate(others):
            thread = NodeThread(node, listen=LOOPBACK, dial_members=False)
            thread.start()
            threads.append(thread)
            bots.append(Bot(thread, seed=i))
        peers = [t.runtimes[t.node.network_id(NET)].addresses[0] for t in threads]
        for bot in bots:
            bot.start()
        app = P2pnetApp(home / "you", network=True, listen=LOOPBACK, peers=peers, node=you)
        app.run()
    finally:
        for bot in bots:
            bot.stop()
        for thread in threads:
            thread.stop()
        for node in nodes[1:]:
            node.close()
        shutil.rmtree(home, ignore_errors=True)
        print("The demo's temporary home was removed.")


if __name__ == "__main__":
    main()
