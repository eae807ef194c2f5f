"""The local store: encryption at rest, transactions, schema, integrity, concurrency, crashes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crypto import Identity, LocalKey
from p2pnet.errors import StoreCorrupt, StoreError
from p2pnet.store import SCHEMA_VERSION, Store, StoredEnvelope, StoredOp, _op_aad
from protocol import sign_op
from protocol.signed import VerifiedOp

NET = b"N" * 16
OTHER_NET = b"O" * 16
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def key() -> LocalKey:
    return LocalKey(b"k" * 32)


@pytest.fixture
def store(tmp_path: Path, key: LocalKey) -> Store:
    s = Store.open(tmp_path / "store.db", key)
    yield s  # type: ignore[misc]
    s.close()


def test_envelopes_round_trip_in_arrival_order_and_dedupe(store: Store) -> None:
    assert store.add_envelopes(NET, [(b"a" * 32, b"first"), (b"b" * 32, b"second")]) == 2
    assert store.add_envelopes(NET, [(b"a" * 32, b"first"), (b"c" * 32, b"third")]) == 1
    assert [e.data for e in store.envelopes(NET)] == [b"first", b"second", b"third"]
    assert store.count(NET) == 3
    assert store.count(OTHER_NET) == 0
    positions = [e.position for e in store.envelopes(NET)]
    assert [e.data for e in store.envelopes(NET, after=positions[0])] == [b"second", b"third"]


def test_networks_are_separate(store: Store) -> None:
    store.add_envelopes(NET, [(b"a" * 32, b"one")])
    store.add_envelopes(OTHER_NET, [(b"b" * 32, b"two")])
    assert [e.data for e in store.envelopes(OTHER_NET)] == [b"two"]


def test_local_values_round_trip_per_network(store: Store) -> None:
    store.put(NET, "epoch-keys", b"v1")
    store.put(None, "profile", b"p")
    assert store.get(NET, "epoch-keys") == b"v1"
    assert store.get(OTHER_NET, "epoch-keys") is None
    assert store.get(None, "profile") == b"p"
    store.put(NET, "epoch-keys", b"v2")
    assert store.get(NET, "epoch-keys") == b"v2"
    with store.transaction() as tx:
        tx.delete(NET, "epoch-keys")
    assert store.get(NET, "epoch-keys") is None


def test_transaction_rolls_back_on_error(store: Store) -> None:
    store.put(NET, "head", b"old")

    def write_then_fail() -> None:
        with store.transaction() as tx:
            tx.put(NET, "head", b"new")
            tx.add_envelopes(NET, [(b"x" * 32, b"half-written")])
            raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert store.get(NET, "head") == b"old"
    assert store.count(NET) == 0


def test_wrong_profile_key_cannot_read_envelopes(tmp_path: Path, key: LocalKey) -> None:
    with_key = Store.open(tmp_path / "s.db", key)
    with_key.add_envelopes(NET, [(b"a" * 32, b"secret")])
    with_key.close()
    other = Store.open(tmp_path / "s.db", LocalKey(b"z" * 32))
    # Rows are found by keyed hashes: another key does not even find them...
    assert other.count(NET) == 0
    other.close()


def _raw(path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute(sql, args).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def test_tampered_or_swapped_rows_are_detected(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.add_envelopes(NET, [(b"a" * 32, b"one"), (b"b" * 32, b"two")])
    s.put(NET, "x", b"value-x")
    s.put(NET, "y", b"value-y")
    s.close()
    # Swap the sealed data of two envelope rows: each is bound to its own row.
    (d1,), (d2,) = _raw(path, "SELECT data FROM envelopes ORDER BY rowid")
    _raw(path, "UPDATE envelopes SET data = ? WHERE rowid = 1", (d2,))
    _raw(path, "UPDATE envelopes SET data = ? WHERE rowid = 2", (d1,))
    # Flip a byte of a local value.
    (name, value), *_ = _raw(path, "SELECT name, value FROM local")
    flipped = bytearray(value)  # type: ignore[arg-type]
    flipped[-1] ^= 1
    _raw(path, "UPDATE local SET value = ? WHERE name = ?", (bytes(flipped), name))
    s = Store.open(path, key)
    with pytest.raises(StoreCorrupt):
        list(s.envelopes(NET))
    outcomes = {}
    for name in ("x", "y"):
        try:
            outcomes[name] = s.get(NET, name)
        except StoreCorrupt:
            outcomes[name] = None
    # Exactly the flipped row is refused; the other still reads correctly.
    assert sorted(outcomes.values(), key=repr) in ([None, b"value-y"], [None, b"value-x"])
    s.close()


def test_files_are_private(tmp_path: Path, key: LocalKey) -> None:
    s = Store.open(tmp_path / "s.db", key)
    s.add_envelopes(NET, [(b"a" * 32, b"x")])
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name
    s.close()


def test_newer_schema_is_refused(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    Store.open(path, key).close()
    _raw(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        Store.open(path, key)


def test_not_a_database_is_corrupt(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreCorrupt):
        Store.open(path, key)


def test_damaged_pages_fail_the_integrity_check(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.add_envelopes(NET, [(os.urandom(32), os.urandom(300)) for _ in range(500)])
    s.close()
    _raw(path, "PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, min(len(data), 6 * page)):  # smash index/table pages
        data[offset] = 0xFF
    path.write_bytes(bytes(data))

    def open_and_read() -> None:
        s = Store.open(path, key)
        try:
            list(s.envelopes(NET))
        finally:
            s.close()

    with pytest.raises(StoreCorrupt):
        open_and_read()


_CHILD_PRELUDE = """
import sys, os
sys.path.insert(0, {root!r})
from pathlib import Path
from crypto import LocalKey
from p2pnet.store import Store
store = Store.open(Path({path!r}), LocalKey(b"k" * 32))
"""


def _child(root: Path, path: Path, body: str) -> str:
    return _CHILD_PRELUDE.format(root=str(root), path=str(path)) + textwrap.dedent(body)


@pytest.mark.slow
def test_killed_mid_batch_leaves_previous_state(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.add_envelopes(NET, [(b"%032d" % i, b"committed %d" % i) for i in range(100)])
    s.close()
    script = _child(
        ROOT,
        path,
        """
        import time
        with store.transaction() as tx:
            # Enough rows that SQLite spills uncommitted pages to the WAL before the kill.
            for chunk in range(20):
                tx.add_envelopes(b"N" * 16,
                    [(os.urandom(32), os.urandom(2000)) for _ in range(500)])
            print("mid-batch", flush=True)
            time.sleep(60)
        """,
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"mid-batch"
            assert (tmp_path / "s.db-wal").stat().st_size > 1_000_000  # really mid-write
        finally:
            proc.kill()  # SIGKILL: no cleanup, no rollback by the child
            proc.wait(timeout=10)
    s = Store.open(path, key)  # runs the integrity check
    try:
        assert s.count(NET) == 100
        assert [e.data for e in s.envelopes(NET)][-1] == b"committed 99"
        s.add_envelopes(NET, [(b"new" * 10 + b"xx", b"after the crash")])
        assert s.count(NET) == 101
    finally:
        s.close()


@pytest.mark.slow
def test_two_processes_never_allocate_the_same_seq(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    Store.open(path, key).close()
    script = _child(
        ROOT,
        path,
        """
        seen = []
        for _ in range(150):
            with store.transaction() as tx:
                head = int(tx.get(b"N" * 16, "head") or b"0") + 1
                tx.put(b"N" * 16, "head", str(head).encode())
                seen.append(head)
        print(" ".join(map(str, seen)))
        """,
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert all(p.returncode == 0 for p in procs)
    first, second = (set(map(int, out)) for out in outputs)
    assert not first & second
    assert first | second == set(range(1, 301))
    s = Store.open(path, key)
    assert s.get(NET, "head") == b"300"
    s.close()


def test_version_1_rows_are_migrated_as_unverified(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.close()
    # Recreate a version-1 store: bare envelopes sealed without the flag byte.
    eid_idx = key.index(b"e" * 32)
    _raw(
        path,
        "INSERT INTO envelopes (eid, net, data) VALUES (?, ?, ?)",
        (eid_idx, key.index(NET), key.seal(b"\x95bare envelope", b"env" + eid_idx)),
    )
    _raw(path, "DROP INDEX envelopes_by_op")
    _raw(path, "ALTER TABLE envelopes DROP COLUMN op")
    _raw(path, "ALTER TABLE envelopes DROP COLUMN signed")
    _raw(path, "PRAGMA user_version = 1")
    s = Store.open(path, key)
    (row,) = list(s.envelopes(NET))
    assert row.data == b"\x95bare envelope"
    assert row.verified is False
    assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    s.close()


def _op(seq: int = 1, text: str = "Meet on Thursday") -> VerifiedOp:
    return sign_op(
        Identity(b"i" * 32),
        net=NET,
        seq=seq,
        lamport=seq,
        parents=[],
        time=1_700_000_000_000,
        type="comment",
        body={"target": b"t" * 32, "text": text},
    )


def test_a_verified_envelope_keeps_its_op_beside_it(store: Store) -> None:
    first, second = _op(1), _op(2, "Bring the budget")
    store.add_envelopes(NET, [(b"a" * 32, b"env-a", first), (b"b" * 32, b"env-b")])
    store.add_envelopes(NET, [(b"c" * 32, b"env-c", second)])
    rows = list(store.load(NET))
    assert [type(r) for r in rows] == [StoredOp, StoredEnvelope, StoredOp]
    assert rows[0] == StoredOp(first.lamport, first.signed, first.op_id, True, rows[0].position)
    assert rows[1].data == b"env-b"  # type: ignore[union-attr]
    assert rows[2][:4] == (2, second.signed, second.op_id, True)
    assert [r.position for r in store.load(NET, after=rows[0].position)] == [
        rows[1].position,
        rows[2].position,
    ]
    # The envelopes themselves are still there, and ops are found by id.
    assert [e.data for e in store.envelopes(NET)] == [b"env-a", b"env-b", b"env-c"]
    assert store.signed_ops(NET, [first.op_id, b"x" * 32]) == {first.op_id: first.signed}
    assert store.envelopes_of_ops(NET, [second.op_id]) == {second.op_id: b"env-c"}


def test_only_verified_envelopes_keep_an_op(store: Store) -> None:
    with pytest.raises(ValueError, match="verified"):
        store.add_envelopes(NET, [(b"a" * 32, b"env", _op())], verified=False)
    with pytest.raises(ValueError, match="32 bytes"):
        store.add_envelopes(NET, [(b"a" * 31, b"env", _op())])
    assert store.count(NET) == 0


def test_a_damaged_or_moved_op_is_a_damaged_store(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.add_envelopes(NET, [(b"a" * 32, b"env-a", _op(1)), (b"b" * 32, b"env-b", _op(2))])
    s.close()
    (first,), (second,) = _raw(path, "SELECT signed FROM envelopes ORDER BY rowid")
    flipped = bytearray(first)  # type: ignore[arg-type]
    flipped[30] ^= 1
    _raw(path, "UPDATE envelopes SET signed = ? WHERE rowid = 1", (bytes(flipped),))
    s = Store.open(path, key)
    with pytest.raises(StoreCorrupt, match="op"):
        list(s.load(NET))
    s.close()
    # An intact op moved into another row does not open there either. (One moved to
    # another network's index opens, and the node refuses it as another network's op.)
    _raw(path, "UPDATE envelopes SET signed = ? WHERE rowid = 1", (second,))
    s = Store.open(path, key)
    with pytest.raises(StoreCorrupt, match="op"):
        list(s.load(NET))
    s.close()


def test_version_3_rows_read_as_envelopes_until_their_ops_are_kept(
    tmp_path: Path, key: LocalKey
) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.add_envelopes(NET, [(b"a" * 32, b"env-a"), (b"b" * 32, b"env-b")])
    s.close()
    _raw(path, "ALTER TABLE envelopes DROP COLUMN signed")
    _raw(path, "PRAGMA user_version = 3")
    s = Store.open(path, key)
    assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = list(s.load(NET))
    assert [type(r) for r in rows] == [StoredEnvelope, StoredEnvelope]
    op = _op()
    s.keep_ops(NET, [(b"b" * 32, op)])
    rows = list(s.load(NET))
    assert [type(r) for r in rows] == [StoredEnvelope, StoredOp]
    assert rows[1][:3] == (op.lamport, op.signed, op.op_id)
    assert s.signed_ops(NET, [op.op_id]) == {op.op_id: op.signed}
    s.close()


def _seal_op_row(path: Path, key: LocalKey, eid: bytes, plain: bytes) -> None:
    _raw(
        path,
        "UPDATE envelopes SET signed = ? WHERE eid = ?",
        (
            key.seal(plain, _op_aad(key.index(eid))),
            key.index(eid),
        ),
    )


def test_schema_4_ops_are_sealed_again_with_their_id(tmp_path: Path, key: LocalKey) -> None:
    """Schema 4 kept an op as lamport (8 bytes), envelope id, signed op: the migration
    to 5 writes the op id in the envelope id's place, for every kept op (in batches),
    and leaves one in the new form already as it is."""
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    ops = [_op(seq) for seq in range(1, 6)]
    eids = [bytes([seq]) * 32 for seq in range(1, 6)]
    s.add_envelopes(NET, [(eid, b"env", op) for eid, op in zip(eids, ops, strict=True)])
    s.add_envelopes(NET, [(b"u" * 32, b"env-u")])  # no op kept: left alone
    s.close()
    for eid, op in list(zip(eids, ops, strict=True))[1:]:  # the first in the new form
        _seal_op_row(path, key, eid, op.lamport.to_bytes(8, "big") + eid + op.signed)
    _raw(path, "PRAGMA user_version = 4")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("p2pnet.store._MIGRATION_BATCH", 2)
        s = Store.open(path, key)
    assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = list(s.load(NET))
    assert [r[:4] for r in rows[:5]] == [
        (op.lamport, op.signed, op.op_id, i == 0) for i, op in enumerate(ops)
    ]  # the first stored in the new form (its body vouched for), the others migrated
    assert isinstance(rows[5], StoredEnvelope)
    assert s.signed_ops(NET, [ops[2].op_id]) == {ops[2].op_id: ops[2].signed}
    s.close()


def test_a_damaged_schema_4_op_fails_the_migration_and_changes_nothing(
    tmp_path: Path, key: LocalKey
) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    op = _op()
    s.add_envelopes(NET, [(b"a" * 32, b"env-a", op)])
    s.close()
    _seal_op_row(path, key, b"a" * 32, op.lamport.to_bytes(8, "big") + b"a" * 32 + op.signed)
    ((sealed,),) = _raw(path, "SELECT signed FROM envelopes")
    flipped = bytearray(sealed)  # type: ignore[arg-type]
    flipped[-1] ^= 1
    _raw(path, "UPDATE envelopes SET signed = ?", (bytes(flipped),))
    _raw(path, "PRAGMA user_version = 4")
    with pytest.raises(StoreCorrupt, match="op"):
        Store.open(path, key)
    assert _raw(path, "PRAGMA user_version") == [(4,)]
    assert _raw(path, "SELECT signed FROM envelopes") == [(bytes(flipped),)]


@pytest.mark.parametrize("head", [b"\x00" + bytes(39), b"\x01" + bytes(38), b""])
def test_an_op_row_of_no_known_format_is_a_damaged_store(
    tmp_path: Path, key: LocalKey, head: bytes
) -> None:
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.add_envelopes(NET, [(b"a" * 32, b"env-a", _op())])
    s.close()
    _seal_op_row(path, key, b"a" * 32, head if len(head) < 40 else head + b"\x92")
    s = Store.open(path, key)
    with pytest.raises(StoreCorrupt, match="damaged"):
        list(s.load(NET))
    s.close()


def test_a_new_store_uses_8_kib_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path, key: LocalKey
) -> None:
    Store.open(tmp_path / "new.db", key).close()
    assert _raw(tmp_path / "new.db", "PRAGMA page_size") == [(8192,)]
    old = sqlite3.connect(tmp_path / "old.db")
    old.execute("PRAGMA page_size = 4096")
    old.execute("CREATE TABLE t (x)")
    old.commit()
    old.close()
    Store.open(tmp_path / "old.db", key).close()  # migrated from an empty schema
    assert _raw(tmp_path / "old.db", "PRAGMA page_size") == [(4096,)]


def test_a_store_overwritten_while_open_is_a_damaged_store(tmp_path: Path, key: LocalKey) -> None:
    """As after a panic wipe under an open node: a write is a clear StoreCorrupt, not
    sqlite3's own error."""
    path = tmp_path / "s.db"
    s = Store.open(path, key)
    s.put(NET, "k", b"v")
    for file in tmp_path.iterdir():
        file.write_bytes(bytes(file.stat().st_size))
    with pytest.raises(StoreError):
        s.put(NET, "k", b"w")
    s.close()


