"""Reconciliation: summaries of what a node holds, and what a peer lacks given theirs.

Theory of operation
-------------------
Every author's valid ops form a chain ``1..n`` (the DAG indexes an op only after the
author's previous one), so "everything by author ``a``" is summarised by ``n`` and the id
of the op at ``n``. A summary is one such entry per author plus a digest of the envelopes
the node holds but cannot attribute to an author (sealed kind-2 envelopes, envelopes of
epochs it has no key for). From the peer's summary a node computes, with no further
round trip, every op the peer lacks: for each author, the ops above the peer's ``n``.

To keep summaries small (a network of 50 members summarises in about 1.4 KB), authors
are named by the first 8 bytes of their key and op ids by their first 12; a collision
between members' 8-byte prefixes (about 2^64 work to craft) only makes a node send more.

Forks. Each entry also counts the ops held beyond one per sequence number; a side that
holds more branches sends everything from the author's first fork. If the op at the
peer's ``n`` is not ours at ``n``, the author has equivocated.
We send all our ops above the peer's ``n`` anyway and add a *probe*: our op ids at
``n, n-1, n-2, n-4, …``; the peer answers with the highest sequence number where it holds
the same op, and both sides send the ops above it. One extra round trip, only for forked
authors, with O(log n) bytes.

Unattributed envelopes. If the digests differ, both sides list their unattributed ids
(12-byte prefixes) and send what the other's list lacks: one extra round trip, only when
there is something to exchange.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from protocol._errors import RemoteProtocolError

__all__ = [
    "AUTHOR_PREFIX",
    "ID_PREFIX",
    "ChainIndex",
    "ChainSummary",
    "Summary",
    "build_summary",
    "common_seq",
    "probe_samples",
    "to_send",
    "unclaimed_gaps",
]

AUTHOR_PREFIX = 8
ID_PREFIX = 12
MAX_AUTHORS = 10_000
MAX_PROBE = 64


class ChainIndex(Protocol):
    """What reconciliation needs to know about the ops a node holds (the DAG has it)."""

    def chains(self) -> Iterable[tuple[bytes, int, bytes]]:
        """(author, highest contiguous seq, id of the op at that seq) per author."""
        ...

    def ops_of(self, author: bytes, seq: int) -> list[bytes]:
        """Ids of the author's ops at ``seq`` (more than one after equivocation)."""
        ...

    def ops_above(self, author: bytes, seq: int) -> list[bytes]:
        """Ids of all the author's indexed ops with a higher ``seq``, forks included."""
        ...

    def forks(self, author: bytes) -> tuple[int, int]:
        """(ops held beyond one per seq, the lowest seq where the author forked; 0, 0
        when it never did)."""
        ...


@dataclass(frozen=True, slots=True)
class ChainSummary:
    author_prefix: bytes
    seq: int
    op_prefix: bytes
    extra: int = 0  # ops held beyond one per seq (the branches of forks)


@dataclass(frozen=True, slots=True)
class Summary:
    """What one node holds of one network."""

    chains: tuple[ChainSummary, ...]
    unattributed_digest: bytes
    unattributed_count: int

    def to_wire(self) -> list[Any]:
        return [
            [[c.author_prefix, c.seq, c.op_prefix, c.extra] for c in self.chains],
            self.unattributed_digest,
            self.unattributed_count,
        ]

    @classmethod
    def from_wire(cls, obj: Any) -> Summary:
        """Parse strictly.

        Raises:
            RemoteProtocolError: malformed, unsorted, or over :data:`MAX_AUTHORS`.
        """
        if type(obj) is not list or len(obj) != 3:
            raise RemoteProtocolError("a summary is [chains, digest, count]")
        chains, digest, count = obj
        if type(chains) is not list or len(chains) > MAX_AUTHORS:
            raise RemoteProtocolError(f"a summary lists at most {MAX_AUTHORS} authors")
        if type(digest) is not bytes or len(digest) != 32:
            raise RemoteProtocolError("bad unattributed digest")
        if type(count) is not int or count < 0:
            raise RemoteProtocolError("bad unattributed count")
        parsed = []
        previous = b""
        for entry in chains:
            if (
                type(entry) is not list
                or len(entry) != 4
                or type(entry[3]) is not int
                or not 0 <= entry[3] < 1 << 53
                or type(entry[0]) is not bytes
                or len(entry[0]) != AUTHOR_PREFIX
                or type(entry[1]) is not int
                or not 1 <= entry[1] < 1 << 53
                or type(entry[2]) is not bytes
                or len(entry[2]) != ID_PREFIX
            ):
                raise RemoteProtocolError("bad summary entry")
            if entry[0] <= previous:
                raise RemoteProtocolError("summary authors must be sorted and unique")
            previous = entry[0]
            parsed.append(ChainSummary(entry[0], entry[1], entry[2], entry[3]))
        return cls(tuple(parsed), digest, count)


