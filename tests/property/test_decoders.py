"""Every decoder of untrusted bytes raises only its typed errors, and never accepts a change.

STYLE.md rule 15: remote input can raise only ``RemoteProtocolError`` or ``CryptoError``
(``KeystoreCorrupt``/``KeystoreLocked`` for key files); anything else escaping a decoder
is a bug. A change to an envelope or signed op must never open to a different content.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import msgpack
import nacl.pwhash
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crypto import (
    CryptoError,
    DecryptionFailed,
    EpochKey,
    Identity,
    KdfParams,
    KeystoreContents,
    KeystoreCorrupt,
    KeystoreLocked,
    LocalKey,
    NetworkSecret,
)
from crypto.keystore import decrypt_keystore, encrypt_keystore
from protocol import (
    GroupEnvelope,
    RemoteProtocolError,
    SealedEnvelope,
    open_group,
    open_sealed,
    parse_envelope,
    seal_group,
    seal_to_member,
    sign_op,
    verify_signed_op,
    wire,
)
from protocol.envelope import BUCKETS, pad, unpad
from protocol.signed import MAX_COUNTER
from tests.strategies import bytes_of, msgpack_values, op_types

AUTHOR = Identity(bytes(range(32)))
MEMBER = Identity(bytes(range(1, 33)))
NETWORK = NetworkSecret(bytes([42]) * 32)
NET_ID = NETWORK.network_id
ROUTE = NETWORK.route_tag
EPOCH = EpochKey(bytes([5]) * 16, bytes([6]) * 32)

OP = sign_op(
    AUTHOR,
    net=NET_ID,
    seq=7,
    lamport=12,
    parents=[bytes([1]) * 32, bytes([2]) * 32],
    time=1_700_000_000,
    type="decision_position",
    body={"choice": "yes", "reason": "عدالت", "weight": [1, -2, None, True, b"\x00"]},
)
SIGNED = OP.signed
GROUP = seal_group(OP, epoch=EPOCH, route_tag=ROUTE, nonce=bytes(range(24)))
SEALED_PAYLOAD = b"epoch key for the new epoch"
SEALED = seal_to_member(MEMBER.public, SEALED_PAYLOAD, route_tag=ROUTE)

KEYSTORE_PASSPHRASE = "passphrase"
KEYSTORE_CONTENTS = KeystoreContents(AUTHOR, LocalKey(bytes(32))).with_network(NETWORK)
_KDF = KdfParams.insecure_for_tests()
_KEYSTORE = encrypt_keystore(
    KEYSTORE_CONTENTS,
    nacl.pwhash.argon2id.kdf(
        32,
        KEYSTORE_PASSPHRASE.encode(),
        bytes(16),
        opslimit=_KDF.opslimit,
        memlimit=_KDF.memlimit_kib * 1024,
    ),
    salt=bytes(16),
    params=_KDF,
    nonce=bytes(24),
)

TYPED = (CryptoError, RemoteProtocolError)
Decoder = Callable[[bytes], bytes]
FAST = settings(max_examples=150, deadline=None)


class _AnyEpoch(Mapping[bytes, EpochKey]):
    """Holds EPOCH's key under every epoch id.

    With it, a changed epoch id reaches the AEAD (and must fail there) instead of stopping
    at MissingEpochKey.
    """

    def __getitem__(self, epoch_id: bytes) -> EpochKey:
        return EpochKey(epoch_id, EPOCH.key)

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def __len__(self) -> int:
        return 0


ANY_EPOCH = _AnyEpoch()


def _open_envelope(data: bytes) -> bytes:
    """Parse and open as whichever kind it claims to be; returns the content.

    A group envelope is opened under the route tag it claims and with EPOCH's key for any
    epoch id, so a changed header is caught by the AEAD, not by a lookup in front of it.
    """
    env = parse_envelope(data)
    if isinstance(env, GroupEnvelope):
        return open_group(env, epochs=ANY_EPOCH, network_id=NET_ID, route_tag=env.route_tag).signed
    return open_sealed(env, MEMBER)


def _verify(data: bytes) -> bytes:
    return verify_signed_op(data).signed


def _group_around(padded: bytes) -> bytes:
    """A group envelope around any plaintext, correctly encrypted under EPOCH."""
    nonce = bytes(24)
    aad = wire.encode([1, ROUTE, EPOCH.epoch_id, nonce])
    return wire.encode([1, ROUTE, EPOCH.epoch_id, nonce, EPOCH.encrypt(padded, aad, nonce)])


def test_originals_open() -> None:
    # Every mutation below starts from these; they must be valid to begin with.
    assert _open_envelope(GROUP) == SIGNED
    assert _open_envelope(SEALED) == SEALED_PAYLOAD
    assert _verify(SIGNED) == SIGNED
    assert _open_envelope(_group_around(pad(SIGNED))) == SIGNED
    assert decrypt_keystore(_KEYSTORE, KEYSTORE_PASSPHRASE)[0] == KEYSTORE_CONTENTS
    assert SEALED[_SEALED_ROUTE_TAG.start : _SEALED_ROUTE_TAG.stop] == ROUTE


# A kind-2 envelope's route tag is a routing label outside the sealed box: nothing binds
# it to the content (a sealed box is anonymous; its payload must authenticate itself).
# Changing it may still open, but only to the very same payload.
_SEALED_ROUTE_TAG = range(4, 4 + len(ROUTE))  # after fixarray, kind and the bin8 header


class _Target(NamedTuple):
    original: bytes
    decoder: Decoder
    content: bytes
    unbound: range  # bytes whose change may open to ``content``; none elsewhere


TARGETS = [
    pytest.param(_Target(GROUP, _open_envelope, SIGNED, range(0)), id="group-envelope"),
    pytest.param(
        _Target(SEALED, _open_envelope, SEALED_PAYLOAD, _SEALED_ROUTE_TAG), id="sealed-envelope"
    ),
    pytest.param(_Target(SIGNED, _verify, SIGNED, range(0)), id="signed-op"),
]


def _assert_rejected(target: _Target, mutated: bytes) -> None:
    """``mutated`` (not the original) fails with a typed error, or opens unchanged."""
    assert mutated != target.original
    try:
        content = target.decoder(mutated)
    except TYPED:
        return
    changed = [i for i, (a, b) in enumerate(zip(mutated, target.original, strict=False)) if a != b]
    assert len(mutated) == len(target.original), "a resized input was accepted"
    assert all(i in target.unbound for i in changed), f"bytes {changed} changed and accepted"
    assert content == target.content, "a change opened to different content"


@pytest.mark.parametrize("target", TARGETS)
class TestEveryChangeIsRejected:
    def test_every_byte_flipped(self, target: _Target) -> None:
        for i in range(len(target.original)):
            for mask in (0x01, 0x80, 0xFF):
                mutated = bytearray(target.original)
                mutated[i] ^= mask
                _assert_rejected(target, bytes(mutated))

    def test_every_truncation(self, target: _Target) -> None:
        for cut in range(len(target.original)):
            with pytest.raises(TYPED):
                target.decoder(target.original[:cut])

    @FAST
    @given(data=st.data(), mask=st.integers(1, 255))
    def test_any_byte_any_change(self, target: _Target, data: st.DataObject, mask: int) -> None:
        i = data.draw(st.integers(0, len(target.original) - 1))
        mutated = bytearray(target.original)
        mutated[i] ^= mask
        _assert_rejected(target, bytes(mutated))

    @FAST
    @given(suffix=st.binary(min_size=1, max_size=64))
    def test_extended(self, target: _Target, suffix: bytes) -> None:
        with pytest.raises(TYPED):
            target.decoder(target.original + suffix)

    @FAST
    @given(data=st.data())
    def test_slice_replaced(self, target: _Target, data: st.DataObject) -> None:
        original = target.original
        start = data.draw(st.integers(0, len(original) - 1))
        end = data.draw(st.integers(start, min(len(original), start + 40)))
        replacement = data.draw(st.binary(max_size=40))
        mutated = original[:start] + replacement + original[end:]
        assume(mutated != original)
        _assert_rejected(target, mutated)


def test_sealed_route_tag_is_not_bound_to_the_content() -> None:
    # Pins down the fact the targets above allow for: a relay can relabel a sealed
    # envelope, which then has another envelope id but the same payload.
    env = parse_envelope(SEALED)
    assert isinstance(env, SealedEnvelope)
    relabelled = wire.encode([2, NetworkSecret(bytes(32)).route_tag, env.sealed])
    assert _open_envelope(relabelled) == SEALED_PAYLOAD


class TestInsideTheEncryption:
    """A member holding the epoch key can build any plaintext: the op checks must hold."""

    @FAST
    @given(data=st.data(), mask=st.integers(1, 255))
    def test_flipped_signed_op_in_a_valid_envelope(self, data: st.DataObject, mask: int) -> None:
        i = data.draw(st.integers(0, len(SIGNED) - 1))
        mutated = bytearray(SIGNED)
        mutated[i] ^= mask
        with pytest.raises(TYPED):
            _open_envelope(_group_around(pad(bytes(mutated))))

    @FAST
    @given(plaintext=st.binary(max_size=400))
    def test_random_padded_plaintext(self, plaintext: bytes) -> None:
        with pytest.raises(TYPED):
            _open_envelope(_group_around(pad(plaintext)))

    @FAST
    @given(padded=st.sampled_from(BUCKETS[:2]).flatmap(lambda b: st.binary(min_size=b, max_size=b)))
    def test_random_unpadded_plaintext(self, padded: bytes) -> None:
        with pytest.raises(TYPED):
            _open_envelope(_group_around(padded))

    @settings(max_examples=60, deadline=None)
    @given(payload=st.binary(max_size=300))
    def test_random_sealed_payload(self, payload: bytes) -> None:
        inside = payload.ljust(256, b"\x00")[:256]
        envelope = wire.encode([2, ROUTE, MEMBER.public.seal(inside)])
        try:
            opened = _open_envelope(envelope)
        except RemoteProtocolError:
            return
        # Whatever opens must be exactly what pad() would have hidden in that payload.
        assert opened + b"\x80" == inside.rstrip(b"\x00")


# --- random bytes into every decoder ---------------------------------------------------


@FAST
@given(data=st.binary(max_size=300))
def test_decode_random_bytes(data: bytes) -> None:
    try:
        value = wire.decode(data, max_size=1 << 16)
    except RemoteProtocolError:
        return
    # decode accepts exactly the canonical encodings: one value, one encoding.
    assert wire.encode(value) == data


@FAST
@given(value=msgpack_values)
def test_decode_any_msgpack(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    try:
        decoded = wire.decode(data, max_size=1 << 16)
    except RemoteProtocolError:
        return
    assert wire.encode(decoded) == data


@FAST
@given(data=st.one_of(st.binary(max_size=300), msgpack_values.map(msgpack.packb)))
def test_unpack_random_bytes(data: bytes) -> None:
    # unpack makes no canonical promise: any value, or RemoteProtocolError, nothing else.
    with contextlib.suppress(RemoteProtocolError):
        wire.unpack(data, max_size=1 << 16, max_items=16)


@FAST
@given(data=st.binary(max_size=400))
def test_verify_random_bytes(data: bytes) -> None:
    with pytest.raises(TYPED):
        verify_signed_op(data)


@FAST
@given(op_bytes=st.one_of(st.binary(max_size=300), msgpack_values.map(msgpack.packb)))
def test_verify_random_op_bytes_with_a_real_signature(op_bytes: bytes) -> None:
    signed = msgpack.packb([op_bytes, AUTHOR.sign(b"op", op_bytes)], use_bin_type=True)
    with pytest.raises(TYPED):
        verify_signed_op(signed)


# Values that each op field may take in the op-like maps below: the valid one, or any of
# a pool of wrong types, lengths and ranges.
_WEIRD: list[Any] = [
    None,
    True,
    0,
    -1,
    MAX_COUNTER + 1,
    (1 << 64) - 1,
    1.5,
    "",
    "note",
    b"",
    bytes(16),
    bytes(31),
    bytes(32),
    [],
    [bytes(32)],
    [bytes(32), bytes(32)],
    {},
    {"b": 1, "a": 2},
    msgpack.ExtType(3, b"x"),
]
_VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "author": st.just(AUTHOR.public.key),
    "body": st.dictionaries(st.text(max_size=3), st.integers(-5, 5), max_size=3),
    "lamport": st.integers(1, MAX_COUNTER),
    "net": st.just(NET_ID),
    "parents": st.lists(bytes_of(32), unique=True, max_size=3).map(sorted),
    "seq": st.integers(1, MAX_COUNTER),
    "time": st.integers(0, MAX_COUNTER),
    "type": op_types,
}


@st.composite
def _op_like_maps(draw: st.DrawFn) -> dict[Any, Any]:
    fields: dict[Any, Any] = {}
    for name, valid in _VALID_FIELDS.items():
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # missing field
        fields[name] = draw(st.sampled_from(_WEIRD)) if choice == 1 else draw(valid)
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.sampled_from(["zz", "a", "extra", 1, b"net"]))] = 0
    if draw(st.integers(0, 9)) == 0:
        fields = dict(draw(st.permutations(list(fields.items()))))
    return fields


@settings(max_examples=300, deadline=None)
@given(fields=_op_like_maps())
def test_verify_op_like_maps_signed_by_the_author(fields: dict[Any, Any]) -> None:
    op_bytes = msgpack.packb(fields, use_bin_type=True)
    signed = msgpack.packb([op_bytes, AUTHOR.sign(b"op", op_bytes)], use_bin_type=True)
    try:
        op = verify_signed_op(signed)
    except TYPED:
        return
    # Accepted: then it was a canonical op with exactly the op fields, and the
    # VerifiedOp reports exactly what was signed.
    assert wire.decode(op_bytes, max_size=1 << 16) == fields
    assert tuple(fields) == tuple(_VALID_FIELDS)
    assert op.signed == signed
    assert (op.author, op.net, op.seq, op.lamport, op.time, op.type, op.body) == (
        fields["author"],
        fields["net"],
        fields["seq"],
        fields["lamport"],
        fields["time"],
        fields["type"],
        fields["body"],
    )
    assert op.parents == tuple(fields["parents"])


@FAST
@given(data=st.binary(max_size=400))
def test_parse_random_bytes(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_envelope(data)


@FAST
@given(
    items=st.lists(
        st.one_of(
            st.sampled_from([1, 2, 0, 3, True, -1, 1.0]),
            st.binary(max_size=20),
            st.sampled_from(BUCKETS[:2])
            .flatmap(lambda b: st.sampled_from([b + 15, b + 16, b + 17, b + 48]))
            .map(bytes),
        ),
        max_size=6,
    )
)
def test_parse_envelope_shaped_input(items: list[Any]) -> None:
    data = msgpack.packb(items, use_bin_type=True)
    try:
        env = parse_envelope(data)
    except RemoteProtocolError:
        return
    # Accepted: it was canonical, and opening it fails cleanly (no key can open it).
    assert wire.decode(data, max_size=1 << 17) == items
    with pytest.raises(TYPED):
        _open_envelope(env.raw)


_GROUP_CIPHERTEXTS = st.sampled_from(BUCKETS[:3]).flatmap(
    lambda b: st.binary(min_size=b + 16, max_size=b + 16)
)
_SEALED_BOXES = st.sampled_from(BUCKETS[:3]).flatmap(
    lambda b: st.binary(min_size=b + 48, max_size=b + 48)
)


@FAST
@given(
    route=bytes_of(16),
    epoch_id=bytes_of(16),
    nonce=bytes_of(24),
    ciphertext=_GROUP_CIPHERTEXTS,
)
def test_open_random_group_envelope(
    route: bytes, epoch_id: bytes, nonce: bytes, ciphertext: bytes
) -> None:
    env = parse_envelope(wire.encode([1, route, epoch_id, nonce, ciphertext]))
    assert isinstance(env, GroupEnvelope)
    assert (env.route_tag, env.epoch_id, env.nonce, env.ciphertext) == (
        route,
        epoch_id,
        nonce,
        ciphertext,
    )
    # We hold a key for its epoch and accept its route tag: only the AEAD can refuse it.
    with pytest.raises(DecryptionFailed):
        open_group(env, epochs={epoch_id: EPOCH}, network_id=NET_ID, route_tag=route)


@FAST
@given(route=bytes_of(16), sealed=_SEALED_BOXES)
def test_open_random_sealed_envelope(route: bytes, sealed: bytes) -> None:
    env = parse_envelope(wire.encode([2, route, sealed]))
    assert isinstance(env, SealedEnvelope)
    assert (env.route_tag, env.sealed) == (route, sealed)
    with pytest.raises(DecryptionFailed):
        open_sealed(env, MEMBER)


@FAST
@given(
    padded=st.one_of(
        st.binary(max_size=300),
        st.sampled_from(BUCKETS[:2]).flatmap(lambda b: st.binary(min_size=b, max_size=b)),
        st.tuples(st.binary(max_size=255), st.integers(0, 255)).map(
            lambda t: (t[0] + bytes([t[1]])).ljust(256, b"\x00")
        ),
    )
)
def test_unpad_random_bytes(padded: bytes) -> None:
    try:
        plaintext = unpad(padded)
    except RemoteProtocolError:
        return
    # Accepted: the input was exactly plaintext, the marker, then zeros, at a bucket size.
    assert len(padded) in BUCKETS
    assert padded == plaintext + b"\x80" + bytes(len(padded) - len(plaintext) - 1)


@FAST
@given(data=st.binary(max_size=400))
def test_decrypt_keystore_random_bytes(data: bytes) -> None:
    with pytest.raises((KeystoreCorrupt, KeystoreLocked)):
        decrypt_keystore(data, "passphrase")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), mask=st.integers(1, 255))
def test_decrypt_keystore_flipped_byte(data: st.DataObject, mask: int) -> None:
    # Leave the Argon2 cost fields (bytes 9..16) alone: a change there may legitimately
    # ask for up to 1 GiB. test_keystore.py covers them with fixed values.
    i = data.draw(st.integers(0, len(_KEYSTORE) - 1).filter(lambda i: not 9 <= i < 17))
    mutated = bytearray(_KEYSTORE)
    mutated[i] ^= mask
    with pytest.raises((KeystoreCorrupt, KeystoreLocked)):
        decrypt_keystore(bytes(mutated), KEYSTORE_PASSPHRASE)
