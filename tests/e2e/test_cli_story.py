"""A whole network's life through the command line only, in three homes that exchange files.

The same story as test_node_story.py, told with ``p2pnet`` commands run in process: Ana
creates a coordination network and admits Ben and Cyd (invite code, join request,
welcome file); members carry updates to each other as bundles (summary, export for that
summary, import); a charter is written, adopted under the network's charter rule and
endorsed; Cyd blocks a consensus decision (a block needs a reason); the network removes
Cyd by decision, after which Cyd can no longer act nor read what is written; and all
three export the decision log, which verifies everywhere and is byte-identical in plain.

No network is used: every exchange is a file in ``tmp_path``. The three profiles come
from a template made with the cheapest key derivation, so each command unlocks fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from crypto import KdfParams
from p2pnet.cli import main
from protocol.log import MAGIC

PASS = "correct horse battery staple"
NET = "Teachers"
PEOPLE = ("Ana", "Ben", "Cyd")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home per person, each with a default profile whose keystore uses the cheapest
    key derivation. (``init`` with the real cost is tested in test_cli_first_commands.py.)
    Creating the identities is the only step not done through the command line."""
    from p2pnet.node import Node  # noqa: PLC0415 - only the template needs the node API

    root = tmp_path_factory.mktemp("story-template")
    cheap = KdfParams.insecure_for_tests()
    for name in PEOPLE:
        Node.create(root / name.lower(), "default", PASS, name=name, kdf=cheap).close()
    return root


class Person:
    """One member, one home: runs ``p2pnet --home HOME …`` in process."""

    def __init__(self, name: str, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.name = name
        self.home = home
        self.capsys = capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        code = main(["--home", str(self.home), *args])
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err, (self.name, args, captured.err)
        assert "Traceback" not in captured.out, (self.name, args, captured.out)
        return code, captured.out, captured.err

    def ok(self, *args: str) -> str:
        code, out, err = self.run(*args)
        assert code == 0, (self.name, args, out, err)
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args))

    def fails(self, *args: str, code: int = 1) -> str:
        """A command that must be refused with ``code``; returns its one-line error."""
        got, out, err = self.run(*args)
        assert got == code, (self.name, args, got, out, err)
        assert err.startswith("p2pnet: "), err
        assert len(err.strip().splitlines()) == 1, err
        return err


@pytest.fixture
def trio(
    tmp_path: Path,
    template: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Person, Person, Person]:
    monkeypatch.setenv("P2PNET_PASSPHRASE", PASS)
    monkeypatch.delenv("P2PNET_NEW_PASSPHRASE", raising=False)
    monkeypatch.delenv("P2PNET_INVITE_CODE", raising=False)
    homes = tmp_path / "homes"
    shutil.copytree(template, homes)
    ana, ben, cyd = (Person(name, homes / name.lower(), capsys) for name in PEOPLE)
    return ana, ben, cyd


class Courier:
    """Carries bundles by hand: the receiver writes a summary of what it holds, the
    sender exports only what that summary lacks, the receiver imports it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.trips = 0

    def carry(self, sender: Person, receiver: Person) -> Any:
        self.trips += 1
        tag = f"{self.trips:03d}-{sender.name}-to-{receiver.name}"
        summary = self.folder / f"{tag}.summary"
        bundle = self.folder / f"{tag}.bundle"
        assert receiver.json("bundle", "summary", NET, str(summary))["bytes"] > 0
        exported = sender.json("bundle", "export", NET, str(bundle), "--for", str(summary))
        assert exported["file"] == str(bundle)
        report = receiver.json("bundle", "import", str(bundle))
        assert report["network_name"] == NET, report
        assert report["invalid"] == 0, report
        assert report["problems"] == [], report
        assert report["truncated"] is False, report
        return report

    def everyone(self, people: tuple[Person, ...]) -> None:
        for sender in people:
            for receiver in people:
                if sender is not receiver:
                    self.carry(sender, receiver)


def _admit(
    inviter: Person, newcomer: Person, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invite code (inviter → newcomer), join request (back), welcome file (forth)."""
    invite = inviter.json("invite", "create", NET)
    assert invite["uses"] == 1
    request = folder / f"{newcomer.name}.request"
    welcome = folder / f"{newcomer.name}.welcome"
    monkeypatch.setenv("P2PNET_INVITE_CODE", invite["code"])
    joined = newcomer.json("join", "--request", str(request))
    monkeypatch.delenv("P2PNET_INVITE_CODE")
    assert joined["network_id"] == invite["network"]
    accepted = inviter.json("invite", "accept", NET, str(request), "--out", str(welcome))
    assert accepted == {
        "status": "admitted",
        "decision_id": None,
        "welcome_written": True,
        "welcome": str(welcome),
    }
    imported = newcomer.json("bundle", "import", str(welcome))
    assert imported["network_id"] == invite["network"]
    assert imported["network_name"] == NET
    assert imported["invalid"] == 0
    assert imported["imported"] >= 2  # at least the genesis and the newcomer's admission


