"""A sync session remembers a bounded number of the envelopes it brought (it lives as
long as its connection; a catch-up brings every envelope of a network)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from crypto import hash256
from p2pnet.net import session
from protocol.envelope import Envelope
from protocol.reconcile import ChainIndex
from protocol.syncpeer import ReceiveReport


class _Inner:
    """Holdings that accept everything (what the node's would do is not the point)."""

    def chain_index(self) -> ChainIndex:
        raise NotImplementedError

    def envelope_of(self, op_id: bytes) -> bytes:
        raise KeyError(op_id)

    def order_key(self, op_id: bytes) -> tuple[int, bytes]:
        raise KeyError(op_id)

    def unattributed(self) -> Mapping[bytes, bytes]:
        return {}

    def receive(self, envelopes: Sequence[bytes | Envelope]) -> ReceiveReport:
        return ReceiveReport(len(envelopes), 0, 0, 0)


def test_only_the_last_envelopes_brought_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "REMEMBERED", 100)
    recording = session._Recording(_Inner())
    envelopes = [b"envelope %d" % i for i in range(1000)]
    for start in range(0, 1000, 64):
        recording.receive(envelopes[start : start + 64])
        recording.receive(envelopes[start : start + 8])  # the same again: remembered once
    assert len(recording.received) == 100
    assert recording.received == {hash256(e) for e in envelopes[-100:]}
    assert recording.new == 1000 + 8 * 16
