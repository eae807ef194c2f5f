"""Shared hypothesis strategies for the crypto and protocol tests.

Identities and keys are built from drawn seeds (never from the OS CSPRNG), so every
failing example hypothesis reports is reproducible and shrinks to small byte strings.
"""

from __future__ import annotations

import string
from typing import Any

import msgpack
from hypothesis import strategies as st

from crypto import EPOCH_ID_BYTES, ROUTE_TAG_BYTES, EpochKey, Identity, LocalKey, NetworkSecret
from protocol import VerifiedOp, sign_op
from protocol.envelope import NONCE_BYTES
from protocol.signed import MAX_COUNTER, MAX_PARENTS, NETWORK_ID_BYTES, OP_ID_BYTES

__all__ = [
    "bytes_of",
    "canonical_maps",
    "canonical_scalars",
    "canonical_values",
    "epoch_keys",
    "identities",
    "local_keys",
    "msgpack_values",
    "network_ids",
    "network_secrets",
    "nonces",
    "op_fields",
    "op_ids",
    "op_types",
    "parent_lists",
    "route_tags",
    "seeds",
    "signed_ops",
]


def bytes_of(n: int) -> st.SearchStrategy[bytes]:
    """Exactly ``n`` arbitrary bytes."""
    return st.binary(min_size=n, max_size=n)


seeds = bytes_of(32)
identities = seeds.map(Identity)
network_secrets = bytes_of(32).map(NetworkSecret)
local_keys = bytes_of(32).map(LocalKey)
epoch_keys = st.builds(EpochKey, bytes_of(EPOCH_ID_BYTES), bytes_of(32))
route_tags = bytes_of(ROUTE_TAG_BYTES)
nonces = bytes_of(NONCE_BYTES)
network_ids = bytes_of(NETWORK_ID_BYTES)
op_ids = bytes_of(OP_ID_BYTES)

# The full range wire.encode accepts: int64 minimum to uint64 maximum.
canonical_ints = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
canonical_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    canonical_ints,
    st.text(max_size=40),
    st.binary(max_size=40),
)


def canonical_values(max_depth: int = 3) -> st.SearchStrategy[Any]:
    """Values with a canonical encoding: at most ``max_depth`` levels of containers.

    The depth is bounded explicitly (not by ``st.recursive``'s leaf budget) so the values
    stay well inside wire.MAX_DEPTH; the depth limit itself has its own targeted tests.
    """
    if max_depth <= 0:
        return canonical_scalars
    inner = canonical_values(max_depth - 1)
    return st.one_of(
        canonical_scalars,
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    )


def canonical_maps(max_depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """A map with text keys: the shape of an op body."""
    return st.dictionaries(st.text(max_size=8), canonical_values(max_depth - 1), max_size=4)


op_types = st.from_regex(r"[a-z][a-z_]{0,31}", fullmatch=True)


def parent_lists(max_size: int = MAX_PARENTS) -> st.SearchStrategy[list[bytes]]:
    """Sorted, duplicate-free op ids, as an op's ``parents`` must be."""
    return st.lists(op_ids, unique=True, max_size=max_size).map(sorted)


def op_fields(net: bytes | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for :func:`protocol.sign_op`, all valid."""
    counters = st.integers(min_value=1, max_value=MAX_COUNTER)
    return st.fixed_dictionaries(
        {
            "net": st.just(net) if net is not None else network_ids,
            "seq": counters,
            "lamport": counters,
            "parents": parent_lists(max_size=4),
            "time": st.integers(min_value=0, max_value=MAX_COUNTER),
            "type": op_types,
            "body": canonical_maps(),
        }
    )


def signed_ops(net: bytes | None = None) -> st.SearchStrategy[VerifiedOp]:
    """Ops signed by a drawn identity."""
    return st.builds(lambda ident, fields: sign_op(ident, **fields), identities, op_fields(net))


# Anything msgpack can pack, canonical or not: floats, ext types, non-text map keys,
# unsorted maps. Fuzz input for the strict decoders, which must reject what is not
# canonical and never crash.
_msgpack_scalars: st.SearchStrategy[Any] = st.one_of(
    canonical_scalars,
    st.floats(allow_nan=True),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    st.text(alphabet=string.ascii_lowercase, max_size=3),
)


def _unsorted_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # Insertion order is encoding order: this keeps whatever order was drawn.
    return dict(pairs)


msgpack_values: st.SearchStrategy[Any] = st.recursive(
    _msgpack_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(
            st.tuples(
                st.one_of(st.text(max_size=3), st.integers(-2, 2), st.binary(max_size=2)), inner
            ),
            max_size=4,
        ).map(_unsorted_map),
    ),
    max_leaves=12,
)
