"""The CLI's commands end to end, in process: happy paths, error paths and exit codes.

Every test works in its own home under ``tmp_path``: a copy of a template home (a
profile with the network "Union", and a second profile "other" with no network) whose
keystores use the cheapest key derivation, so a test may run many commands. Every error
path checks that no traceback reaches the user. JSON field names are checked against
docs/cli.md.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from crypto import Identity, KdfParams
from p2pnet.cli import main
from p2pnet.cli._text import render
from p2pnet.node import AmbiguousReference, Node, NotFound
from p2pnet.references import resolve as _resolve

PASS = "correct horse battery staple"
NET = "Union"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
DOCUMENTED = set(re.findall(r"`([a-z_]+)`", DOCS.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Profiles made with the cheapest key derivation: every unlock in these tests is
    fast. ``init`` itself, with the real cost, is tested in test_cli_first_commands.py."""
    home = tmp_path_factory.mktemp("template") / "home"
    cheap = KdfParams.insecure_for_tests()
    with Node.create(home, "default", PASS, name="Ana", kdf=cheap) as node:
        node.create_network(NET, "coordination")
    Node.create(home, "other", PASS, name="Omid", kdf=cheap).close()
    return home


@pytest.fixture
def home(tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("P2PNET_PASSPHRASE", PASS)
    monkeypatch.delenv("P2PNET_NEW_PASSPHRASE", raising=False)
    copy = tmp_path / "home"
    shutil.copytree(template, copy)
    return copy


class Cli:
    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        code = main(["--home", str(self.home), *args])
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err
        return code, captured.out, captured.err

    def ok(self, *args: str) -> str:
        code, out, err = self.run(*args)
        assert code == 0, err
        return out

    def json(self, *args: str) -> Any:
        data = json.loads(self.ok("--json", *args))
        _check_documented(data)
        return data

    def fails(self, code: int, *args: str) -> str:
        """Run a command that must fail with ``code``; returns its one-line error."""
        got, out, err = self.run(*args)
        assert got == code, (out, err)
        assert err.startswith("p2pnet: ") or "\np2pnet: " in err, err
        return err


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(home, capsys)


def _check_documented(data: Any) -> None:
    """Every JSON field name the CLI prints is named in docs/cli.md."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in ("counts",):  # tally counts are stance names, not fields
                assert key in DOCUMENTED, f"JSON field {key!r} is not documented in docs/cli.md"
                _check_documented(value)
    elif isinstance(data, list):
        for item in data:
            _check_documented(item)


def _new_key() -> str:
    return Identity.generate().public.key.hex()


def _admit(cli: Cli, key: str) -> None:
    cli.ok("propose", NET, "--kind", "admission", "--subject", key, "--title", f"Admit {key[:6]}")
    cli.ok("position", NET, f"Admit {key[:6]}", "consent")
    cli.ok("close", NET, f"Admit {key[:6]}")


# -- networks -------------------------------------------------------------------------


def test_network_create_list_show(cli: Cli) -> None:
    created = cli.json(
        "network",
        "create",
        "--name",
        "شبکه کارگران",
        "--type",
        "joint_action",
        "--purpose",
        "همبستگی",
    )
    assert created["name"] == "شبکه کارگران"
    listed = cli.json("network", "list")
    assert [n["name"] for n in listed["networks"]] == [NET, "شبکه کارگران"]
    shown = cli.json("network", "show", created["id"][:6])
    assert shown["purpose"] == "همبستگی"
    assert shown["type"] == "joint_action"
    assert shown["active_members"] == 1
    assert shown["settings"]["ordinary_rule"]["spec"] == "consent"
    text = cli.ok("network", "show", NET)
    assert "removal rule:" in text
    assert "supermajority:2/3:eligible" in text
    # --json after the command works too.
    assert json.loads(cli.ok("network", "list", "--json"))["networks"]


PEER = "12D3KooWHpYYMB9qti75aSUFxpHWWC3vjTJeKdLr3HteZ2zEHsu7"


@pytest.mark.parametrize(
    ("option", "address", "problem"),
    [
        ("--listen", "/ip4/999.1.1.1/tcp/4001", "TCP multiaddr"),
        ("--listen", "/ip4/127.0.0.1/udp/4001", "TCP multiaddr"),
        ("--listen", "0.0.0.0:4001", "TCP multiaddr"),
        ("--announce", "/ip4/203.0.113.5/tcp/99999", "host and TCP port"),
        ("--announce", "/ip4/203.0.113.5/tcp/0", "port 0"),
        ("--announce", "/ip4/203.0.113.5/tcp/00", "port 0"),
        ("--via", "/ip4/127.0.0.1/tcp/4001", "multiaddr such as"),
        ("--announce", "/ip4/203.0.113.5", "host and TCP port"),
        ("--announce", f"/ip4/203.0.113.5/tcp/4001/p2p/{PEER}", "no /p2p/"),
        ("--announce", "", "host and TCP port"),
        ("--peer", "/ip4/127.0.0.1/tcp/4001/p2p/xyz", "multiaddr such as"),
        ("--peer", "/ip4/127.0.0.1/tcp/4001", "multiaddr such as"),
    ],
)  # fmt: skip
def test_run_refuses_malformed_addresses(cli: Cli, option: str, address: str, problem: str) -> None:
    """Checked by the multiaddr parser before anything starts (an announced address is
    published to every member, signed: garbage must not get there)."""
    message = cli.fails(1, "run", option, address)
    assert option in message
    assert problem in message
    assert "Traceback" not in message


def test_network_errors(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "no network matches 'Nowhere'" in cli.fails(1, "network", "show", "Nowhere")
    err = cli.fails(1, "network", "create", "--name", "X", "--type", "club")
    assert "information_exchange, coordination" in err
    assert "already have a network" in cli.fails(
        1, "network", "create", "--name", "union", "--type", "coordination"
    )
    monkeypatch.setenv("P2PNET_PASSPHRASE", "not the passphrase")
    assert cli.fails(2, "network", "list") == "p2pnet: wrong passphrase (nothing was changed)\n"


# -- members --------------------------------------------------------------------------


def test_member_update_list_show_match(cli: Cli) -> None:
    cli.ok(
        "member",
        "update",
        NET,
        "--name",
        "آنا",
        "--kind",
        "civil_society_org",
        "--offers",
        "expertise_legal, funding",
        "--needs",
        "meeting_space",
    )
    listed = cli.json("member", "list", NET)
    (me,) = listed["members"]
    assert me["name"] == "آنا"
    assert me["me"] is True
    assert me["offers"] == ["expertise_legal", "funding"]
    shown = cli.json("member", "show", NET, "آنا")
    assert shown["kind"] == "civil_society_org"
    assert shown["invited_by"] is None
    match = cli.json("member", "match", NET)
    assert match["matches"] == [
        {"member": me["key"], "name": "آنا", "need": "meeting_space", "offered_by": []}
    ]
    assert "nobody yet" in cli.ok("member", "match", NET)
    assert "آنا (you)" in cli.ok("member", "list", NET)


def test_member_errors(cli: Cli) -> None:
    err = cli.fails(1, "member", "update", NET, "--kind", "gang")
    assert "civil_society_org" in err
    assert "individual" in err
    assert "meeting_space" in cli.fails(1, "member", "update", NET, "--offers", "weapons")
    assert "nothing to update" in cli.fails(1, "member", "update", NET)
    assert "no member matches 'Zed'" in cli.fails(1, "member", "show", NET, "Zed")
    assert "that is you" in cli.fails(1, "member", "safety-number", NET, "Ana")
    assert "no network matches" in cli.fails(1, "member", "list", "Nowhere")


def test_admission_verification_and_emergency_removal(cli: Cli) -> None:
    key = _new_key()
    _admit(cli, key)
    member = cli.json("member", "show", NET, key[:10])
    assert member["status"] == "active"
    assert member["verified_by_me"] is False
    number = cli.json("member", "safety-number", NET, key[:10])
    assert len(number["digits"]) == 60
    err = cli.fails(1, "member", "verify", NET, key[:10], "--safety-number", "1" * 60)
    assert "not your safety number" in err
    cli.ok("member", "verify", NET, key[:10], "--safety-number", number["safety_number"])
    assert cli.json("member", "show", NET, key[:10])["verified_by_me"] is True
    assert "propose NET --kind removal" in cli.fails(1, "remove", NET, key[:10])
    removed = cli.json("remove", NET, key[:10], "--emergency", "--reason", "phone seized")
    assert removed["removed"] is False  # the network needs 2 signatures
    assert "already a member" in cli.fails(
        1, "propose", NET, "--kind", "admission", "--subject", key, "--title", "Again"
    )
    assert "64 hex digits" in cli.fails(
        1, "propose", NET, "--kind", "admission", "--subject", "abcd", "--title", "Bad key"
    )


# -- agreements -----------------------------------------------------------------------


def test_agreement_add_adopt_endorse_show(cli: Cli, tmp_path: Path) -> None:
    charter = tmp_path / "charter.txt"
    charter.write_text("ما با هم تصمیم می‌گیریم.\r\nWe decide together.\n", encoding="utf-8")
    added = cli.json(
        "agreement", "add", NET, "--kind", "charter", "--title", "منشور", "--file", str(charter)
    )
    assert "has been adopted yet" in cli.fails(1, "agreement", "endorse", NET, "منشور")
    listed = cli.json("agreement", "list", NET)
    assert listed["agreements"][0]["adopted_version"] is None
    decision = cli.json(
        "propose",
        NET,
        "--kind",
        "agreement_adoption",
        "--subject",
        "منشور",
        "--title",
        "Adopt the charter",
    )
    assert decision["rule"]["spec"] == "supermajority:2/3:eligible"
    cli.ok("position", NET, decision["decision_id"][:8], "yes")
    cli.ok("close", NET, decision["decision_id"][:8])
    cli.ok("agreement", "endorse", NET, added["agreement_id"][:8])
    shown = cli.json("agreement", "show", NET, "منشور")
    assert shown["adopted_version"] == 1
    assert shown["versions"][0]["endorsed_by_me"] is True
    assert shown["versions"][0]["adopted_by"] == decision["decision_id"]
    revised = cli.json(
        "agreement",
        "add",
        NET,
        "--kind",
        "charter",
        "--title",
        "منشور ۲",
        "--text",
        "v2",
        "--revise",
        "منشور",
    )
    assert revised["agreement_id"] == added["agreement_id"]
    assert "version 1" in cli.ok("agreement", "show", NET, "منشور ۲")


def test_agreement_errors(cli: Cli, tmp_path: Path) -> None:
    err = cli.fails(
        1, "agreement", "add", NET, "--kind", "manifesto", "--title", "T", "--text", "x"
    )
    assert "charter" in err
    assert "conflict_resolution" in err
    missing = tmp_path / "missing.txt"
    assert "cannot read" in cli.fails(
        1, "agreement", "add", NET, "--kind", "charter", "--title", "T", "--file", str(missing)
    )
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in cli.fails(
        1, "agreement", "add", NET, "--kind", "charter", "--title", "T", "--file", str(binary)
    )
    huge = tmp_path / "huge.txt"
    huge.write_text("x" * 300_000)
    assert "KiB" in cli.fails(
        1, "agreement", "add", NET, "--kind", "charter", "--title", "T", "--file", str(huge)
    )
    long = tmp_path / "long.txt"
    long.write_text("x" * 25_000)
    assert "20000" in cli.fails(
        1, "agreement", "add", NET, "--kind", "charter", "--title", "T", "--file", str(long)
    )
    assert "no agreement matches" in cli.fails(1, "agreement", "show", NET, "Nothing")


# -- decisions ------------------------------------------------------------------------


def test_decision_lifecycle(cli: Cli, tmp_path: Path) -> None:
    text = tmp_path / "proposal.md"
    text.write_text("بودجه ماه آینده", encoding="utf-8")
    proposed = cli.json(
        "propose",
        NET,
        "--title",
        "بودجه",
        "--rule",
        "consent",
        "--closes-in",
        "3d",
        "--file",
        str(text),
    )
    listed = cli.json("decision", "list", NET)
    assert listed["decisions"][0]["status"] == "open"
    assert listed["decisions"][0]["rule"]["quorum"] == "1/2"
    err = cli.fails(1, "position", NET, "بودجه", "yes")
    assert "abstain, concern, consent, objection" in err
    assert "needs a reason" in cli.fails(1, "position", NET, "بودجه", "objection")
    cli.ok("position", NET, "بودجه", "concern", "--reason", "هزینه‌ها بالاست")
    shown = cli.json("decision", "show", NET, proposed["decision_id"][:6])
    assert shown["projected"]["outcome"] == "adopted"
    assert shown["positions"][0]["stance"] == "concern"
    assert shown["outcome"] is None
    cli.ok("comment", NET, "بودجه", "موافقم")
    closed = cli.json("close", NET, "بودجه")
    assert closed["outcome"]["outcome"] == "adopted"
    assert "is closed" in cli.fails(1, "close", NET, "بودجه")
    assert "is closed" in cli.fails(1, "position", NET, "بودجه", "consent")
    shown = cli.json("decision", "show", NET, "بودجه")
    assert shown["status"] == "closed"
    assert len(shown["comments"]) == 1
    log = cli.json("log", NET)
    assert [d["title"] for d in log["decisions"]] == ["بودجه"]
    assert "adopted" in cli.ok("log", NET)


def test_propose_errors(cli: Cli) -> None:
    base = ("propose", NET, "--title", "T")
    assert "needs --rule" in cli.fails(1, *base)
    assert "consensus" in cli.fails(1, *base, "--rule", "dictatorship")
    assert "supermajority:2/3:eligible" in cli.fails(1, *base, "--rule", "supermajority:2/3")
    assert "fraction" in cli.fails(1, *base, "--rule", "majority", "--quorum", "half")
    assert "3d, 12h or 30m" in cli.fails(1, *base, "--rule", "consent", "--closes-in", "soon")
    assert "at most a year" in cli.fails(1, *base, "--rule", "consent", "--closes-in", "400d")
    assert "--option" in cli.fails(1, *base, "--rule", "consent", "--option", "A")
    assert "admission, removal" in cli.fails(1, *base, "--rule", "consent", "--kind", "coup")
    assert "terminal UI" in cli.fails(1, *base, "--kind", "governance_change")
    assert "no --subject" in cli.fails(1, *base, "--rule", "consent", "--subject", "Ana")
    err = cli.fails(1, *base, "--kind", "removal", "--subject", "Ana", "--rule", "consent")
    assert "supermajority:2/3:eligible" in err
    assert "needs --role" in cli.fails(
        1, *base, "--kind", "role", "--rule", "consent", "--subject", "Ana"
    )
    assert "needs --subject" in cli.fails(1, *base, "--kind", "removal")


def test_role_and_removal_proposals(cli: Cli) -> None:
    key = _new_key()
    _admit(cli, key)
    role = cli.json(
        "propose",
        NET,
        "--title",
        "Treasurer",
        "--kind",
        "role",
        "--subject",
        key[:8],
        "--role",
        "treasurer",
        "--rule",
        "consent",
    )
    shown = cli.json("decision", "show", NET, role["decision_id"])
    assert shown["subject"] == {"member": key, "role": "treasurer"}
    assert shown["subject_label"].endswith("as treasurer")
    removal = cli.json(
        "propose", NET, "--title", "Remove", "--kind", "removal", "--subject", key[:8]
    )
    assert removal["rule"]["spec"] == "supermajority:2/3:eligible"
    cli.ok("position", NET, "Remove", "yes")
    cli.ok("close", NET, "Remove")
    assert cli.json("member", "show", NET, key[:8])["status"] == "removed"
    assert "was removed" in cli.fails(1, "remove", NET, key[:8], "--emergency")
    args = ("propose", NET, "--title", "T", "--kind", "role", "--rule", "consent")
    assert "was removed" in cli.fails(1, *args, "--subject", key[:8], "--role", "x")


def test_ambiguous_reference_lists_the_candidates(cli: Cli) -> None:
    first = cli.json("propose", NET, "--title", "Budget", "--rule", "majority")
    second = cli.json("propose", NET, "--title", "Budget", "--rule", "majority")
    err = cli.fails(1, "position", NET, "Budget", "yes")
    assert "'Budget' matches several" in err
    assert first["decision_id"][:8] in err
    assert second["decision_id"][:8] in err
    assert "give more of the id" in err
    cli.ok("position", NET, first["decision_id"][:10], "yes")


def test_resolve_by_prefix_and_ambiguity() -> None:
    candidates = {
        bytes.fromhex("abcd01" + "00" * 29): "One",
        bytes.fromhex("abcd02" + "00" * 29): "Two",
    }
    with pytest.raises(AmbiguousReference, match=r"One \(abcd0100\), Two \(abcd0200\)"):
        _resolve("decision", "abcd", candidates)
    assert _resolve("decision", "abcd02", candidates) == bytes.fromhex("abcd02" + "00" * 29)
    assert _resolve("decision", "two", candidates) == bytes.fromhex("abcd02" + "00" * 29)
    with pytest.raises(NotFound):
        _resolve("decision", "abc", candidates)  # prefixes need 4 hex digits


def test_leaving_then_acting_is_not_allowed(cli: Cli) -> None:
    cli.ok("propose", NET, "--title", "Open", "--rule", "consent")
    cli.ok("leave", NET)
    assert cli.json("member", "list", NET)["members"][0]["status"] == "left"
    assert "not an active member" in cli.fails(1, "comment", NET, "Open", "hello")
    assert "not an active member" in cli.fails(
        1, "propose", NET, "--title", "T", "--rule", "consent"
    )
    assert "not an active member" in cli.fails(1, "leave", NET)


def test_plain_text_views(cli: Cli, tmp_path: Path) -> None:
    key = _new_key()
    _admit(cli, key)
    cli.ok(
        "agreement", "add", NET, "--kind", "ethical_standards", "--title", "Ethics", "--text", "x"
    )
    cli.ok("propose", NET, "--title", "Picnic", "--rule", "consensus")
    cli.ok("position", NET, "Picnic", "block", "--reason", "رود طغیان کرده")
    expected = {
        ("network", "list"): "OPEN DECISIONS",
        ("network", "show", NET): "ordinary rule:",
        ("member", "list", NET): "VERIFIED",
        ("member", "show", NET, key[:8]): "invited by:      Ana (",
        ("member", "match", NET): "(none)",
        ("agreement", "list", NET): "not adopted",
        ("agreement", "show", NET, "Ethics"): "in force:  none",
        ("decision", "list", NET): "Picnic",
        ("decision", "show", NET, "Picnic"): "if closed now: blocked",
        ("log", NET): "adopted",
    }
    for command, needle in expected.items():
        assert needle in cli.ok(*command), command
    assert "(unnamed)" in cli.ok("decision", "show", NET, f"Admit {key[:6]}")


def test_text_never_passes_control_characters_to_the_terminal() -> None:
    hostile = {
        "network": "00",
        "members": [
            {
                "key": "ab" * 32,
                "name": "Eve\x1b[2J\u202e",
                "kind": "individual",
                "status": "active",
                "roles": [],
                "offers": [],
                "needs": [],
                "verified_by": [],
                "verified_by_me": False,
                "me": False,
            }
        ],
    }
    text = render("member_list", hostile)
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "Eve\ufffd[2J\ufffd" in text


# -- invites --------------------------------------------------------------------------


def test_invite_join_accept_welcome(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invite = cli.json("invite", "create", NET, "--expires-in", "2d")
    assert invite["code"].startswith("P2P1-")
    assert invite["expires_in_ms"] == 2 * 86_400_000
    request, welcome = tmp_path / "omid.request", tmp_path / "omid.welcome"
    monkeypatch.setenv("P2PNET_INVITE_CODE", invite["code"])
    joined = cli.json("--profile", "other", "join", "--request", str(request))
    assert joined["network_id"] == invite["network"]
    accepted = cli.json("invite", "accept", NET, str(request), "--out", str(welcome))
    assert accepted == {
        "status": "admitted",
        "decision_id": None,
        "welcome_written": True,
        "welcome": str(welcome),
    }
    imported = cli.json("--profile", "other", "bundle", "import", str(welcome))
    assert imported["network_name"] == NET
    assert imported["imported"] >= 2  # the genesis and Omid's admission
    members = cli.json("--profile", "other", "member", "list", NET)["members"]
    assert sorted(m["name"] for m in members) == ["Ana", "Omid"]
    other_request = tmp_path / "again.request"
    assert "already belong" in cli.fails(
        1, "--profile", "other", "join", "--request", str(other_request)
    )


def test_admission_by_decision_through_an_invite(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("network", "create", "--name", "Fund", "--type", "joint_funding")
    code = cli.json("invite", "create", "Fund")["code"]
    request, welcome = tmp_path / "req", tmp_path / "wl"
    monkeypatch.setattr("sys.stdin", io.StringIO(code + "\n"))  # the code piped on stdin
    cli.ok("--profile", "other", "join", "--request", str(request))
    pending = cli.json("invite", "accept", "Fund", str(request), "--out", str(welcome))
    assert pending["status"] == "decision_pending"
    assert pending["welcome_written"] is False
    assert "admits new members by decision" in cli.ok(
        "invite", "accept", "Fund", str(request), "--out", str(welcome)
    )
    cli.ok("position", "Fund", pending["decision_id"][:8], "consent")
    cli.ok("close", "Fund", pending["decision_id"][:8])
    done = cli.json("invite", "accept", "Fund", str(request), "--out", str(welcome))
    assert done["status"] == "admitted"
    assert (
        cli.json("--profile", "other", "bundle", "import", str(welcome))["network_name"] == "Fund"
    )


def test_invite_errors(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "1 to 100" in cli.fails(1, "invite", "create", NET, "--uses", "0")
    assert "90 days" in cli.fails(1, "invite", "create", NET, "--expires-in", "100d")
    assert "3d, 12h or 30m" in cli.fails(1, "invite", "create", NET, "--expires-in", "soon")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "P2PNET_INVITE_CODE" in cli.fails(
        1, "--profile", "other", "join", "--request", str(tmp_path / "r")
    )
    monkeypatch.setenv("P2PNET_INVITE_CODE", "P2P1-NOTACODE")
    cli.fails(1, "--profile", "other", "join", "--request", str(tmp_path / "r"))
    junk = tmp_path / "junk.request"
    junk.write_bytes(b"P2PNETJR\x01" + b"\x00" * 200)
    cli.fails(1, "invite", "accept", NET, str(junk), "--out", str(tmp_path / "wl"))
    assert "cannot read" in cli.fails(
        1, "invite", "accept", NET, str(tmp_path / "missing"), "--out", str(tmp_path / "wl")
    )
    # A used invite admits no one else.
    Node.create(cli.home, "third", PASS, name="Cyd", kdf=KdfParams.insecure_for_tests()).close()
    monkeypatch.setenv("P2PNET_INVITE_CODE", cli.json("invite", "create", NET)["code"])
    first, second = tmp_path / "first", tmp_path / "second"
    cli.ok("--profile", "other", "join", "--request", str(first))
    cli.ok("--profile", "third", "join", "--request", str(second))
    cli.ok("invite", "accept", NET, str(first), "--out", str(tmp_path / "first.wl"))
    err = cli.fails(1, "invite", "accept", NET, str(second), "--out", str(tmp_path / "w2"))
    assert "used" in err or "expired" in err
    assert not (tmp_path / "w2").exists()


# -- the decision log -----------------------------------------------------------------


def test_log_export_and_verify(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.ok("propose", NET, "--title", "Meet monthly", "--rule", "majority")
    cli.ok("position", NET, "Meet monthly", "yes")
    cli.ok("close", NET, "Meet monthly")
    sealed, plain = tmp_path / "log.p2pnet", tmp_path / "log-plain.p2pnet"
    assert cli.json("log", "export", NET, str(sealed))["decision_count"] == 1
    report = cli.json("log", "verify", str(sealed))
    assert report["ok"] is True
    assert report["encrypted"] is True
    assert report["decisions"][0]["title"] == "Meet monthly"
    code, _, err = cli.run("log", "export", NET, str(plain), "--plain")
    assert code == 0
    assert "NOT encrypted" in err
    # An outside auditor with no profile verifies the plain copy.
    auditor = Cli(tmp_path / "auditor", capsys)
    assert auditor.json("log", "verify", str(plain))["network_name"] == NET
    assert auditor.run("log", "verify", str(sealed))[0] == 3  # no key without a profile
    tampered = tmp_path / "tampered"
    data = bytearray(plain.read_bytes())
    at = data.index(b"Meet monthly")
    data[at] ^= 0x01
    tampered.write_bytes(bytes(data))
    code, out, err = cli.run("log", "verify", str(tampered))
    assert code == 3
    assert "problem:" in out
    assert "did NOT verify" in err
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00" * 100)
    code, out, _ = cli.run("--json", "log", "verify", str(garbage))
    assert code == 3
    assert json.loads(out)["problems"]
    assert "cannot read" in cli.fails(1, "log", "verify", str(tmp_path / "missing"))
    assert "there is no directory" in cli.fails(1, "log", "export", NET, str(tmp_path / "x" / "y"))
    assert "use: p2pnet log NET" in cli.fails(1, "log", "export", NET)


# -- bundles --------------------------------------------------------------------------


def test_bundles(cli: Cli, tmp_path: Path) -> None:
    summary, bundle, delta = tmp_path / "summary", tmp_path / "bundle", tmp_path / "delta"
    assert cli.json("bundle", "summary", NET, str(summary))["bytes"] > 0
    assert cli.json("bundle", "export", NET, str(bundle))["envelopes"] >= 1
    assert cli.json("bundle", "export", NET, str(delta), "--for", str(summary))["envelopes"] == 0
    imported = cli.json("bundle", "import", str(bundle))
    assert imported["network_name"] == NET
    assert imported["imported"] == 0
    assert imported["duplicates"] >= 1
    err = cli.fails(1, "--profile", "other", "bundle", "import", str(bundle))
    assert "Traceback" not in err
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"P2PNET" + b"\x00" * 4000)
    assert "not a p2pnet bundle" in cli.fails(1, "bundle", "import", str(garbage))
    assert "cannot read" in cli.fails(1, "bundle", "import", str(tmp_path / "missing"))
    truncated = tmp_path / "truncated"
    truncated.write_bytes(bundle.read_bytes()[:60])
    code, _, err = cli.run("bundle", "import", str(truncated))
    assert code in (1, 3)
    assert err.startswith("p2pnet: ")
    assert "cannot be used" in cli.fails(
        1, "bundle", "export", NET, str(delta), "--for", str(garbage)
    )


# -- passphrase and panic -------------------------------------------------------------


def test_passphrase_change(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "P2PNET_NEW_PASSPHRASE" in cli.fails(1, "passphrase", "change")
    monkeypatch.setenv("P2PNET_NEW_PASSPHRASE", "short")
    assert "at least 10" in cli.fails(1, "passphrase", "change")
    monkeypatch.setenv("P2PNET_NEW_PASSPHRASE", "nine char")  # the app's minimum, too
    assert "at least 10" in cli.fails(1, "passphrase", "change")
    monkeypatch.setenv("P2PNET_NEW_PASSPHRASE", "پاس‌فریز تازه و بلند")
    assert cli.json("passphrase", "change") == {"changed": True}
    assert cli.fails(2, "whoami") == "p2pnet: wrong passphrase (nothing was changed)\n"
    monkeypatch.setenv("P2PNET_PASSPHRASE", "پاس‌فریز تازه و بلند")
    assert cli.json("whoami")["name"] == "Ana"


def test_panic(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = home / "profiles" / "default"
    monkeypatch.setattr("sys.stdin", io.StringIO("wipe\n"))
    assert "nothing was wiped" in cli.fails(1, "panic")
    assert profile.exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("WIPE\n"))
    assert cli.json("panic") == {"profile": "default", "wiped": True}
    assert not profile.exists()
    assert cli.json("panic", "--yes") == {"profile": "default", "wiped": False}
    assert cli.json("--profile", "other", "panic", "--yes")["wiped"] is True
    assert "p2pnet init" in cli.fails(1, "whoami")


# -- every command's common failures --------------------------------------------------

NET_COMMANDS = [
    ("network", "show", "{net}"),
    ("leave", "{net}"),
    ("member", "list", "{net}"),
    ("member", "show", "{net}", "Ana"),
    ("member", "update", "{net}", "--name", "A"),
    ("member", "safety-number", "{net}", "Ana"),
    ("member", "verify", "{net}", "Ana", "--safety-number", "1"),
    ("member", "match", "{net}"),
    ("agreement", "add", "{net}", "--kind", "charter", "--title", "T", "--text", "x"),
    ("agreement", "list", "{net}"),
    ("agreement", "show", "{net}", "T"),
    ("agreement", "endorse", "{net}", "T"),
    ("propose", "{net}", "--title", "T", "--rule", "consent"),
    ("decision", "list", "{net}"),
    ("decision", "show", "{net}", "T"),
    ("position", "{net}", "T", "yes"),
    ("close", "{net}", "T"),
    ("comment", "{net}", "T", "x"),
    ("remove", "{net}", "Ana", "--emergency"),
    ("log", "{net}"),
    ("log", "export", "{net}", "{tmp}/log"),
    ("bundle", "summary", "{net}", "{tmp}/summary"),
    ("bundle", "export", "{net}", "{tmp}/bundle"),
    ("invite", "create", "{net}"),
    ("invite", "accept", "{net}", "{tmp}/request", "--out", "{tmp}/welcome"),
]
OTHER_COMMANDS = [
    ("network", "list"),
    ("network", "create", "--name", "N", "--type", "coordination"),
    ("bundle", "import", "{tmp}/bundle"),
    ("passphrase", "change"),
    ("join", "--request", "{tmp}/request"),
]


def _fill(command: tuple[str, ...], net: str, tmp: Path) -> list[str]:
    return [word.format(net=net, tmp=tmp) for word in command]


def test_every_command_refuses_a_wrong_passphrase(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bundle").write_bytes(b"x")
    monkeypatch.setenv("P2PNET_PASSPHRASE", "not the passphrase")
    monkeypatch.setenv("P2PNET_NEW_PASSPHRASE", "a new passphrase")
    monkeypatch.setenv("P2PNET_INVITE_CODE", "P2P1-ANYTHING")
    for command in [*NET_COMMANDS, *OTHER_COMMANDS]:
        err = cli.fails(2, *_fill(command, NET, tmp_path))
        assert err == "p2pnet: wrong passphrase (nothing was changed)\n", command


def test_every_network_command_names_an_unknown_network(cli: Cli, tmp_path: Path) -> None:
    for command in NET_COMMANDS:
        err = cli.fails(1, *_fill(command, "Nowhere", tmp_path))
        assert err == "p2pnet: no network matches 'Nowhere'\n", command