def test_a_kept_op_is_vouched_for_only_when_its_body_passes_the_current_rules(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _op(1)
    bad = sign_op(  # signed, but a body the rules refuse (a field no comment has)
        Identity(b"i" * 32),
        net=NET,
        seq=2,
        lamport=2,
        parents=[],
        time=1_700_000_000_000,
        type="comment",
        body={"target": b"t" * 32, "text": "x", "colour": "red"},
    )
    store.add_envelopes(NET, [(b"a" * 32, b"env-a", good), (b"b" * 32, b"env-b", bad)])
    assert [r.body_checked for r in store.load(NET)] == [True, False]  # type: ignore[union-attr]
    # Under other body rules (BODY_RULES bumped, or a newer p2pnet's), a vouch is not
    # trusted, and the row still loads.
    monkeypatch.setattr("p2pnet.store._OP_BODY_CHECKED", 3)
    assert [r.body_checked for r in store.load(NET)] == [False, False]  # type: ignore[union-attr]
    monkeypatch.setattr("p2pnet.store._OP_BODY_CHECKED", 1)
    assert [r.body_checked for r in store.load(NET)] == [False, True]  # type: ignore[union-attr]


def test_keeping_ops_joins_a_running_transaction_and_rolls_back_with_it(store: Store) -> None:
    """A write that finds its network unloaded fills in old rows' ops inside its own
    transaction: they land, or fail, with that write."""
    store.add_envelopes(NET, [(b"a" * 32, b"env-a"), (b"b" * 32, b"env-b")])
    op = _op()

    def failing_write() -> None:
        with store.transaction() as tx:
            store.keep_ops(NET, [(b"b" * 32, op)])
            tx.put(NET, "k", b"v")
            raise RuntimeError("the write fails")

    with pytest.raises(RuntimeError):
        failing_write()
    assert [type(r) for r in store.load(NET)] == [StoredEnvelope, StoredEnvelope]
    with store.transaction() as tx:
        store.keep_ops(NET, [(b"b" * 32, op)])
        tx.put(NET, "k", b"v")
    assert [type(r) for r in store.load(NET)] == [StoredEnvelope, StoredOp]
