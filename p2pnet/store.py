"""The local store: one SQLite database per profile.

Theory of operation
-------------------
Two tables hold everything, and neither holds plaintext of the shared state, of names or
of addresses:

- ``envelopes``: every envelope this profile holds, as received, wrapped once more under
  the profile key (``LocalKey``). Wrapping means a seized database cannot be matched
  byte-for-byte against recorded network traffic (route tags, envelope ids); the inner
  bytes are still exactly those received, so hashes and signatures stay over the exact
  bytes. Rows are looked up by keyed hashes (``LocalKey.index``) of the network id and the
  envelope id. ``rowid`` is the local arrival order. Beside a verified envelope, the
  ``signed`` column keeps the op it carries (its lamport, its op id and the signed op),
  also sealed under the profile key: a start-up reads that with one decryption
  instead of opening the envelope under its epoch key (docs/decisions.md, "The node").
- ``local``: a small key/value space per network for local data (epoch keys, peer keys,
  the state cache, the author's chain head), each value sealed with its row's name as
  associated data so values cannot be swapped between rows.

Concurrency and crash safety: WAL mode; every write is one transaction; a transaction
that allocates the author's next ``seq`` is ``BEGIN IMMEDIATE`` so two processes writing
to one profile serialise instead of forking the author's chain. ``synchronous=NORMAL``
in WAL mode survives a killed process (what we test) and keeps the database consistent
after power loss, where the last commits may be lost.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from crypto import DecryptionFailed, LocalKey
from p2pnet.errors import StoreCorrupt, StoreError
from protocol.ops import BODY_RULES, body_error
from protocol.signed import VerifiedOp, op_id_of

__all__ = ["SCHEMA_VERSION", "Store", "StoredEnvelope", "StoredOp", "Transaction"]

# Each entry migrates from version i to i + 1. Never edit a released entry.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE envelopes (
        rowid INTEGER PRIMARY KEY,
        eid   BLOB NOT NULL UNIQUE,
        net   BLOB NOT NULL,
        data  BLOB NOT NULL
    );
    CREATE INDEX envelopes_by_net ON envelopes (net, rowid);
    CREATE TABLE local (
        net   BLOB NOT NULL,
        name  BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (net, name)
    ) WITHOUT ROWID;
    """,
    # 1 -> 2: every envelope row's sealed payload starts with a "verified" flag byte;
    # the rows are re-sealed in Python (_flag_rows) since SQL cannot open them.
    "",
    # 2 -> 3: the keyed hash of the op an envelope carries (when known), so an op's text
    # is found without rebuilding the DAG. Older rows stay NULL (the node then folds).
    """
    ALTER TABLE envelopes ADD COLUMN op BLOB;
    CREATE INDEX envelopes_by_op ON envelopes (net, op);
    """,
    # 3 -> 4: the op a verified envelope carries, sealed beside it (see StoredOp). Older
    # rows stay NULL: they are read through their envelope, and the node fills them in.
    "ALTER TABLE envelopes ADD COLUMN signed BLOB;",
    # 4 -> 5: the kept op's head carries its op id instead of the envelope id (_OP_HEAD);
    # the rows are sealed again in Python (_id_kept_ops).
    "",
)
SCHEMA_VERSION = len(_MIGRATIONS)
_PROFILE_NET = b"\x00" * 16  # the `net` of profile-wide local rows
_BUSY_TIMEOUT_S = 10.0
_PAGE_BYTES = 8192
# A stored op: a format byte and the lamport (7 bytes, big-endian), the op id, the signed
# op. The format byte is 1, or 1 + BODY_RULES when the op's body passed the body rules of
# that version as the op was stored (a start-up does not check it again). Any other byte
# from 1 up is a body not vouched for, or vouched for under other rules (an older or newer
# p2pnet): checked again, so builds with other rules read each other's stores. Schema 4
# had the lamport in 8 bytes (so a first byte 0) and the envelope id in the op id's
# place; the migration to 5 rewrites those rows (as format 1).
_OP_HEAD = 8 + 32
_OP_WITH_ID = 1
_OP_BODY_CHECKED = 1 + BODY_RULES
_MIGRATION_BATCH = 2000


