"""The op DAG: parents, waiting for missing parents, chains, equivocation, causal queries.

Theory of operation
-------------------
Every op but the network's genesis names parents; an op is *ready* once all of them are
known. Ready ops are checked against the DAG rules and then indexed:

- ``lamport == 1 + max(lamport of parents)`` (the genesis has lamport 1 and no parents);
- ``seq == 1``, or one parent is the author's op with ``seq - 1`` (the author's chain);
- only the genesis whose id the network committed to may be parentless.

An op that breaks a rule is *rejected* (never indexed); ops naming it as a parent wait
forever and count against the waiting bound. Two different ops by one author with the
same ``seq`` are *equivocation* (a cloned or forked device): both are kept, and the
author is flagged.

Fold order is ``(lamport, op_id)``. Since lamport grows along every edge, that order is a
topological order: parents first, ties broken by id, the same on every node.

Causal queries use a version vector per op, ``V[x][a]`` = the highest ``seq`` of author
``a`` among ``x`` and its ancestors, packed into one Python int with a fixed-width field
per author (author slots are local indices; the semantics do not depend on them). The
vector of an op is the field-wise maximum of its parents' vectors plus its own entry;
the maximum is computed for all fields at once with SWAR arithmetic (a guard bit per
field absorbs borrows), so a merge costs a handful of big-int operations.
``V[x][a] >= s`` proves that ``x``'s past holds an op of ``a`` with ``seq >= s`` and so,
through the chain rule, ``a``'s op with ``seq == s``; that pins down *which* op only when
``a`` has not equivocated, so for equivocating authors :meth:`Dag.in_past` walks the
graph instead.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from protocol.signed import VerifiedOp

__all__ = ["MAX_REJECTED_REMEMBERED", "MAX_WAITING", "Dag", "Rejected"]

MAX_WAITING = 20_000
# Ids of rejected ops remembered, so that a copy is dropped unread; beyond this many the
# memory starts over (a member could send signed ops that break the rules without end:
# a copy of a forgotten one is only checked and rejected again).
MAX_REJECTED_REMEMBERED = 20_000
_FIELD = 25  # 24 value bits (seq up to 16.7 million per author) + 1 guard bit
_VALUE_BITS = _FIELD - 1
_VALUE_MASK = (1 << _VALUE_BITS) - 1
_MAX_SEQ = _VALUE_MASK


@dataclass(frozen=True, slots=True)
class Rejected:
    """An op that broke a DAG rule, with the reason."""

    op_id: bytes
    reason: str


class _Masks:
    """The guard bits for a given number of author fields, grown on demand."""

    def __init__(self) -> None:
        self.fields = 0
        self.guards = 0

    def grow(self, fields: int) -> None:
        while self.fields < fields:
            self.guards |= 1 << (self.fields * _FIELD + _VALUE_BITS)
            self.fields += 1


class _Vectors:
    """The version vectors, by op index: the newest :attr:`TAIL` (the tail) as plain
    ints; older ones dropped as the tail moves on, and made again only when one is asked
    for. Then every dropped vector is computed again from its op's parents, as when the
    op was inserted, and packed: :attr:`BLOCK` vectors to one compressed byte string,
    kept from then on.

    At 100k ops and 49 authors the vectors as ints took 19 MB, a quarter of a node's
    memory, and packing them as they were made cost a start-up 70 ms. New ops name
    recent parents and the fold asks about the op it folds, so nearly every read lands in
    the tail; the first read of an old vector (an op naming a parent from long ago, a
    fold that starts over) costs one pass over the dropped ones (some 0.15 s at 100k
    ops), and later ones unpack a block (a few us; the last :attr:`CACHED` stay
    unpacked). Consecutive vectors differ in about two fields: packed sixteen to a block
    they take some 2 MB at 100k ops. Blocks are small so that an op naming many old
    parents (anyone's op is indexed, even one the fold refuses) costs little more to
    insert. The tail is a plain list so that :meth:`Dag._insert` reads it inline.
    """

    TAIL = 128  # the newest vectors kept as ints (at least this many)
    BLOCK = 16  # vectors packed together
    CACHED = 32  # unpacked old blocks kept (least recently read dropped first)
    CHUNK = 64  # blocks computed again at a time

    __slots__ = ("_blocks", "_cache", "_compute", "keep", "packed", "tail", "tail_start")

    def __init__(self, compute: Callable[[int, int], list[int]], *, keep: bool = False) -> None:
        """``compute(start, stop)``: the vectors of ops ``start`` to ``stop - 1``, reading
        those of ops below ``start`` from this object. With ``keep``, nothing is dropped
        (a one-shot fold reads every vector right after making it)."""
        self._compute = compute
        self.keep = keep
        self._blocks: list[tuple[int, bytes]] = []  # (bytes per vector, packed block)
        self._cache: dict[int, bytes] = {}  # block number -> the block unpacked
        self.packed = 0  # vectors below this index are in blocks; up to the tail, dropped
        self.tail: list[int] = []
        self.tail_start = 0  # the index of tail[0]

    def __len__(self) -> int:
        return self.tail_start + len(self.tail)

    def __getitem__(self, index: int) -> int:
        j = index - self.tail_start
        if j >= 0:
            return self.tail[j]
        if index < 0:
            raise IndexError(index)
        if index >= self.packed:
            self._pack_dropped()
        number, k = divmod(index, self.BLOCK)
        width = self._blocks[number][0]
        cache = self._cache
        raw = cache.pop(number, None)
        if raw is None:
            raw = zlib.decompress(self._blocks[number][1])
            self._keep_unpacked(number, raw)
        else:
            cache[number] = raw  # now the most recently read
        return int.from_bytes(raw[k * width : (k + 1) * width], "little")

    def append(self, vector: int) -> None:
        tail = self.tail
        tail.append(vector)
        if len(tail) >= self.TAIL + self.BLOCK and not self.keep:
            del tail[: self.BLOCK]
            self.tail_start += self.BLOCK

    def _pack_dropped(self) -> None:
        # Some blocks at a time, in index order: an op's parents come before it, in the
        # same chunk or in a block packed already (and, being recent, most likely still
        # unpacked in the cache).
        size = self.BLOCK
        while self.packed < self.tail_start:
            start = self.packed
            stop = min(start + self.CHUNK * size, self.tail_start)
            chunk = self._compute(start, stop)
            for first in range(0, stop - start, size):
                block = chunk[first : first + size]
                width = max(map(int.bit_length, block)) // 8 + 1
                raw = b"".join([v.to_bytes(width, "little") for v in block])
                self._blocks.append((width, zlib.compress(raw, 1)))
                self.packed = start + first + size
                self._keep_unpacked((start + first) // size, raw)

    def _keep_unpacked(self, number: int, raw: bytes) -> None:
        cache = self._cache
        if len(cache) >= self.CACHED:
            del cache[next(iter(cache))]
        cache[number] = raw


class _IdIndex:
    """Op id -> index in the DAG, for every indexed op, without a dict of them all.

    A dict of 100k op ids took 5.2 MB, and its values an int object each (2.8 MB more),
    a quarter of a node's memory. Here: a dict of the ops indexed lately (:attr:`near`),
    and an open-addressing table for the others: 4-byte slots, each the index of an op in
    the DAG's list of ids or -1, at most half full, linear probing from the id's hash
    (1 MB at 100k ops). Ops move from the dict to the table :attr:`NEAR` at a time, in
    one loop, once twice that many are in the dict, so the newest ``NEAR`` at least stay
    in it: nearly every parent an op names is one of them. A lookup in the table runs in
    Python (some 0.3 us); an op found there is kept in the dict too (an electorate asks
    about the members' admissions at every vote) until the dict holds too many.

    :meth:`Dag._insert` adds an op (to the dict; :meth:`move` when it is full) and knows
    it is new without a lookup in the table when its lamport is above that of every op
    in the table (at a start-up, all of them: ops come in fold order).
    Op ids are BLAKE2b digests; ``hash()`` of bytes is keyed per process (SipHash with a
    random key, unless PYTHONHASHSEED fixes it, which would expose every dict of op ids
    alike) and cached in the object, so no one can aim ids at one run of slots.
    """

    NEAR = 2048
    FIRST_SIZE = 1024  # table slots at first (a power of two); doubled as needed

    __slots__ = ("_lamports", "_mask", "_table", "ids", "most", "near", "table_lamport", "tabled")

    def __init__(self, ids: list[bytes], lamports: array[int], *, keep: bool = False) -> None:
        """``keep``: every op stays in the dict (a one-shot fold, dropped right after)."""
        self.ids = ids  # the DAG's columns, by index
        self._lamports = lamports
        self.near: dict[bytes, int] = {}
        # Ops not yet in the table that the dict may hold; then the older half moves.
        self.most = sys.maxsize if keep else 2 * self.NEAR
        self.tabled = 0  # ops below this index are in the table (and maybe in near)
        self.table_lamport = 0  # the highest lamport in the table
        self._table = array("i", [-1]) * self.FIRST_SIZE
        self._mask = self.FIRST_SIZE - 1

    def find(self, op_id: bytes) -> int:
        """The index of ``op_id``, or -1 if it is not indexed."""
        i = self.near.get(op_id)
        if i is not None:
            return i
        i = self.in_table(op_id)
        if i >= 0:
            near = self.near
            if len(near) >= 4 * self.NEAR:
                self._cut_near()
            near[op_id] = i
        return i

    def __getitem__(self, op_id: bytes) -> int:
        i = self.find(op_id)
        if i < 0:
            raise KeyError(op_id)
        return i

    def reserve(self, count: int) -> None:
        """Make room for ``count`` ops in all without growing the table again."""
        size = len(self._table)
        while 2 * count > size:
            size *= 2
        if size != len(self._table):
            self._table = array("i", [-1]) * size
            self._mask = size - 1
            self._fill(0, self.tabled)

    def in_table(self, op_id: bytes) -> int:
        """The index of ``op_id`` if it is in the table, else -1."""
        table, mask, ids = self._table, self._mask, self.ids
        h = hash(op_id) & mask
        while True:
            i = table[h]
            if i < 0 or ids[i] == op_id:
                return i
            h = (h + 1) & mask

    def move(self, stop: int) -> None:
        """Move ops :attr:`tabled` to ``stop - 1`` from the dict to the table."""
        start = self.tabled
        self.reserve(stop)
        self._fill(start, stop)
        self.tabled = stop
        moved_top = max(self._lamports[start:stop])  # (no tuple of 2,048 ints as arguments)
        self.table_lamport = max(self.table_lamport, moved_top)
        near = self.near
        for op_id in self.ids[start:stop]:
            del near[op_id]

    def _fill(self, start: int, stop: int) -> None:
        table, mask = self._table, self._mask
        for i, op_id in enumerate(self.ids[start:stop], start):
            h = hash(op_id) & mask
            while table[h] >= 0:
                h = (h + 1) & mask
            table[h] = i

    def _cut_near(self) -> None:
        # Only the ops not in the table, in place (callers hold the dict; an entry never
        # goes wrong, it can only be missing).
        ids, near = self.ids, self.near
        near.clear()
        for i in range(self.tabled, len(ids)):
            near[ids[i]] = i


class Dag:
    """An index over the ops of one network. Pure: holds no op bodies beyond waiting ops.

    ``add`` returns the ops that became ready and valid, in an order where parents come
    first; callers fold them in ``(lamport, op_id)`` order.
    """

    def __init__(self, genesis_id: bytes, *, one_shot: bool = False) -> None:
        """``one_shot``: for a fold that reads everything right after and is dropped:
        every op's version vector kept as an int (otherwise only the newest, _Vectors)
        and every op id in a dict (otherwise the newest, _IdIndex): faster, more memory."""
        self.genesis_id = genesis_id
        self._ids: list[bytes] = []
        # Parallel columns, one entry per indexed op (arrays: 4 bytes, not a 28-byte int).
        self._author = array("I")
        self._seq = array("I")
        self._lamport = array("I")
        self._index = _IdIndex(self._ids, self._lamport, keep=one_shot)
        # The parents of op i are _parents[_parent_ends[i - 1]:_parent_ends[i]]: one flat
        # array, not 100k tuples for the cyclic collector to walk after a start-up.
        self._parents = array("I")
        self._parent_ends = array("I")
        self._vector = _Vectors(self._vectors_again, keep=one_shot)
        self._authors: dict[bytes, int] = {}
        self._author_keys: list[bytes] = []
        # Per author, the index of its op with seq s at position s - 1 (the first seen);
        # further ops at a taken (author, seq) go to _forks with the first one.
        self._chain: list[array[int]] = []
        self._forks: dict[tuple[int, int], list[int]] = {}
        self._equivocators: set[int] = set()
        self._waiting: dict[bytes, list[VerifiedOp]] = {}
        self._waiting_ids: set[bytes] = set()
        # Rejections for the caller to read (and clear: a long-lived caller does).
        self.rejected: list[Rejected] = []
        self._rejected: set[bytes] = set()
        self._masks = _Masks()
        self._heads: set[int] = set()

    # -- reading -------------------------------------------------------------------------

    def __contains__(self, op_id: object) -> bool:
        return isinstance(op_id, bytes) and self._index.find(op_id) >= 0

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def waiting(self) -> int:
        """How many ops wait for a parent."""
        return len(self._waiting_ids)

    def is_waiting(self, op_id: bytes) -> bool:
        """Whether ``op_id`` waits for a parent."""
        return op_id in self._waiting_ids

    def drop_waiting(self, op_ids: Iterable[bytes]) -> None:
        """Forget ops that wait for parents (a batch refused as a whole)."""
        drop = set(op_ids) & self._waiting_ids
        if not drop:
            return
        self._waiting_ids -= drop
        for parent, children in list(self._waiting.items()):
            kept = [c for c in children if c.op_id not in drop]
            if kept:
                self._waiting[parent] = kept
            else:
                del self._waiting[parent]

    def knows(self, op_id: bytes) -> bool:
        """Whether ``op_id`` is indexed, waits for a parent, or was rejected (among the
        last :data:`MAX_REJECTED_REMEMBERED`)."""
        return self._index.find(op_id) >= 0 or op_id in self._waiting_ids or op_id in self._rejected

    def held(self) -> list[bytes]:
        """The ids of every op indexed or waiting for a parent."""
        return [*self._ids, *self._waiting_ids]

    def missing(self) -> set[bytes]:
        """Ids named as parents that we do not hold."""
        return set(self._waiting)

    def lamport(self, op_id: bytes) -> int:
        return self._lamport[self._index[op_id]]

    def seq(self, op_id: bytes) -> int:
        return self._seq[self._index[op_id]]

    def author(self, op_id: bytes) -> bytes:
        return self._author_keys[self._author[self._index[op_id]]]

    def order_key(self, op_id: bytes) -> tuple[int, bytes]:
        """The fold-order key of an indexed op."""
        return self._lamport[self._index[op_id]], op_id

    def fold_order(self) -> list[bytes]:
        """Every indexed op id, sorted by :meth:`order_key` (the order the fold applies)."""
        return [op_id for _, op_id in sorted(zip(self._lamport, self._ids, strict=True))]

    def ops_of(self, author: bytes, seq: int) -> list[bytes]:
        """Ids of ``author``'s ops with this ``seq`` (two or more: equivocation)."""
        slot = self._authors.get(author)
        if slot is None or not 1 <= seq <= len(self._chain[slot]):
            return []
        return [self._ids[i] for i in self._at(slot, seq)]

    def _at(self, slot: int, seq: int) -> list[int]:
        return self._forks.get((slot, seq)) or [self._chain[slot][seq - 1]]

    def latest(self, author: bytes) -> tuple[int, bytes] | None:
        """``author``'s highest ``seq`` and that op's id (the highest id on a fork)."""
        slot = self._authors.get(author)
        if slot is None:
            return None
        seq = len(self._chain[slot])
        return seq, max(self._ids[i] for i in self._at(slot, seq))

    def chains(self) -> Iterator[tuple[bytes, int, bytes]]:
        """Per author: (author, highest seq, id of that op — the highest id on a fork)."""
        for slot, author in enumerate(self._author_keys):
            seq = len(self._chain[slot])
            yield author, seq, max(self._ids[i] for i in self._at(slot, seq))

    def ops_above(self, author: bytes, seq: int) -> list[bytes]:
        """Ids of ``author``'s indexed ops with a higher ``seq`` (forks included)."""
        slot = self._authors.get(author)
        if slot is None:
            return []
        chain = self._chain[slot]
        found = [self._ids[i] for i in chain[max(seq, 0) :]]
        for (fork_slot, fork_seq), indices in self._forks.items():
            if fork_slot == slot and fork_seq > seq:
                found.extend(self._ids[i] for i in indices[1:])
        return found

    def forks(self, author: bytes) -> tuple[int, int]:
        """(ops beyond one per seq, lowest forked seq) for ``author``; (0, 0) if none."""
        slot = self._authors.get(author)
        if slot is None or slot not in self._equivocators:
            return 0, 0
        forked = [(seq, len(i) - 1) for (s, seq), i in self._forks.items() if s == slot]
        return sum(n for _, n in forked), min(seq for seq, _ in forked)

    def equivocators(self) -> set[bytes]:
        """Authors with two different ops at one ``seq``."""
        return {self._author_keys[a] for a in self._equivocators}

    def heads(self) -> list[bytes]:
        """Ops that no indexed op names as a parent, sorted (the next op's parents)."""
        return sorted(self._ids[i] for i in self._heads)

    def max_seq_in_past(self, op_id: bytes, author: bytes) -> int:
        """The highest ``seq`` of ``author`` among ``op_id`` and its ancestors (0: none)."""
        slot = self._authors.get(author)
        if slot is None:
            return 0
        return (self._vector[self._index[op_id]] >> (slot * _FIELD)) & _VALUE_MASK

    def in_past(self, ancestor: bytes, op_id: bytes) -> bool:
        """Whether ``ancestor`` is ``op_id`` or one of its ancestors."""
        a = self._index[ancestor]
        x = self._index[op_id]
        if a == x:
            return True
        if self._lamport[a] >= self._lamport[x]:
            return False
        slot = self._author[a]
        vectors = self._vector
        j = x - vectors.tail_start
        vector = vectors.tail[j] if j >= 0 else vectors[x]
        if (vector >> (slot * _FIELD)) & _VALUE_MASK < self._seq[a]:
            return False
        if slot not in self._equivocators:
            return True
        return self._walk_finds(a, x)

    def past_of(self, op_id: bytes) -> Callable[[bytes], bool]:
        """``lambda ancestor: in_past(ancestor, op_id)``, for many questions about one op
        (an electorate: one per member): the op's vector is read once."""
        index, lamports, authors, seqs = self._index, self._lamport, self._author, self._seq
        near = index.near
        equivocators = self._equivocators
        x = index[op_id]
        floor = lamports[x]
        vector = self._vector[x]

        def in_past(ancestor: bytes) -> bool:
            a = near.get(ancestor)
            if a is None:
                a = index[ancestor]
            if a == x:
                return True
            if lamports[a] >= floor:
                return False
            slot = authors[a]
            if (vector >> (slot * _FIELD)) & _VALUE_MASK < seqs[a]:
                return False
            return slot not in equivocators or self._walk_finds(a, x)

        return in_past

    def chain_past_of(self, op_id: bytes) -> Callable[[bytes, int, bytes], bool]:
        """``lambda author, seq, ancestor: in_past(ancestor, op_id)``, for an indexed
        ``ancestor`` that is ``author``'s op at ``seq`` (a position, which records both):
        unless that author has equivocated, ``op_id``'s vector answers without looking
        the ancestor up (one per position, counted at a close)."""
        in_past = self.past_of(op_id)
        authors, equivocators = self._authors, self._equivocators
        vector = self._vector[self._index[op_id]]

        def chain_in_past(author: bytes, seq: int, ancestor: bytes) -> bool:
            slot = authors[author]
            if slot in equivocators:
                return in_past(ancestor)
            return (vector >> (slot * _FIELD)) & _VALUE_MASK >= seq

        return chain_in_past

    def _walk_finds(self, target: int, start: int) -> bool:
        floor = self._lamport[target]
        stack = [start]
        seen = {start}
        while stack:
            for parent in self._parents_of(stack.pop()):
                if parent == target:
                    return True
                if parent not in seen and self._lamport[parent] > floor:
                    seen.add(parent)
                    stack.append(parent)
        return False

    def _parents_of(self, index: int) -> array[int]:
        ends = self._parent_ends
        return self._parents[ends[index - 1] if index else 0 : ends[index]]

    def ancestors(self, op_id: bytes) -> Iterator[bytes]:
        """Every op in the causal past of ``op_id`` (itself included), in no set order."""
        start = self._index[op_id]
        stack = [start]
        seen = {start}
        while stack:
            current = stack.pop()
            yield self._ids[current]
            for parent in self._parents_of(current):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)

    # -- writing -------------------------------------------------------------------------

    def add(self, op: VerifiedOp, *, bounded: bool = True) -> list[VerifiedOp]:
        """Offer one op. Returns the ops that became indexed (this one and any that waited
        on it), parents first. Duplicates return ``[]``. Invalid ops land in
        :attr:`rejected`.

        Raises:
            OverflowError: more than :data:`MAX_WAITING` ops would wait for parents; the
                op is not kept (the sync layer treats it as a misbehaving peer).
        """
        op_id = op[0]
        index = self._index
        # (An op indexed long ago is found in _insert, which knows its lamport checked.)
        if op_id in index.near or op_id in self._waiting_ids or op_id in self._rejected:
            return []
        try:
            parents = tuple([index.near[p] for p in op[5]])  # nearly always recent ones
        except KeyError:
            found = [index.find(p) for p in op[5]]
            if -1 not in found:
                parents = tuple(found)
            else:
                if bounded and len(self._waiting_ids) >= MAX_WAITING:
                    raise OverflowError("too many ops wait for missing parents") from None
                self._waiting_ids.add(op_id)
                # Wait on one missing parent; when it arrives the op is offered again.
                missing = op[5][found.index(-1)]
                self._waiting.setdefault(missing, []).append(op)
                return []
        if not self._waiting:  # the common case: nothing can be waiting on this op
            return [op] if self._insert(op, parents) else []
        ready: list[VerifiedOp] = []
        queue = [(op, parents)]
        while queue:
            current, parents = queue.pop()
            if self._insert(current, parents):
                ready.append(current)
                for child in self._waiting.pop(current.op_id, []):
                    self._waiting_ids.discard(child.op_id)
                    still_missing = [p for p in child.parents if index.find(p) < 0]
                    if still_missing:
                        self._waiting_ids.add(child.op_id)
                        self._waiting.setdefault(still_missing[0], []).append(child)
                    else:
                        queue.append((child, tuple([index[p] for p in child.parents])))
        return ready

    def add_all(self, ops: Iterable[VerifiedOp]) -> list[VerifiedOp]:
        """:meth:`add` for many ops; returns everything that became indexed."""
        ready: list[VerifiedOp] = []
        for op in ops:
            ready.extend(self.add(op))
        return ready

    def reserve(self, count: int) -> None:
        """Make room for ``count`` more ops at once (a caller about to add that many):
        the op-id table is not grown step by step on the way."""
        self._index.reserve(len(self._ids) + count)

    def _reject(self, op: VerifiedOp, reason: str) -> bool:
        if len(self._rejected) >= MAX_REJECTED_REMEMBERED:
            self._rejected.clear()
        self._rejected.add(op.op_id)
        self.rejected.append(Rejected(op.op_id, reason))
        return False

    def _insert(self, op: VerifiedOp, parents: tuple[int, ...]) -> bool:
        # ``parents``: the indices of the op's parents, every one of them indexed. (Runs
        # once per op at every start-up: attributes are read once, common cases inline.)
        op_id, _net, author, seq, lamport = op[:5]
        by_id = self._index
        near = by_id.near
        if op_id in near or (lamport <= by_id.table_lamport and by_id.in_table(op_id) >= 0):
            return False  # indexed already (in the dict, or in the table: _IdIndex)
        lamports = self._lamport
        if not parents:
            if op_id != self.genesis_id:
                return self._reject(op, "only the network's genesis may have no parents")
            if lamport != 1 or seq != 1:
                return self._reject(op, "the genesis must have lamport 1 and seq 1")
        elif lamport != 1 + (
            lamports[parents[0]] if len(parents) == 1 else max([lamports[p] for p in parents])
        ):
            return self._reject(op, "lamport is not 1 + the parents' highest")
        if seq > _MAX_SEQ or lamport > _MAX_SEQ:
            return self._reject(op, "seq or lamport too large")
        slot = self._authors.get(author)
        if seq > 1 and not self._names_previous(slot, seq, parents):
            return self._reject(op, "parents do not include the author's previous op")
        if slot is None:
            slot = len(self._author_keys)
            self._authors[author] = slot
            self._author_keys.append(author)
            self._chain.append(array("I"))
            self._masks.grow(slot + 1)
        vector = self._vector_of(parents, slot * _FIELD, seq)
        ids = self._ids
        index = len(ids)
        ids.append(op_id)
        near[op_id] = index  # into the _IdIndex
        if index + 1 - by_id.tabled >= by_id.most:
            by_id.move(index + 1 - by_id.most // 2)
        self._author.append(slot)
        self._seq.append(seq)
        lamports.append(lamport)
        all_parents = self._parents
        all_parents.extend(parents)
        self._parent_ends.append(len(all_parents))
        self._vector.append(vector)
        heads = self._heads
        heads.difference_update(parents)
        heads.add(index)
        chain = self._chain[slot]
        if seq == len(chain) + 1:
            chain.append(index)
        else:  # seq <= len(chain): a second op at a taken seq
            self._forks.setdefault((slot, seq), [chain[seq - 1]]).append(index)
            self._equivocators.add(slot)
        return True

    def _vector_of(self, parents: tuple[int, ...], shift: int, seq: int) -> int:
        """A new op's version vector: the field-wise maximum of its parents' (see _merge,
        inlined: this loop runs for every parent but the first), then its own entry,
        raised to ``seq`` unless the past already holds a higher one (a fork). Parents
        are nearly always recent: read from the tail of plain ints directly."""
        if not parents:
            return seq << shift
        vectors = self._vector
        tail = vectors.tail
        start = vectors.tail_start
        first = parents[0]
        vector = tail[first - start] if first >= start else vectors[first]
        if len(parents) > 1:
            guard_mask = self._masks.guards
            for p in parents[1:]:
                other = tail[p - start] if p >= start else vectors[p]
                diff = (vector | guard_mask) - other
                guards = diff & guard_mask
                vector = other + (diff & (guards - (guards >> _VALUE_BITS)))
        own = (vector >> shift) & _VALUE_MASK
        if own < seq:
            vector += (seq - own) << shift
        return vector

    def _vectors_again(self, start: int, stop: int) -> list[int]:
        """The vectors of ops ``start`` to ``stop - 1`` computed again, as :meth:`_insert`
        computed them (for :class:`_Vectors`, which dropped them)."""
        vectors, guard_mask = self._vector, self._masks.guards
        parents, ends, authors, seqs = self._parents, self._parent_ends, self._author, self._seq
        again: list[int] = []
        for i in range(start, stop):
            vector = 0  # the genesis: no parents
            for p in parents[ends[i - 1] if i else 0 : ends[i]]:
                other = again[p - start] if p >= start else vectors[p]
                if vector:  # the field-wise maximum, as in _merge
                    diff = (vector | guard_mask) - other
                    guards = diff & guard_mask
                    vector = other + (diff & (guards - (guards >> _VALUE_BITS)))
                else:
                    vector = other
            shift, seq = authors[i] * _FIELD, seqs[i]
            own = (vector >> shift) & _VALUE_MASK
            if own < seq:
                vector += (seq - own) << shift
            again.append(vector)
        return again

    def _names_previous(self, slot: int | None, seq: int, parents: tuple[int, ...]) -> bool:
        if slot is None or seq - 1 > len(self._chain[slot]):
            return False
        if not self._forks:  # no fork anywhere: one op per seq
            return self._chain[slot][seq - 2] in parents
        return any(p in parents for p in self._at(slot, seq - 1))

    def _merge(self, a: int, b: int) -> int:
        # Field-wise max: per field, (a | G) - b holds the guard bit iff a >= b, above
        # a - b (no borrow crosses a field); b plus that difference where a wins is a.
        diff = (a | self._masks.guards) - b
        guards = diff & self._masks.guards
        return b + (diff & (guards - (guards >> _VALUE_BITS)))
