"""The store as a network's archive: what the in-memory holdings do not keep.

A node keeps only the DAG and the folded state of a network in memory; envelopes (for
sync and bundles) and ops (for a fold that must start again, and for reading texts) are
read back from the store, sealed under the profile key like every row. See
docs/decisions.md, "Memory: the store is the archive".
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping

from crypto import CryptoError, EpochKey
from p2pnet.errors import StoreCorrupt, StoreError
from p2pnet.store import Store, StoredOp
from protocol import ProtocolError, RemoteProtocolError, parse_envelope
from protocol.envelope import GroupEnvelope, decrypt_group
from protocol.signed import VerifiedOp, op_id_of, reload_verified_op

__all__ = ["StoreArchive", "open_group_op"]


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
        for row in self._store.envelopes(self._network_id):
            opened = open_group_op(row.data, self._epochs, self._route_tag)
            if opened is not None and op_id_of(opened[1]) == op_id:
                self._record(opened[0], opened[1], op_id)
                return row.data
        raise KeyError(op_id)

    def _record(self, envelope_id: bytes, signed: bytes, op_id: bytes) -> None:
        """Keep the op found by reading every row beside its envelope, so the next
        request finds it by id (the node asks only for ops it holds: verified, and
        these are the same bytes). Best effort: a busy store leaves it for later."""
        try:
            op = reload_verified_op(signed, op_id=op_id)
        except RemoteProtocolError:
            return
        with contextlib.suppress(StoreError):
            self._store.keep_ops(self._network_id, [(envelope_id, op)])

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
        for row in self._store.load(self._network_id):
            if isinstance(row, StoredOp):
                signed, op_id = row.signed, row.op_id
            else:
                opened = open_group_op(row.data, self._epochs, self._route_tag)
                if opened is None:
                    continue  # unattributed or junk: never part of the fold
                signed = opened[1]
                op_id = op_id_of(signed)
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


def open_group_op(
    envelope: bytes, epochs: Mapping[bytes, EpochKey], route_tag: bytes
) -> tuple[bytes, bytes] | None:
    """(envelope id, signed op) of a stored group envelope, or None: not a group
    envelope, no key for its epoch, or damaged (then checked as if received)."""
    try:
        parsed = parse_envelope(envelope)
        if not isinstance(parsed, GroupEnvelope):
            return None
        return parsed.envelope_id, decrypt_group(parsed, epochs=epochs, route_tag=route_tag)
    except (CryptoError, ProtocolError):
        return None