def _stances(decision: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["stance"] for p in decision["positions"]}


def test_a_network_from_founding_to_removal_through_the_cli(
    trio: tuple[Person, Person, Person], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana, ben, cyd = trio
    everyone = (ana, ben, cyd)
    files = tmp_path / "carried"
    files.mkdir()
    courier = Courier(files)
    keys = {p.name: p.json("whoami")["public_key"] for p in everyone}
    assert len(set(keys.values())) == 3

    # -- founding and admissions ----------------------------------------------------------
    created = ana.json(
        "network", "create", "--name", NET, "--type", "coordination", "--purpose", "Align"
    )
    assert created["name"] == NET
    network_id = created["id"]
    _admit(ana, ben, files, monkeypatch)
    _admit(ana, cyd, files, monkeypatch)
    courier.everyone(everyone)
    shown = {p.name: p.json("network", "show", NET) for p in everyone}
    for view in shown.values():
        assert view["id"] == network_id
        assert view["type"] == "coordination"
        assert view["genesis_id"] == shown["Ana"]["genesis_id"]
        assert view["active_members"] == 3
    for person in everyone:
        members = person.json("member", "list", NET)["members"]
        assert {m["name"]: m["status"] for m in members} == dict.fromkeys(PEOPLE, "active")
        assert [m["name"] for m in members if m["me"]] == [person.name]
    assert cyd.json("member", "show", NET, "Cyd")["invited_by_name"] == "Ana"
    settings = shown["Ana"]["settings"]

    # -- the charter, adopted under the network's charter rule, then endorsed -------------
    added = ana.json(
        "agreement", "add", NET, "--kind", "charter", "--title", "Our charter", "--text", "منشور"
    )
    courier.everyone(everyone)
    assert "has been adopted yet" in ben.fails("agreement", "endorse", NET, "Our charter")
    adoption = ana.json(
        "propose",
        NET,
        "--kind",
        "agreement_adoption",
        "--subject",
        "Our charter",
        "--title",
        "Adopt the charter",
    )
    assert adoption["rule"] == settings["charter_rule"]
    adoption_id = adoption["decision_id"]
    courier.everyone(everyone)
    for person in everyone:
        voted = person.json("position", NET, "Adopt the charter", "yes")
        assert voted["decision_id"] == adoption_id
    courier.everyone(everyone)
    before = ana.json("decision", "show", NET, adoption_id[:8])
    assert before["status"] == "open"
    assert before["subject"] == added["version_id"]
    assert before["projected"]["outcome"] == "adopted"
    closed = ana.json("close", NET, "Adopt the charter")
    assert closed["outcome"]["outcome"] == "adopted"
    assert closed["outcome"]["counts"]["yes"] == 3
    courier.everyone(everyone)
    for person in (ben, cyd):
        person.ok("agreement", "endorse", NET, added["agreement_id"][:8])
    ana.ok("agreement", "endorse", NET, "Our charter")
    courier.everyone(everyone)
    for person in everyone:
        charter = person.json("agreement", "show", NET, "Our charter")
        assert charter["id"] == added["agreement_id"]
        assert charter["adopted"] == added["version_id"]
        assert charter["adopted_version"] == 1
        assert charter["versions"][0]["adopted_by"] == adoption_id
        assert charter["endorsements"] == 3  # a count (docs/cli.md does not say so)
        assert charter["versions"][0]["endorsed_by"] == sorted(keys.values())
        assert charter["versions"][0]["endorsed_by_me"] is True

    # -- a consensus decision that Cyd blocks ---------------------------------------------
    strike = ana.json("propose", NET, "--title", "Strike on Monday", "--rule", "consensus")
    assert strike["rule"]["rule"] == "consensus"
    strike_id = strike["decision_id"]
    courier.everyone(everyone)
    assert "needs a reason" in cyd.fails("position", NET, "Strike on Monday", "block")
    assert cyd.json("decision", "show", NET, strike_id[:8])["positions"] == []  # nothing kept
    cyd.ok("position", NET, "Strike on Monday", "block", "--reason", "Our members cannot risk it")
    ana.ok("position", NET, "Strike on Monday", "agree")
    ben.ok("position", NET, strike_id[:8], "agree")
    courier.everyone(everyone)
    projected = ben.json("decision", "show", NET, "Strike on Monday")
    assert _stances(projected) == {"Ana": "agree", "Ben": "agree", "Cyd": "block"}
    assert projected["projected"]["outcome"] == "blocked"
    blocked = ana.json("close", NET, "Strike on Monday")
    assert blocked["outcome"]["outcome"] == "blocked"
    assert blocked["outcome"]["counts"]["block"] == 1
    assert blocked["outcome"]["counts"]["agree"] == 2
    assert "closed" in ana.fails("close", NET, "Strike on Monday")
    courier.everyone(everyone)
    for person in everyone:
        seen = person.json("decision", "show", NET, strike_id[:8])
        assert seen["status"] == "closed"
        assert seen["outcome"]["outcome"] == "blocked"
        assert seen["disputed"] is False
    assert "closed" in cyd.fails("position", NET, "Strike on Monday", "agree")

    # -- removing Cyd by decision ---------------------------------------------------------
    epochs_before = ana.json("network", "show", NET)["epoch_count"]
    removal = ana.json("propose", NET, "--kind", "removal", "--subject", "Cyd", "--title", "Bye")
    assert removal["rule"] == settings["removal_rule"]
    removal_id = removal["decision_id"]
    courier.everyone(everyone)
    proposed = cyd.json("decision", "show", NET, removal_id[:8])
    assert proposed["subject"] == keys["Cyd"]
    assert sorted(proposed["electorate"]) == sorted([keys["Ana"], keys["Ben"]])
    ana.ok("position", NET, "Bye", "yes")
    ben.ok("position", NET, "Bye", "yes")
    courier.carry(ben, ana)
    removed = ana.json("close", NET, "Bye")
    assert removed["outcome"]["outcome"] == "adopted"
    courier.everyone(everyone)
    for person in everyone:
        member = person.json("member", "show", NET, keys["Cyd"][:8])
        assert member["status"] == "removed"
        assert member["exit_op"] == removed["op_id"]
        assert person.json("network", "show", NET)["active_members"] == 2
    # The closer made a new network key for the remaining members.
    assert ana.json("network", "show", NET)["epoch_count"] == epochs_before + 1
    assert ben.json("network", "show", NET)["epoch_count"] == epochs_before + 1

    # Cyd can no longer act in the network: every writing command is refused.
    refused = [
        ("propose", NET, "--title", "Still here", "--rule", "consent"),
        ("comment", NET, "Strike on Monday", "I am still here"),
        ("agreement", "add", NET, "--kind", "charter", "--title", "Mine", "--text", "x"),
        ("member", "update", NET, "--name", "Cyd again"),
        ("invite", "create", NET),
        ("leave", NET),
    ]
    for command in refused:
        assert "not an active member" in cyd.fails(*command), command
    for person in (ana, ben):  # nothing of Cyd's reached anyone
        assert person.json("network", "show", NET)["decision_counts"]["open"] == 0

    # What Ana writes after the removal stays closed to Cyd, even carried to Cyd by hand.
    assert ana.json("decision", "show", NET, "Strike on Monday")["comments"] == []
    comment = ana.json("comment", NET, "Strike on Monday", "The meeting moved to the hall")
    to_cyd = courier.carry(ana, cyd)
    assert to_cyd["imported"] == 0
    assert to_cyd["unattributed"] >= 1  # the comment is held, unreadable without the key
    assert cyd.json("decision", "show", NET, "Strike on Monday")["comments"] == []
    courier.carry(ana, ben)
    for person in (ana, ben):
        shown_comments = person.json("decision", "show", NET, "Strike on Monday")["comments"]
        assert shown_comments == [comment["op_id"]]

    # -- the decision log, exported and verified on all three homes -----------------------
    plain_logs = {}
    decided = [adoption_id, strike_id, removal_id]
    for person in everyone:
        sealed = tmp_path / f"{person.name}.log"
        plain = tmp_path / f"{person.name}.plain.log"
        written = person.json("log", "export", NET, str(sealed))
        assert written == {"file": str(sealed), "decision_count": 3, "plain": False}
        code, out, err = person.run("--json", "log", "export", NET, str(plain), "--plain")
        assert code == 0, err
        assert json.loads(out) == {"file": str(plain), "decision_count": 3, "plain": True}
        assert "NOT encrypted" in err
        assert sealed.read_bytes().startswith(MAGIC)
        assert plain.read_bytes().startswith(MAGIC)
        assert b"Strike on Monday" not in sealed.read_bytes()
        assert b"Strike on Monday" in plain.read_bytes()
        for path, encrypted in ((sealed, True), (plain, False)):
            code, out, err = person.run("--json", "log", "verify", str(path))
            assert code == 0, (person.name, path, out, err)
            report = json.loads(out)
            assert report["ok"] is True, report["problems"]
            assert report["opened"] is True
            assert report["encrypted"] is encrypted
            assert report["problems"] == []
            assert report["network_id"] == network_id
            assert report["network_name"] == NET
            assert report["genesis_id"] == shown["Ana"]["genesis_id"]
            assert [d["id"] for d in report["decisions"]] == decided
            assert [d["outcome"]["outcome"] for d in report["decisions"]] == [
                "adopted",
                "blocked",
                "adopted",
            ]
            assert all(d["confirmed"] for d in report["decisions"])
        log = person.json("log", NET)
        assert [d["id"] for d in log["decisions"]] == decided
        plain_logs[person.name] = plain.read_bytes()
    assert plain_logs["Ana"] == plain_logs["Ben"] == plain_logs["Cyd"]
    # A member verifies another member's encrypted log too.
    assert ben.json("log", "verify", str(tmp_path / "Ana.log"))["ok"] is True
