"""A whole network's life through the Node API, in three homes that exchange files.

Ana creates a coordination network and invites Ben and Cyd (invite codes, join requests,
welcome files). They adopt a charter, Cyd blocks a consensus decision, the network removes
Cyd, and all three export the decision log: the logs verify and agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crypto import KdfParams
from p2pnet.node import AcceptResult, Node, NodeError, NotAllowed, parse_rule
from protocol.log import MAGIC

PASS = "correct horse battery staple"
FAST = KdfParams.insecure_for_tests()
ROOT = Path(__file__).resolve().parents[2]


def _carry(sender: Node, receiver: Node, net: str, tmp: Path, name: str) -> None:
    """Sender writes what the receiver lacks (by the receiver's summary); receiver imports."""
    summary = tmp / f"{name}.summary"
    bundle = tmp / f"{name}.bundle"
    receiver.bundle_summary(net, summary)
    sender.bundle_export(net, bundle, for_summary=summary)
    report = receiver.bundle_import(bundle)
    assert report.invalid == 0, report.problems


def _everyone_syncs(nodes: list[Node], net: str, tmp: Path) -> None:
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            if a is not b:
                _carry(a, b, net, tmp, f"{i}-{j}")


@pytest.fixture
def trio(tmp_path: Path) -> tuple[Node, Node, Node]:
    ana = Node.create(tmp_path / "ana", "default", PASS, name="Ana", kdf=FAST)
    ben = Node.create(tmp_path / "ben", "default", PASS, name="Ben", kdf=FAST)
    cyd = Node.create(tmp_path / "cyd", "default", PASS, name="Cyd", kdf=FAST)
    yield ana, ben, cyd  # type: ignore[misc]
    for node in (ana, ben, cyd):
        node.close()


def _join(inviter: Node, joiner: Node, net: str, tmp: Path) -> AcceptResult:
    code = inviter.create_invite(net)
    request = tmp / f"{joiner.name}.request"
    welcome = tmp / f"{joiner.name}.welcome"
    joiner.join_request(code, request)
    result = inviter.accept_invite(net, request, out=welcome)
    if result.welcome_written:
        joiner.bundle_import(welcome)
    return result


def test_a_network_from_founding_to_removal(trio: tuple[Node, Node, Node], tmp_path: Path) -> None:
    ana, ben, cyd = trio
    ana.create_network("Teachers' Solidarity", "coordination", purpose="Coordinate campaigns")
    net = "Teachers' Solidarity"
    assert _join(ana, ben, net, tmp_path).status == "admitted"
    assert _join(ana, cyd, net, tmp_path).status == "admitted"
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    assert {m.display_name for m in cyd.state(net).members.values()} == {"Ana", "Ben", "Cyd"}

    # The charter, adopted under the network's charter rule (2/3 of eligible members).
    version = ana.add_agreement(net, kind="charter", title="Our charter", text="منشور شبکه")
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    adoption = ana.propose(
        net, title="Adopt the charter", kind="agreement_adoption", subject=version.op_id
    )
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    for node in (ana, ben, cyd):
        node.position(net, "Adopt the charter", "yes")
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    ana.close_decision(net, "Adopt the charter")
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    assert ben.state(net).decisions[adoption.op_id].outcome.outcome == "adopted"  # type: ignore[union-attr]
    ben.endorse(net, "Our charter")

    # A consensus decision that Cyd blocks, with a reason.
    consensus = parse_rule("consensus")
    strike = ana.propose(net, title="Strike on Monday", rule=consensus)
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    with pytest.raises(NodeError):
        cyd.position(net, "Strike on Monday", "block")  # a block needs a reason
    cyd.position(net, "Strike on Monday", "block", "Our members cannot risk their jobs now.")
    ana.position(net, "Strike on Monday", "agree")
    ben.position(net, "Strike on Monday", "agree")
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    ana.close_decision(net, "Strike on Monday")
    with pytest.raises(NotAllowed):
        ana.close_decision(net, "Strike on Monday")  # closing twice
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    assert cyd.state(net).decisions[strike.op_id].outcome.outcome == "blocked"  # type: ignore[union-attr]

    # Removing Cyd by decision (2/3 of eligible; Cyd is not in the electorate).
    cyd_key = cyd.identity.public.key
    removal = ana.propose(net, title="Remove Cyd", kind="removal", subject=cyd_key)
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    ana.position(net, "Remove Cyd", "yes")
    ben.position(net, "Remove Cyd", "yes")
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    ana.close_decision(net, "Remove Cyd")
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    assert ben.state(net).members[cyd_key].status == "removed"
    assert ana.state(net).decisions[removal.op_id].outcome.outcome == "adopted"  # type: ignore[union-attr]
    with pytest.raises(NotAllowed):
        cyd.comment(net, "Strike on Monday", "I am still here")

    # Every member exports the decision log; each verifies, and the plain logs agree.
    logs = []
    for node in (ana, ben, cyd):
        path = tmp_path / f"{node.name}.log"
        assert node.log_export(net, path, plain=True) == 3
        report = node.log_verify(path)
        assert report.ok, report.problems
        logs.append(path.read_bytes())
        encrypted = tmp_path / f"{node.name}.log.enc"
        node.log_export(net, encrypted)
        assert node.log_verify(encrypted).ok
        assert encrypted.read_bytes().startswith(MAGIC)
    assert logs[0] == logs[1] == logs[2]


def test_reopening_a_profile_keeps_everything(tmp_path: Path) -> None:
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Calm Network", "information_exchange")
        ana.propose("Calm Network", title="Meet monthly")
    with Node.open(tmp_path, "default", PASS) as again:
        state = again.state("calm network")
        assert [d.title for d in state.decisions.values()] == ["Meet monthly"]
        assert again.name == "Ana"


def test_a_reused_or_foreign_invite_admits_no_one(
    trio: tuple[Node, Node, Node], tmp_path: Path
) -> None:
    ana, ben, cyd = trio
    ana.create_network("Net", "coordination")
    code = ana.create_invite("Net")
    ben.join_request(code, tmp_path / "ben.req")
    cyd.join_request(code, tmp_path / "cyd.req")
    ana.accept_invite("Net", tmp_path / "ben.req", out=tmp_path / "ben.wl")
    with pytest.raises(NodeError, match="already used"):
        ana.accept_invite("Net", tmp_path / "cyd.req", out=tmp_path / "cyd.wl")
    # A welcome for Ben is useless to Cyd.
    with pytest.raises(NodeError, match="not for you"):
        cyd.bundle_import(tmp_path / "ben.wl")
    # Garbage instead of a request.
    (tmp_path / "junk.req").write_bytes(os.urandom(300))
    with pytest.raises(NodeError):
        ana.accept_invite("Net", tmp_path / "junk.req", out=tmp_path / "x")
    assert len(ana.state("Net").members) == 2


def test_admission_by_decision(trio: tuple[Node, Node, Node], tmp_path: Path) -> None:
    ana, ben, _ = trio
    ana.create_network("Fund", "joint_funding")
    result = _join(ana, ben, "Fund", tmp_path)
    assert result.status == "decision_pending"
    assert result.decision_id is not None
    ana.position("Fund", result.decision_id.hex()[:12], "consent")
    ana.close_decision("Fund", result.decision_id.hex()[:12])
    again = ana.accept_invite("Fund", tmp_path / "Ben.request", out=tmp_path / "Ben.welcome")
    assert again.status == "admitted"
    ben.bundle_import(tmp_path / "Ben.welcome")
    assert ben.state("Fund").members[ben.identity.public.key].active


_WRITER = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from p2pnet.node import Node
node = Node.open(Path({home!r}), "default", {passphrase!r})
for i in range(40):
    node.comment("Net", "Topic", f"{{sys.argv[1]}} {{i}}")
node.close()
"""


def test_two_processes_writing_never_fork_the_chain(tmp_path: Path) -> None:
    with Node.create(tmp_path, "default", PASS, name="Ana", kdf=FAST) as ana:
        ana.create_network("Net", "coordination")
        ana.propose("Net", title="Topic")
    script = _WRITER.format(root=str(ROOT), home=str(tmp_path), passphrase=PASS)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, name], stderr=subprocess.PIPE)
        for name in ("cli", "tui")
    ]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), errors
    with Node.open(tmp_path, "default", PASS) as ana:
        state = ana.state("Net")
        assert not state.equivocators
        topic = next(iter(state.decisions))
        assert len(state.comments[topic]) == 80
        assert state.invalid == 0


def test_panic_leaves_nothing_readable(tmp_path: Path) -> None:
    with Node.create(tmp_path, "default", PASS, name="Shirin Distinctname", kdf=FAST) as node:
        node.create_network("Zanjireh Teachers Circle", "coordination")
        node.propose("Zanjireh Teachers Circle", title="Secret strike plan")
    Node.panic(tmp_path, "default")
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_a_removed_member_cannot_read_what_is_written_after(
    trio: tuple[Node, Node, Node], tmp_path: Path
) -> None:
    ana, ben, cyd = trio
    net = "Union"
    ana.create_network(net, "coordination")
    _join(ana, ben, net, tmp_path)
    _join(ana, cyd, net, tmp_path)
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    topic = ana.propose(net, title="Topic")
    _everyone_syncs([ana, ben, cyd], net, tmp_path)
    before = len(ana.state(net).epochs)
    ana.emergency_remove(net, "Cyd", "phone seized")
    _carry(ana, ben, net, tmp_path, "a-b")
    ben.emergency_remove(net, "Cyd", "phone seized")  # the 2nd signature: Ben rotates
    _carry(ben, ana, net, tmp_path, "b-a")
    assert len(ana.state(net).epochs) == before + 1  # Ana learned the new key from Ben
    ana.comment(net, "Topic", "The meeting moved to the union hall")
    # Cyd still holds the old key and gets everything by bundle: the new text stays closed.
    everything = tmp_path / "all.bundle"
    ana.bundle_export(net, everything)
    cyd.bundle_import(everything)
    assert topic.op_id not in cyd.state(net).comments
    assert len(ben.state(net).comments.get(topic.op_id, ())) == 0  # not synced yet
    _carry(ana, ben, net, tmp_path, "a-b2")
    assert len(ben.state(net).comments[topic.op_id]) == 1