@dataclass(frozen=True, slots=True)
class StoredEnvelope:
    """An envelope read back from the store, with its local arrival position."""

    position: int
    data: bytes
    verified: bool = True  # False: kept without a signature check (no key for it yet)


class StoredOp(NamedTuple):
    """A verified op as the store keeps it beside its envelope: what a start-up reloads
    (with one decryption under the profile key, and no epoch key). The lamport, the
    signed op, its id and whether the store vouches for its body first: what
    :meth:`protocol.holdings.MemoryHoldings.reload` reads."""

    lamport: int
    signed: bytes
    op_id: bytes
    body_checked: bool
    position: int


class Transaction:
    """Reads and writes inside one SQLite transaction; see :meth:`Store.transaction`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store._db

    def add_envelopes(
        self,
        network_id: bytes,
        envelopes: Iterable[tuple[bytes, bytes] | tuple[bytes, bytes, VerifiedOp | None]],
        *,
        verified: bool = True,
    ) -> int:
        """Insert ``(envelope_id, envelope_bytes[, op])`` rows; duplicates are ignored.
        ``verified`` records whether their signatures were checked (sealed with the row,
        so a later reader knows which rows it may trust without checking again). The op
        an envelope carries, when given, is kept beside it (sealed, with a keyed hash of
        its id to find it later); only verified rows may have one.

        Returns how many were new.

        Raises:
            ValueError: an op given for rows that are not verified.
        """
        key = self._store._key
        net = key.index(network_id)
        flag = b"\x01" if verified else b"\x00"
        rows = []
        for item in envelopes:
            eid, data = item[0], item[1]
            op = item[2] if len(item) > 2 else None
            eid_idx = key.index(eid)
            op_idx = signed = None
            if op is not None:
                if not verified:
                    raise ValueError("only verified envelopes keep their op")
                _check_envelope_id(eid)
                op_idx = key.index(op.op_id)
                signed = key.seal(_pack_op(op), _op_aad(eid_idx))
            rows.append((eid_idx, net, key.seal(flag + data, b"env" + eid_idx), op_idx, signed))
        before = self._db.total_changes
        self._db.executemany(
            "INSERT OR IGNORE INTO envelopes (eid, net, data, op, signed) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return self._db.total_changes - before

    def last_position(self, network_id: bytes) -> int:
        """:meth:`Store.last_position` inside this transaction."""
        return self._store.last_position(network_id)

    def keep_ops(self, network_id: bytes, ops: Iterable[tuple[bytes, VerifiedOp]]) -> None:
        """Keep, beside stored envelopes (``(envelope_id, op)``), the op each carries: fills
        in rows stored before the store kept ops (schema 3 and older), and rows stored
        unchecked whose op has been verified since. Only with the op read from that very
        envelope and verified (then or now): a start-up trusts it."""
        key = self._store._key
        net = key.index(network_id)
        rows = []
        for eid, op in ops:
            _check_envelope_id(eid)
            eid_idx = key.index(eid)
            signed = key.seal(_pack_op(op), _op_aad(eid_idx))
            rows.append((key.index(op.op_id), signed, eid_idx, net))
        self._db.executemany(
            "UPDATE envelopes SET op = ?, signed = ? WHERE eid = ? AND net = ?", rows
        )

    def has_envelope(self, envelope_id: bytes) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM envelopes WHERE eid = ?", (self._store._key.index(envelope_id),)
        ).fetchone()
        return row is not None

    def get(self, network_id: bytes | None, name: str) -> bytes | None:
        """A local value, decrypted; None if absent.

        Raises:
            StoreCorrupt: the row does not decrypt (altered, or from another profile).
        """
        net, name_idx, aad = self._store._local_key(network_id, name)
        row = self._db.execute(
            "SELECT value FROM local WHERE net = ? AND name = ?", (net, name_idx)
        ).fetchone()
        if row is None:
            return None
        try:
            return self._store._key.open(row[0], aad)
        except DecryptionFailed:
            raise StoreCorrupt(f"local value {name!r} does not decrypt") from None

    def put(self, network_id: bytes | None, name: str, value: bytes) -> None:
        net, name_idx, aad = self._store._local_key(network_id, name)
        self._db.execute(
            "INSERT OR REPLACE INTO local (net, name, value) VALUES (?, ?, ?)",
            (net, name_idx, self._store._key.seal(value, aad)),
        )

    def delete(self, network_id: bytes | None, name: str) -> None:
        net, name_idx, _ = self._store._local_key(network_id, name)
        self._db.execute("DELETE FROM local WHERE net = ? AND name = ?", (net, name_idx))


class Store:
    """The profile's database. Open with :meth:`open`; close with :meth:`close`.

    Raises (from every method): :class:`StoreError` when SQLite cannot do the work
    (locked for too long, disk full), :class:`StoreCorrupt` when data fails to decrypt
    or the integrity check fails.
    """

    def __init__(self, db: sqlite3.Connection, key: LocalKey, path: Path) -> None:
        self._db = db
        self._key = key
        self.path = path

    @classmethod
    def open(cls, path: Path, key: LocalKey, *, check_integrity: bool = True) -> Store:
        """Open (creating with mode 0600 if needed) and migrate the database at ``path``.

        Raises:
            StoreCorrupt: the file is not a database or fails ``PRAGMA quick_check``.
            StoreError: the schema is newer than this program understands.
        """
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        try:
            db = sqlite3.connect(
                path, isolation_level=None, timeout=_BUSY_TIMEOUT_S, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store: {exc}") from None
        store = cls(db, key, path)
        try:
            # Rows of about 1.4 KB (an envelope and its op) left a third of 4 KiB pages
            # empty (docs/decisions.md). Takes effect only in a new database, set before
            # WAL mode and the first table; an existing one keeps its page size.
            db.execute(f"PRAGMA page_size={_PAGE_BYTES}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA secure_delete=ON")
            db.execute("PRAGMA temp_store=MEMORY")
            db.execute("PRAGMA foreign_keys=ON")
            if check_integrity:
                result = db.execute("PRAGMA quick_check").fetchone()
                if result is None or result[0] != "ok":
                    raise StoreCorrupt("the store failed its integrity check")
            store._migrate()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreCorrupt(f"the store is damaged: {exc}") from None
        except BaseException:
            db.close()
            raise
        return store

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store was written by a newer p2pnet (schema {version}); upgrade p2pnet"
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            for step, script in enumerate(_MIGRATIONS[version:], start=version):
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                if step == 1:
                    self._flag_rows()
                if step == 4:
                    self._id_kept_ops()
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _flag_rows(self) -> None:
        # Version 1 rows hold the bare envelope. Mark them unverified: start-ups check
        # their signatures (every time: flags are not rewritten once checked).
        key = self._key
        rows = self._db.execute("SELECT rowid, eid, data FROM envelopes").fetchall()
        for rowid, eid_idx, sealed in rows:
            try:
                data = key.open(sealed, b"env" + eid_idx)
            except DecryptionFailed:
                raise StoreCorrupt("a stored envelope does not decrypt") from None
            self._db.execute(
                "UPDATE envelopes SET data = ? WHERE rowid = ?",
                (key.seal(b"\x00" + data, b"env" + eid_idx), rowid),
            )

    def _id_kept_ops(self) -> None:
        # Schema 4 kept ops as lamport (8 bytes) | envelope id | signed op: seal each again
        # as format 1 | lamport (7 bytes) | op id | signed op, in batches by rowid (the
        # ops of a large network would take some 60 MB at once).
        key, db = self._key, self._db
        last = 0
        while True:
            rows = db.execute(
                "SELECT rowid, eid, signed FROM envelopes WHERE rowid > ? AND signed NOT NULL"
                " ORDER BY rowid LIMIT ?",
                (last, _MIGRATION_BATCH),
            ).fetchall()
            if not rows:
                return
            updates = []
            for rowid, eid_idx, sealed in rows:
                plain = self._open_op(sealed, eid_idx)
                if plain[0] != 0:
                    continue  # in the new form already (written by a development build)
                signed = plain[_OP_HEAD:]
                head = bytes((_OP_WITH_ID,)) + plain[1:8] + op_id_of(signed)
                updates.append((key.seal(head + signed, _op_aad(eid_idx)), rowid))
            db.executemany("UPDATE envelopes SET signed = ? WHERE rowid = ?", updates)
            last = rows[-1][0]

    def _local_key(self, network_id: bytes | None, name: str) -> tuple[bytes, bytes, bytes]:
        net = self._key.index(network_id) if network_id is not None else _PROFILE_NET
        encoded = name.encode("utf-8")
        return net, self._key.index(b"name" + encoded), b"local" + net + encoded

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One IMMEDIATE transaction: commits on success, rolls back on any exception.

        IMMEDIATE takes the write lock at the start, so a read-modify-write inside it
        (allocating the next ``seq``) cannot interleave with another process's.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"the store is busy or read-only: {exc}") from None
        except sqlite3.DatabaseError as exc:  # the file is no database (any more)
            raise StoreCorrupt(f"the store is damaged: {exc}") from None
        try:
            yield Transaction(self)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise StoreError(f"could not commit: {exc}") from None

    def add_envelopes(
        self,
        network_id: bytes,
        envelopes: Iterable[tuple[bytes, bytes] | tuple[bytes, bytes, VerifiedOp | None]],
        *,
        verified: bool = True,
    ) -> int:
        """Insert a batch in one transaction; returns how many were new."""
        with self.transaction() as tx:
            return tx.add_envelopes(network_id, envelopes, verified=verified)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection."""
        return self._db.in_transaction

    def keep_ops(self, network_id: bytes, ops: Iterable[tuple[bytes, VerifiedOp]]) -> None:
        """:meth:`Transaction.keep_ops`, inside the transaction this connection is running
        (a caller's write that loaded the network), else in one of its own."""
        if self.in_transaction:
            Transaction(self).keep_ops(network_id, ops)
            return
        with self.transaction() as tx:
            tx.keep_ops(network_id, ops)

    def get(self, network_id: bytes | None, name: str) -> bytes | None:
        with self.transaction() as tx:
            return tx.get(network_id, name)

    def put(self, network_id: bytes | None, name: str, value: bytes) -> None:
        with self.transaction() as tx:
            tx.put(network_id, name, value)

    def signed_ops(self, network_id: bytes, op_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The signed bytes of these ops, for those the store keeps beside their envelope.

        Raises:
            StoreCorrupt: a row does not decrypt.
        """
        key = self._key
        net = key.index(network_id)
        found: dict[bytes, bytes] = {}
        for op_id in op_ids:
            row = self._db.execute(
                "SELECT eid, signed FROM envelopes WHERE net = ? AND op = ? AND signed NOT NULL",
                (net, key.index(op_id)),
            ).fetchone()
            if row is not None:
                found[op_id] = self._open_op(row[1], row[0])[_OP_HEAD:]
        return found

    def envelopes_of_ops(self, network_id: bytes, op_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The verified envelopes that carry these ops (those whose op is recorded).

        Raises:
            StoreCorrupt: a row does not decrypt.
        """
        found: dict[bytes, bytes] = {}
        for op_id in op_ids:
            data = self._flagged_envelope_of_op(network_id, op_id)
            if data is not None and data[0] == 1:
                found[op_id] = data[1:]
        return found

    def envelope_of_op(self, network_id: bytes, op_id: bytes) -> bytes | None:
        """The stored envelope whose op is recorded as ``op_id`` (verified or not), or None.

        Raises:
            StoreCorrupt: the row does not decrypt.
        """
        data = self._flagged_envelope_of_op(network_id, op_id)
        return None if data is None else data[1:]

    def _flagged_envelope_of_op(self, network_id: bytes, op_id: bytes) -> bytes | None:
        # The row's envelope with its leading "verified" flag byte (_open_envelope).
        key = self._key
        row = self._db.execute(
            "SELECT eid, data FROM envelopes WHERE net = ? AND op = ?",
            (key.index(network_id), key.index(op_id)),
        ).fetchone()
        return None if row is None else self._open_envelope(row[1], row[0])

    def _open_envelope(self, sealed: bytes, eid_idx: bytes) -> bytes:
        """A row's envelope with its leading "verified" flag byte (0 or 1).

        Raises:
            StoreCorrupt: the row does not decrypt, or its flag is not 0 or 1.
        """
        try:
            data = self._key.open(sealed, b"env" + eid_idx)
        except DecryptionFailed:
            raise StoreCorrupt("a stored envelope does not decrypt") from None
        if not data or data[0] not in (0, 1):
            raise StoreCorrupt("a stored envelope is damaged")
        return data

    def last_position(self, network_id: bytes) -> int:
        """The newest arrival position of the network's envelopes (0: none)."""
        row = self._db.execute(
            "SELECT max(rowid) FROM envelopes WHERE net = ?", (self._key.index(network_id),)
        ).fetchone()
        return int(row[0] or 0)

    def count(self, network_id: bytes) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM envelopes WHERE net = ?", (self._key.index(network_id),)
        ).fetchone()
        return int(row[0])

    def envelopes(self, network_id: bytes, *, after: int = 0) -> Iterator[StoredEnvelope]:
        """The network's envelopes in arrival order, after local position ``after``.

        Raises:
            StoreCorrupt: a row does not decrypt.
        """
        cursor = self._db.execute(
            "SELECT rowid, eid, data FROM envelopes WHERE net = ? AND rowid > ? ORDER BY rowid",
            (self._key.index(network_id), after),
        )
        for position, eid_idx, sealed in cursor:
            data = self._open_envelope(sealed, eid_idx)
            yield StoredEnvelope(position, data[1:], data[0] == 1)

    def load(self, network_id: bytes, *, after: int = 0) -> Iterator[StoredOp | StoredEnvelope]:
        """The network's rows in arrival order, after local position ``after``: for a row
        that keeps its op, the :class:`StoredOp` (its envelope is neither read nor
        decrypted); for any other, the :class:`StoredEnvelope`.

        Raises:
            StoreCorrupt: a row does not decrypt.
        """
        net = self._key.index(network_id)
        cursor = self._db.execute(
            "SELECT rowid, eid, signed, CASE WHEN signed IS NULL THEN data END FROM envelopes"
            " WHERE net = ? AND rowid > ? ORDER BY rowid",
            (net, after),
        )
        key = self._key
        open_ = key.opener()
        # (100k rows at a start-up: the tuples are made directly, the lamport read from
        # the head without a copy.)
        make, from_bytes, stored_op = tuple.__new__, int.from_bytes, StoredOp
        for position, eid_idx, signed, sealed in cursor:
            if signed is not None:
                try:
                    plain = open_(signed, b"op" + eid_idx)  # _op_aad, inlined
                except DecryptionFailed:
                    raise StoreCorrupt("a stored op does not decrypt") from None
                if len(plain) <= _OP_HEAD or plain[0] == 0:
                    raise StoreCorrupt("a stored op is damaged")
                with memoryview(plain) as head:
                    lamport = from_bytes(head[1:8], "big")
                yield make(
                    stored_op,
                    (
                        lamport,
                        plain[_OP_HEAD:],
                        plain[8:_OP_HEAD],
                        plain[0] == _OP_BODY_CHECKED,
                        position,
                    ),
                )
                continue
            data = self._open_envelope(sealed, eid_idx)
            yield StoredEnvelope(position, data[1:], data[0] == 1)

    def _open_op(self, sealed: bytes, eid_idx: bytes) -> bytes:
        try:
            plain = self._key.open(sealed, _op_aad(eid_idx))
        except DecryptionFailed:
            raise StoreCorrupt("a stored op does not decrypt") from None
        if len(plain) <= _OP_HEAD:
            raise StoreCorrupt("a stored op is damaged")
        return plain

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()


def _check_envelope_id(envelope_id: bytes) -> None:
    if len(envelope_id) != 32:
        raise ValueError("an envelope id is 32 bytes")


def _pack_op(op: VerifiedOp) -> bytes:
    # The op id is kept so that a start-up need not hash every op again, and whether its
    # body passes the body rules so that it need not check that again: both sealed with
    # the op under the profile key, as trustworthy as the signed bytes beside them.
    form = _OP_BODY_CHECKED if body_error(op.type, op.body) is None else _OP_WITH_ID
    return bytes((form,)) + op.lamport.to_bytes(7, "big") + op.op_id + op.signed


def _op_aad(eid_idx: bytes) -> bytes:
    # The row's envelope: a sealed op cannot be moved to another row. (Not its network,
    # like the envelope's own seal: a row moved to another network's index decrypts, and
    # the node refuses it there as an op of another network, so only that network fails
    # to load.)
    return b"op" + eid_idx
