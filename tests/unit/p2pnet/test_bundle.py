"""Bundle files carried by hand: round trip, export for a summary, damaged bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnet.bundle import export_bundle, import_bundle, read_summary, write_summary
from protocol import RemoteProtocolError
from protocol.bundle import CHUNK_BYTES, HEADER_BYTES
from protocol.fold import fold
from protocol.holdings import MemoryHoldings
from protocol.rules import Ratio, RuleSpec
from tests.netsim import Sim
from tests.pipe import holdings, seal

CONSENT = RuleSpec("consent", Ratio(1, 2)).to_wire()


def _story(members: int = 4, decisions: int = 3, reason: str = "fine by me " * 5) -> Sim:
    sim = Sim("ana")
    names = ["ana"] + [f"m{i}" for i in range(1, members)]
    for name in names[1:]:
        sim.admit("ana", name)
    sim.sync_all()
    for _ in range(decisions):
        proposal = sim.propose("ana", rule=CONSENT, title="Meet on Thursday")
        sim.sync_all()
        for name in names:
            sim.position(name, proposal, "consent", reason)
        sim.sync_all()
    return sim


@pytest.fixture
def sim() -> Sim:
    return _story()


def _sides(sim: Sim, behind: int) -> tuple[MemoryHoldings, MemoryHoldings, dict[bytes, bytes]]:
    envelopes = {o.op_id: seal(sim, o) for o in sim.all_ops.values()}
    ordered = sorted(sim.all_ops.values(), key=lambda o: (o.lamport, o.op_id))
    full = holdings(sim, ordered, envelopes)
    partial = holdings(sim, ordered[: len(ordered) - behind], envelopes)
    return full, partial, envelopes


def _keys(sim: Sim, held: MemoryHoldings) -> dict[bytes, tuple[object, MemoryHoldings]]:
    return {sim.network_id: (sim.secret.bundle_key, held)}


def test_round_trip_into_an_empty_node(sim: Sim, tmp_path: Path) -> None:
    full, _, _ = _sides(sim, 0)
    empty = holdings(sim, [sim.genesis], {sim.genesis.op_id: seal(sim, sim.genesis)})
    path = tmp_path / "bundle.p2p"
    seen: list[tuple[int, int]] = []
    count = export_bundle(
        path,
        full,
        network_id=sim.network_id,
        key=sim.secret.bundle_key,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert count == len(sim.all_ops)
    assert seen[-1] == (count, count)
    assert path.stat().st_mode & 0o777 == 0o600
    assert (path.stat().st_size - HEADER_BYTES) % CHUNK_BYTES == 0
    report = import_bundle(path, _keys(sim, empty))  # type: ignore[arg-type]
    assert report.network_id == sim.network_id
    assert report.imported == len(sim.all_ops) - 1
    assert report.duplicates == 1
    assert not report.truncated
    assert report.invalid == 0
    assert empty.replica.state() == fold(
        sim.all_ops.values(), network_id=sim.network_id, genesis_id=sim.genesis.op_id
    )


def test_export_for_a_summary_carries_exactly_the_missing_ops(sim: Sim, tmp_path: Path) -> None:
    full, partial, _ = _sides(sim, 7)
    summary_path = tmp_path / "summary.p2p"
    data = write_summary(
        summary_path, partial, network_id=sim.network_id, key=sim.secret.bundle_key
    )
    network_id, summary = read_summary(
        summary_path.read_bytes(), {sim.network_id: sim.secret.bundle_key}
    )
    assert network_id == sim.network_id
    assert len(data) < 1024  # fits a QR code comfortably
    path = tmp_path / "bundle.p2p"
    count = export_bundle(
        path, full, network_id=sim.network_id, key=sim.secret.bundle_key, for_summary=summary
    )
    missing = set(full.by_op) - set(partial.by_op)
    assert count == len(missing) == 7
    report = import_bundle(path, _keys(sim, partial))  # type: ignore[arg-type]
    assert report.imported == 7
    assert report.duplicates == 0
    assert set(partial.by_op) == set(full.by_op)
    assert partial.replica.state() == full.replica.state()


def test_summary_of_a_typical_network_fits_a_qr_code(tmp_path: Path) -> None:
    sim = _story(members=25, decisions=1)
    full, _, _ = _sides(sim, 0)
    data = write_summary(tmp_path / "s", full, network_id=sim.network_id, key=sim.secret.bundle_key)
    assert len(data) <= 1024  # QR version 40 holds 2,953 bytes


def test_truncated_bundle_imports_complete_parts_only(tmp_path: Path) -> None:
    sim = _story(members=6, decisions=25, reason="x" * 1900)  # several 256 KiB chunks
    full, _, _ = _sides(sim, 0)
    path = tmp_path / "bundle.p2p"
    export_bundle(path, full, network_id=sim.network_id, key=sim.secret.bundle_key)
    chunks = (path.stat().st_size - HEADER_BYTES) // CHUNK_BYTES
    assert chunks >= 2
    cut = tmp_path / "cut.p2p"
    cut.write_bytes(path.read_bytes()[: HEADER_BYTES + CHUNK_BYTES + 1000])
    empty = holdings(sim, [sim.genesis], {sim.genesis.op_id: seal(sim, sim.genesis)})
    report = import_bundle(cut, _keys(sim, empty))  # type: ignore[arg-type]
    assert report.truncated
    assert 0 < report.imported < len(sim.all_ops) - 1
    # What was imported is a consistent prefix: the replica equals the fold of what it holds.
    held = [sim.all_ops[o] for o in empty.by_op]
    assert empty.replica.state() == fold(
        held, network_id=sim.network_id, genesis_id=sim.genesis.op_id
    )


def test_bit_flip_stops_the_import_at_the_damaged_part(sim: Sim, tmp_path: Path) -> None:
    full, _, _ = _sides(sim, 0)
    path = tmp_path / "bundle.p2p"
    export_bundle(path, full, network_id=sim.network_id, key=sim.secret.bundle_key)
    data = bytearray(path.read_bytes())
    data[HEADER_BYTES + 100] ^= 0x01
    path.write_bytes(bytes(data))
    empty = holdings(sim, [sim.genesis], {sim.genesis.op_id: seal(sim, sim.genesis)})
    with pytest.raises(
        RemoteProtocolError, match="not for any network of this profile, or it is damaged"
    ):
        import_bundle(path, _keys(sim, empty))  # type: ignore[arg-type]
    assert set(empty.by_op) == {sim.genesis.op_id}


def test_wrong_network_and_garbage_are_refused(sim: Sim, tmp_path: Path) -> None:
    full, _, _ = _sides(sim, 0)
    other = Sim("ana", name="Another network")
    path = tmp_path / "bundle.p2p"
    export_bundle(path, full, network_id=sim.network_id, key=sim.secret.bundle_key)
    theirs = holdings(other, [other.genesis], {other.genesis.op_id: seal(other, other.genesis)})
    with pytest.raises(RemoteProtocolError):
        import_bundle(path, {other.network_id: (other.secret.bundle_key, theirs)})
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"PK\x03\x04 not a bundle at all" * 100)
    with pytest.raises(RemoteProtocolError, match="not a p2pnet bundle"):
        import_bundle(garbage, _keys(sim, full))  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError):
        read_summary(b"P2PNETSM\x01" + bytes(60), {sim.network_id: sim.secret.bundle_key})


def test_envelopes_with_bad_signatures_are_refused_and_reported(sim: Sim, tmp_path: Path) -> None:
    full, _, _ = _sides(sim, 0)

    class Tampering:
        """A holder whose stored envelopes were altered on disk (bad ciphertext)."""

        def __getattr__(self, name: str) -> object:
            return getattr(full, name)

        def envelope_of(self, op_id: bytes) -> bytes:
            data = full.envelope_of(op_id)
            if op_id == sim.genesis.op_id:
                return data
            return data[:-1] + bytes([data[-1] ^ 1])

    path = tmp_path / "bundle.p2p"
    export_bundle(path, Tampering(), network_id=sim.network_id, key=sim.secret.bundle_key)  # type: ignore[arg-type]
    empty = holdings(sim, [sim.genesis], {sim.genesis.op_id: seal(sim, sim.genesis)})
    report = import_bundle(path, _keys(sim, empty))  # type: ignore[arg-type]
    assert report.imported == 0
    assert report.invalid == len(sim.all_ops) - 1
    assert report.problems
    assert set(empty.by_op) == {sim.genesis.op_id}