def unattributed_digest(ids: Collection[bytes]) -> bytes:
    """An order-independent digest of a set of envelope ids."""
    return hashlib.blake2b(b"".join(sorted(ids)), digest_size=32, person=b"p2pnet-unattr").digest()


def build_summary(index: ChainIndex, unattributed: Collection[bytes]) -> Summary:
    """Summarise what we hold. Authors whose prefixes collide are all left out, so the
    peer sends us everything by them (safe, only costlier)."""
    by_prefix: dict[bytes, ChainSummary | None] = {}
    for author, seq, op_id in index.chains():
        prefix = author[:AUTHOR_PREFIX]
        extra = index.forks(author)[0]
        by_prefix[prefix] = (
            None if prefix in by_prefix else ChainSummary(prefix, seq, op_id[:ID_PREFIX], extra)
        )
    chains = tuple(c for _, c in sorted(by_prefix.items()) if c is not None)
    return Summary(chains, unattributed_digest(unattributed), len(unattributed))


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send a peer after reading its summary."""

    op_ids: tuple[bytes, ...]  # not yet in fold order: the caller sorts by (lamport, id)
    probes: tuple[bytes, ...]  # authors whose chains forked from the peer's
    exchange_unattributed: bool


def to_send(index: ChainIndex, peer: Summary, local_unattributed_digest: bytes) -> Plan:
    """Every op we hold that the peer's summary shows it lacks, and the forks to probe."""
    theirs = {c.author_prefix: c for c in peer.chains}
    mine: dict[bytes, list[tuple[bytes, int]]] = {}
    for author, seq, _ in index.chains():
        mine.setdefault(author[:AUTHOR_PREFIX], []).append((author, seq))
    send: list[bytes] = []
    probes: list[bytes] = []
    for prefix, authors in mine.items():
        entry = theirs.get(prefix)
        for author, seq in authors:
            if entry is None or len(authors) > 1:
                send.extend(index.ops_above(author, 0))
                continue
            extra, first_fork = index.forks(author)
            if extra > entry.extra:
                # We hold branches the peer may lack: send everything from the first fork.
                send.extend(index.ops_above(author, first_fork - 1))
            if entry.seq > seq:
                continue  # the peer holds more; it will send (and probe if we forked)
            if not any(o[:ID_PREFIX] == entry.op_prefix for o in index.ops_of(author, entry.seq)):
                probes.append(author)
            send.extend(index.ops_above(author, entry.seq))
    return Plan(tuple(send), tuple(probes), peer.unattributed_digest != local_unattributed_digest)


def probe_samples(index: ChainIndex, author: bytes, below: int) -> list[tuple[int, bytes]]:
    """Our op ids of ``author`` at ``below, below-1, below-2, below-4, …`` (12-byte
    prefixes, every branch of a fork), at most :data:`MAX_PROBE` entries."""
    samples: list[tuple[int, bytes]] = []
    step = 1
    seq = below
    while seq >= 1 and len(samples) < MAX_PROBE:
        samples.extend((seq, o[:ID_PREFIX]) for o in index.ops_of(author, seq))
        seq -= step
        step *= 2
    return samples[:MAX_PROBE]


def common_seq(index: ChainIndex, author: bytes, samples: Sequence[tuple[int, bytes]]) -> int:
    """The highest sampled ``seq`` at which we hold the same op (0: none in common)."""
    best = 0
    for seq, prefix in samples:
        if seq > best and any(o[:ID_PREFIX] == prefix for o in index.ops_of(author, seq)):
            best = seq
    return best


def unclaimed_gaps(index: ChainIndex, peer: Summary) -> list[tuple[bytes, int, int]]:
    """Authors for whom the peer claimed more than we hold after syncing with it:
    (author prefix, claimed seq, our seq). Non-empty after a finished session means the
    peer advertised ops it did not send."""
    mine: dict[bytes, int] = {}
    for author, seq, _ in index.chains():
        prefix = author[:AUTHOR_PREFIX]
        mine[prefix] = max(seq, mine.get(prefix, 0))
    return [
        (c.author_prefix, c.seq, mine.get(c.author_prefix, 0))
        for c in peer.chains
        if c.seq > mine.get(c.author_prefix, 0)
    ]
