"""protocol.log: exporting a decision log and verifying it without the network."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import EpochKey
from protocol import LocalProtocolError, VerifiedOp, logverify, op_id_of, wire
from protocol.dag import Dag
from protocol.fold import fold
from protocol.log import MAGIC, LogReport, export_log, short_id
from protocol.logverify import verify_log
from protocol.rules import Ratio, RuleSpec
from protocol.settings import defaults_for
from tests.netsim import DAY, Sim, key

NONCE = bytes(range(24))
FAST = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FLIPS = settings(FAST, max_examples=400)
CONSENSUS = RuleSpec("consensus", Ratio(1, 2)).to_wire()
CONSENT = RuleSpec("consent", Ratio(1, 2)).to_wire()
BLOCK_REASON = "We can't risk our members' jobs this month."


@dataclass
class Story:
    sim: Sim
    ops: dict[str, VerifiedOp]  # named ops of the story
    late_comment: VerifiedOp  # after the last close: not in the log
    plain: bytes
    sealed: bytes

    @property
    def export_key(self) -> EpochKey:
        return self.sim.secret.export_key

    @property
    def keys(self) -> dict[bytes, EpochKey]:
        return {self.export_key.epoch_id: self.export_key}


def _everyone(sim: Sim, proposal: VerifiedOp, stances: dict[str, tuple[str, str]]) -> None:
    for who, (stance, reason) in stances.items():
        sim.position(who, proposal, stance, reason)
    sim.sync_all()


def _build() -> Story:
    sim = Sim("ana")
    for name in ("ben", "cai", "dia"):
        sim.admit("ana", name)
    sim.sync_all()
    named: dict[str, VerifiedOp] = {}
    charter_rule = defaults_for("coordination").charter_rule.to_wire()
    text = {"kind": "charter", "title": "Our charter", "text": "We act together."}
    named["version"] = version = sim.op("ana", "agreement_version", text)
    sim.sync_all()
    named["charter"] = charter = sim.propose(
        "ana",
        rule=charter_rule,
        kind="agreement_adoption",
        subject=version.op_id,
        title="Adopt the charter",
    )
    sim.sync_all()
    _everyone(sim, charter, dict.fromkeys(("ana", "ben", "cai", "dia"), ("yes", "")))
    named["charter_close"] = sim.close("ana", charter)
    sim.sync_all()

    named["strike"] = strike = sim.propose("ben", rule=CONSENSUS, title="Strike on Monday")
    sim.sync_all()
    sim.position("ana", strike, "agree")
    sim.position("ben", strike, "agree")
    sim.position("cai", strike, "stand_aside")
    named["block"] = sim.position("dia", strike, "block", BLOCK_REASON)
    sim.sync_all()
    named["strike_close"] = sim.close("ben", strike)
    sim.sync_all()
    sim.op("cai", "comment", {"target": strike.op_id, "text": "Let's revisit in spring."})
    sim.sync_all()

    named["printer"] = printer = sim.propose("cai", rule=CONSENT, title="Buy a shared printer")
    sim.sync_all()
    _everyone(
        sim,
        printer,
        {
            "ana": ("consent", ""),
            "ben": ("concern", "Where do we keep it?"),
            "cai": ("consent", ""),
            "dia": ("objection", "Too costly for now."),
        },
    )
    claim = sim.replicas["cai"].folder.projected_tally(printer.op_id).to_wire()
    named["printer_close"] = sim.close("cai", printer, claim={**claim, "outcome": "adopted"})
    sim.sync_all()

    removal_rule = defaults_for("coordination").removal_rule.to_wire()
    named["removal"] = removal = sim.propose(
        "ben", rule=removal_rule, kind="removal", subject=key("dia"), title="Remove Dia"
    )
    sim.sync_all()
    _everyone(sim, removal, {"ana": ("yes", ""), "ben": ("yes", ""), "cai": ("abstain", "")})
    named["removal_close"] = sim.close("ben", removal)
    sim.sync_all()
    late = sim.op("ana", "comment", {"target": version.op_id, "text": "Signed copies at Ana's."})
    sim.sync_all()
    state = sim.state("ana")
    plain = export_log(state, sim.all_ops, key=None, nonce=None)
    sealed = export_log(state, sim.all_ops, key=sim.secret.export_key, nonce=NONCE)
    return Story(sim, named, late, plain, sealed)


@pytest.fixture(scope="module")
def story() -> Story:
    return _build()


# -- helpers ---------------------------------------------------------------------------------


def _body(data: bytes) -> dict[str, Any]:
    assert data[:10] == MAGIC + b"\x02\x00"
    body: dict[str, Any] = wire.decode(data[10:], max_size=1 << 26, max_items=1 << 16)
    return body


def _plain(body: dict[str, Any]) -> bytes:
    return MAGIC + b"\x02\x00" + wire.encode(body)


def _index(body: dict[str, Any], op: VerifiedOp) -> int:
    return [op_id_of(raw) for raw in body["ops"]].index(op.op_id)


def _has(report: LogReport, *parts: str) -> None:
    """Assert one problem line holds every part."""
    assert not report.ok
    assert any(all(p in line for p in parts) for line in report.problems), report.problems


def _decision_label(op: VerifiedOp) -> str:
    return f"decision '{op.body['title']}' ({short_id(op.op_id)})"


# -- untampered logs -------------------------------------------------------------------------


def test_plain_log_verifies_with_the_state_s_outcomes(story: Story) -> None:
    report = verify_log(story.plain)
    assert report.ok, report.problems
    assert report.problems == ()
    assert (report.opened, report.encrypted) == (True, False)
    assert report.network_name == "Teachers' Solidarity"
    assert report.network_id == story.sim.network_id
    summary = [
        (d.title, d.rule.rule, d.outcome.outcome, d.positions, d.disputed) for d in report.decisions
    ]
    assert summary == [
        ("Adopt the charter", "supermajority", "adopted", 4, False),
        ("Strike on Monday", "consensus", "blocked", 4, False),
        ("Buy a shared printer", "consent", "objected", 4, True),
        ("Remove Dia", "supermajority", "adopted", 3, False),
    ]
    state = story.sim.state("ana")
    for d in report.decisions:
        mine = state.decisions[d.decision_id]
        assert (d.close_op, d.outcome, d.disputed) == (mine.close_op, mine.outcome, mine.disputed)
        assert d.confirmed


def test_encrypted_log_verifies_and_hides_everything(story: Story) -> None:
    report = verify_log(story.sealed, keys=story.keys)
    assert report.ok, report.problems
    assert (report.opened, report.encrypted) == (True, True)
    assert report.decisions == verify_log(story.plain).decisions
    assert story.export_key.epoch_id not in story.sealed  # no key id links two logs
    assert story.sealed[10:34] == NONCE
    padded = len(story.sealed) - 34 - 16
    assert padded >= 4096
    assert padded & (padded - 1) == 0
    for secret in (b"Adopt the charter", story.sim.network_id, story.ops["block"].signed[:40]):
        assert secret not in story.sealed


def test_log_holds_the_causal_past_of_the_closes_in_fold_order(story: Story) -> None:
    body = _body(story.plain)
    ids = [op_id_of(raw) for raw in body["ops"]]
    dag = Dag(story.sim.genesis.op_id)
    dag.add_all(story.sim.all_ops.values())
    closes = [
        story.ops[n].op_id
        for n in ("charter_close", "strike_close", "printer_close", "removal_close")
    ]
    assert set(ids) == {a for c in closes for a in dag.ancestors(c)}
    assert story.late_comment.op_id not in ids
    lamports = [story.sim.all_ops[i].lamport for i in ids]
    assert list(zip(lamports, ids, strict=True)) == sorted(zip(lamports, ids, strict=True))
    assert [d["close"] for d in body["decisions"]] == closes
    assert (body["network_id"], body["genesis_id"]) == (
        story.sim.network_id,
        story.sim.genesis.op_id,
    )


def test_every_replica_exports_the_same_bytes(story: Story) -> None:
    sim = story.sim
    plains, sealeds = set(), set()
    for name, replica in sim.replicas.items():
        held = [op for op in sim.all_ops.values() if op.op_id in replica.dag]
        held.reverse()  # arrival order does not matter
        plains.add(export_log(sim.state(name), held, key=None, nonce=None))
        by_id = {op.op_id: op for op in held}
        sealeds.add(export_log(sim.state(name), by_id, key=story.export_key, nonce=NONCE))
    assert plains == {story.plain}
    assert sealeds == {story.sealed}
    other_nonce = export_log(sim.state("ben"), sim.all_ops, key=story.export_key, nonce=bytes(24))
    assert other_nonce != story.sealed
    assert verify_log(other_nonce, keys=story.keys).ok


def test_a_network_without_decisions_exports_its_genesis_only() -> None:
    sim = Sim("ana")
    sim.admit("ana", "ben")
    data = export_log(sim.state("ana"), sim.all_ops, key=None, nonce=None)
    assert _body(data)["ops"] == [sim.genesis.signed]
    report = verify_log(data)
    assert report.ok
    assert report.decisions == ()
    assert report.network_name == "Teachers' Solidarity"


def test_an_emergency_removal_outside_the_closes_past_is_included() -> None:
    # Dia's objection is counted by Ana's close, but Ben and Cai removed Dia concurrently
    # with a cutoff below it: the objection is void, and the log must prove that.
    sim = Sim("ana")
    for name in ("ben", "cai", "dia"):
        sim.admit("ana", name)
    sim.sync_all()
    proposal = sim.propose("ana", rule=CONSENT, title="Hold the vigil", closes_in=1000)
    sim.sync_all()
    sim.position("dia", proposal, "objection", "Not safe.")
    removals = [
        sim.op(who, "emergency_remove", {"reason": "Phone seized.", "subject": key("dia")})
        for who in ("ben", "cai")
    ]
    sim.deliver("ana", [op for op in sim.all_ops.values() if op.author == key("dia")])
    sim.position("ana", proposal, "consent")
    close = sim.close("ana", proposal, dt=DAY)
    sim.sync_all()
    state = sim.state("ana")
    decision = state.decisions[proposal.op_id]
    assert decision.close_op == close.op_id
    assert decision.outcome is not None
    assert [p.member for p in decision.counted] == [key("ana")]
    dag = Dag(sim.genesis.op_id)
    dag.add_all(sim.all_ops.values())
    past = {sim.all_ops[i] for i in dag.ancestors(close.op_id)}
    assert not {op.op_id for op in removals} & {op.op_id for op in past}
    alone = fold(past, network_id=sim.network_id, genesis_id=sim.genesis.op_id)
    assert alone is not None
    assert alone.decisions[proposal.op_id].outcome != decision.outcome  # the objection counts
    data = export_log(state, sim.all_ops, key=None, nonce=None)
    ids = {op_id_of(raw) for raw in _body(data)["ops"]}
    assert {op.op_id for op in removals} <= ids
    report = verify_log(data)
    assert report.ok, report.problems
    assert report.decisions[0].outcome == decision.outcome


# -- tampering: each caught and named --------------------------------------------------------


def test_a_changed_byte_inside_a_signed_op(story: Story) -> None:
    body = _body(story.plain)
    i = _index(body, story.ops["block"])
    forged = body["ops"][i].replace(b"jobs", b"jabs")
    assert forged != body["ops"][i]
    body["ops"][i] = forged
    report = verify_log(_plain(body))
    who = short_id(key("dia"))
    _has(
        report,
        f"op #{i} (position by {who}, id {short_id(op_id_of(forged))})",
        "signature does not verify",
    )
    # The op's id changed, so the op after it no longer finds its parent.
    _has(report, f"names parent {short_id(story.ops['block'].op_id)} which is not in the log")


def test_a_changed_signature(story: Story) -> None:
    body = _body(story.plain)
    i = _index(body, story.ops["charter_close"])
    raw = body["ops"][i]
    body["ops"][i] = raw[:-1] + bytes([raw[-1] ^ 1])
    report = verify_log(_plain(body))
    _has(report, f"op #{i} (close by {short_id(key('ana'))}", "signature does not verify")


def test_a_dropped_position_breaks_a_hash_link(story: Story) -> None:
    block = story.ops["block"]
    body = _body(story.plain)
    del body["ops"][_index(body, block)]
    report = verify_log(_plain(body))
    children = [
        (n, op_id_of(raw))
        for n, raw in enumerate(body["ops"])
        if block.op_id in story.sim.all_ops[op_id_of(raw)].parents
    ]
    assert children
    for n, child in children:
        _has(
            report,
            f"op #{n} (",
            f"id {short_id(child)}) names parent {short_id(block.op_id)} which is not in the log",
        )
    _has(report, _decision_label(story.ops["strike"]), "the ops leave it open")
    _has(report, "more ops were not checked")


def test_a_dropped_close(story: Story) -> None:
    close = story.ops["removal_close"]
    body = _body(story.plain)
    del body["ops"][_index(body, close)]
    report = verify_log(_plain(body))
    assert report.problems == (
        f"{_decision_label(story.ops['removal'])}: the log says it was closed by "
        f"{short_id(close.op_id)}, which is not in the log; the ops leave it open",
    )
    assert [d.title for d in report.decisions] == [
        "Adopt the charter",
        "Strike on Monday",
        "Buy a shared printer",
    ]


def test_reordered_decisions(story: Story) -> None:
    body = _body(story.plain)
    body["decisions"][0], body["decisions"][1] = body["decisions"][1], body["decisions"][0]
    report = verify_log(_plain(body))
    assert report.problems == (
        f"decisions listed out of order: #1, {_decision_label(story.ops['charter'])}, "
        f"closes before #0, {_decision_label(story.ops['strike'])}",
    )


def test_a_forged_outcome(story: Story) -> None:
    body = _body(story.plain)
    body["decisions"][1]["outcome"]["outcome"] = "adopted"
    report = verify_log(_plain(body))
    assert report.problems == (
        f"{_decision_label(story.ops['strike'])}: the log says adopted, the ops give blocked",
    )
    assert [d.confirmed for d in report.decisions] == [True, False, True, True]


def test_a_forged_count_or_dispute_flag(story: Story) -> None:
    body = _body(story.plain)
    counts = body["decisions"][1]["outcome"]["counts"]
    counts["agree"], counts["stand_aside"] = 3, 0
    body["decisions"][2]["disputed"] = False
    report = verify_log(_plain(body))
    _has(
        report,
        _decision_label(story.ops["strike"]),
        "the log's tally",
        "differs from the recomputed",
    )
    _has(report, _decision_label(story.ops["printer"]), "the log says undisputed")


def test_a_decision_left_out_of_the_list_or_listed_with_another_close(story: Story) -> None:
    body = _body(story.plain)
    body["decisions"].pop()
    body["decisions"][0]["close"] = story.ops["strike_close"].op_id
    report = verify_log(_plain(body))
    removal_close = short_id(story.ops["removal_close"].op_id)
    _has(
        report,
        _decision_label(story.ops["removal"]),
        f"closed by {removal_close} is missing from the list",
    )
    _has(
        report,
        _decision_label(story.ops["charter"]),
        f"the log names close {short_id(story.ops['strike_close'].op_id)}",
        f"the first valid close is {short_id(story.ops['charter_close'].op_id)}",
    )


def test_an_op_from_another_network(story: Story) -> None:
    stranger = Sim("eve", name="Nurses' Network").genesis
    body = _body(story.plain)
    body["ops"].append(stranger.signed)
    body["ops"].sort(
        key=lambda raw: (story.sim.all_ops.get(op_id_of(raw), stranger).lamport, op_id_of(raw))
    )
    i = _index(body, stranger)
    report = verify_log(_plain(body))
    assert report.problems == (
        f"op #{i} (genesis by {short_id(stranger.author)}, id {short_id(stranger.op_id)}) "
        f"belongs to another network ({short_id(stranger.net)})",
    )


def test_ops_out_of_fold_order_and_duplicates(story: Story) -> None:
    body = _body(story.plain)
    last = len(body["ops"]) - 1
    body["ops"][last - 1], body["ops"][last] = body["ops"][last], body["ops"][last - 1]
    body["ops"].append(body["ops"][0])
    report = verify_log(_plain(body))
    _has(report, f"op #{last} (", "is out of fold order")
    _has(report, f"op #{last + 1} (genesis by {short_id(key('ana'))}", "repeats op #0")


def test_truncated_files(story: Story) -> None:
    report = verify_log(story.plain[:-100])
    assert not report.ok
    assert not report.opened
    assert report.problems == ("the log's contents are unreadable: malformed msgpack",)
    report = verify_log(story.sealed[:-1], keys=story.keys)
    assert report.problems == ("the encrypted log has the wrong size: truncated or altered",)
    assert verify_log(story.plain[:9]).problems == (
        "not a p2pnet decision log (no P2PNETDL header)",
    )


def test_wrong_or_missing_key(story: Story) -> None:
    report = verify_log(story.sealed)
    assert (report.ok, report.opened, report.encrypted) == (False, False, True)
    assert report.problems == (
        "the log could not be decrypted: not for any network you hold, or altered",
    )
    impostor = EpochKey(story.export_key.epoch_id, bytes(32))
    report = verify_log(story.sealed, keys={impostor.epoch_id: impostor})
    assert report.problems == (
        "the log could not be decrypted: not for any network you hold, or altered",
    )
    assert report.decisions == ()


def test_header_fields(story: Story) -> None:
    assert verify_log(story.plain[:8] + b"\x01" + story.plain[9:]).problems == (
        "decision log version 1 is not supported",
    )
    assert verify_log(story.plain[:9] + b"\x07" + story.plain[10:]).problems == (
        "unknown decision log mode 7",
    )


def test_limits_are_enforced_on_read(story: Story, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logverify, "MAX_LOG_BYTES", len(story.plain) - 1)
    assert verify_log(story.plain).problems == (
        f"the file is {len(story.plain)} bytes, over the limit of {len(story.plain) - 1}",
    )
    monkeypatch.undo()
    monkeypatch.setattr(logverify, "MAX_LOG_OPS", 10)
    report = verify_log(story.plain)
    assert not report.opened
    assert report.problems[0].startswith("the log's contents are unreadable:")


def test_export_refuses_misuse(story: Story) -> None:
    state = story.sim.state("ana")
    with pytest.raises(LocalProtocolError, match="key and a nonce"):
        export_log(state, story.sim.all_ops, key=story.export_key, nonce=None)
    with pytest.raises(LocalProtocolError, match="key and a nonce"):
        export_log(state, story.sim.all_ops, key=None, nonce=NONCE)
    with pytest.raises(LocalProtocolError, match="24 fresh random bytes"):
        export_log(state, story.sim.all_ops, key=story.export_key, nonce=NONCE[:12])
    without_close = [op for op in story.sim.all_ops.values() if op != story.ops["removal_close"]]
    with pytest.raises(LocalProtocolError, match="not among the ops"):
        export_log(state, without_close, key=None, nonce=None)
    with pytest.raises(LocalProtocolError, match="genesis"):
        export_log(state, [], key=None, nonce=None)
    strike = state.decisions[story.ops["strike"].op_id]
    decisions = {**state.decisions, strike.decision_id: replace(strike, disputed=True)}
    with pytest.raises(LocalProtocolError, match="not the fold of these ops"):
        export_log(replace(state, decisions=decisions), story.sim.all_ops, key=None, nonce=None)


# -- garbage never raises --------------------------------------------------------------------


@FAST
@given(data=st.binary(max_size=2048), mode=st.sampled_from([b"", b"\x02\x00", b"\x02\x01"]))
def test_random_bytes_never_raise(story: Story, data: bytes, mode: bytes) -> None:
    prefix = MAGIC + mode if mode else b""
    report = verify_log(prefix + data, keys=story.keys)
    assert not report.ok
    assert report.problems


@FLIPS
@given(data=st.data(), mask=st.integers(min_value=1, max_value=255))
def test_any_byte_flip_of_a_plain_log_is_caught(
    story: Story, data: st.DataObject, mask: int
) -> None:
    flipped = bytearray(story.plain)
    flipped[data.draw(st.integers(0, len(flipped) - 1), label="where")] ^= mask
    report = verify_log(bytes(flipped))
    assert not report.ok
    assert report.problems


@FAST
@given(data=st.data(), mask=st.integers(min_value=1, max_value=255))
def test_any_byte_flip_of_an_encrypted_log_is_caught(
    story: Story, data: st.DataObject, mask: int
) -> None:
    flipped = bytearray(story.sealed)
    flipped[data.draw(st.integers(0, len(flipped) - 1), label="where")] ^= mask
    report = verify_log(bytes(flipped), keys=story.keys)
    assert not report.ok
    assert not report.opened
