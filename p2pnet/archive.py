"""The store as a network's archive: what the in-memory holdings do not keep.

A node keeps only the DAG and the folded state of a network in memory; envelopes (for
sync and bundles) and ops (for a fold that must start again, and for reading texts) are
read back from the store, sealed under the profile key like every row. See
docs/decisions.md, "Memory: the store is the archive".
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Collection, Mapping

from crypto import CryptoError, EpochKey
from p2pnet.errors import StoreCorrupt, StoreError
from p2pnet.store import Store, StoredOp, Transaction
from protocol import ProtocolError, RemoteProtocolError, parse_envelope
from protocol.envelope import GroupEnvelope, decrypt_group
from protocol.signed import VerifiedOp, reload_verified_op

__all__ = ["StoreArchive"]


class StoreArchive:
    """A :class:`protocol.holdings.Archive` over one network's rows of a :class:`Store`.

    ``epochs`` is the node's live mapping of the network's keys (it grows as keys arrive).
    """

    def __init__(
        self, store: Store, network_id: bytes, route_tag: bytes, epochs: Mapping[bytes, EpochKey]
    ) -> None:
        self._store = store
        self._network_id = network_id
        self._route_tag = route_tag
        self._epochs = epochs

    def envelope_of_op(self, op_id: bytes) -> bytes:
        """The envelope of an op, found by its recorded op id; for a row stored before the
        store kept ops (and not filled in since), by reading every row.

        Raises:
            KeyError: no stored envelope carries the op.
            StoreCorrupt: a row does not decrypt.
        """
        data = self._store.envelope_of_op(self._network_id, op_id)
        if data is not None:
            return data
        digest = hashlib.blake2b
        for row in self._store.envelopes(self._network_id):
            signed = self._signed_in(row.data)
            if signed is not None and digest(signed, digest_size=32).digest() == op_id:
                self._record(row.data, signed, op_id)
                return row.data
        raise KeyError(op_id)

    def _record(self, envelope: bytes, signed: bytes, op_id: bytes) -> None:
        """Keep the op found by reading every row beside its envelope, so the next
        request finds it by id (the node asks only for ops it holds: verified, and
        these are the same bytes). Best effort: a busy store leaves it for later."""
        try:
            op = reload_verified_op(signed, op_id=op_id)
        except RemoteProtocolError:
            return
        kept = [(hashlib.blake2b(envelope, digest_size=32).digest(), op)]
        store = self._store
        if store.in_transaction:
            Transaction(store).keep_ops(self._network_id, kept)
        else:
            with contextlib.suppress(StoreError):
                store.keep_ops(self._network_id, kept)

    def _signed_in(self, envelope: bytes) -> bytes | None:
        """The signed op a stored envelope carries (None: unattributed, or junk)."""
        try:
            parsed = parse_envelope(envelope)
            if not isinstance(parsed, GroupEnvelope):
                return None
            return decrypt_group(parsed, epochs=self._epochs, route_tag=self._route_tag)
        except (CryptoError, ProtocolError):
            return None

    def ops(self, op_ids: Collection[bytes]) -> dict[bytes, VerifiedOp]:
        """Read every row once and reload the wanted ops (a full pass: only a fold that
        starts again, or an old store without op ids, asks for many).

        Raises:
            StoreCorrupt: a wanted op is not in the store (the memory and the store
                disagree), or a row does not decrypt.
        """
        wanted = set(op_ids)
        found: dict[bytes, VerifiedOp] = {}
        if not wanted:
            return found
        digest = hashlib.blake2b
        for row in self._store.load(self._network_id):
            signed = row.signed if isinstance(row, StoredOp) else self._signed_in(row.data)
            if signed is None:
                continue  # unattributed or junk: never part of the fold
            op_id = digest(signed, digest_size=32).digest()
            if op_id in wanted and op_id not in found:
                # The DAG indexed this op in this process (verified then); the row is the
                # same bytes (the op id is their hash), authenticated by the profile key.
                try:
                    found[op_id] = reload_verified_op(signed, op_id=op_id)
                except RemoteProtocolError:
                    raise StoreCorrupt("a stored op is damaged") from None
                if len(found) == len(wanted):
                    break
        if len(found) < len(wanted):
            raise StoreCorrupt("ops this node folded are missing from its store")
        return found
