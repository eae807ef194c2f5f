"""protocol.envelope: padding, group (kind 1) and sealed (kind 2) envelopes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgpack
import pytest

from crypto import BadSignature, DecryptionFailed, EpochKey, Identity, NetworkSecret, hash256
from protocol import (
    GroupEnvelope,
    LocalProtocolError,
    MissingEpochKey,
    ProtocolError,
    RemoteProtocolError,
    SealedEnvelope,
    VerifiedOp,
    open_group,
    open_sealed,
    parse_envelope,
    seal_group,
    seal_to_member,
    sign_op,
    wire,
)
from protocol.envelope import BUCKETS, MAX_ENVELOPE_BYTES, pad, unpad

AUTHOR = Identity(bytes(range(32)))
MEMBER = Identity(bytes(range(1, 33)))
STRANGER = Identity(bytes(32))
NETWORK = NetworkSecret(bytes([42]) * 32)
NET_ID = NETWORK.network_id
ROUTE = NETWORK.route_tag
EPOCH = EpochKey(bytes([5]) * 16, bytes([6]) * 32)
EPOCHS = {EPOCH.epoch_id: EPOCH}
NONCE = bytes(range(24))
OTHER_NONCE = bytes(range(24, 48))


def _op(net: bytes = NET_ID, seq: int = 1, body: dict[str, Any] | None = None) -> VerifiedOp:
    return sign_op(
        AUTHOR,
        net=net,
        seq=seq,
        lamport=seq,
        parents=[],
        time=0,
        type="note",
        body={"text": "hi"} if body is None else body,
    )


def _group(op: VerifiedOp | None = None, nonce: bytes = NONCE, route: bytes = ROUTE) -> bytes:
    return seal_group(op or _op(), epoch=EPOCH, route_tag=route, nonce=nonce)


def _open(
    data: bytes, epochs: Mapping[bytes, EpochKey] = EPOCHS, route: bytes = ROUTE
) -> VerifiedOp:
    env = parse_envelope(data)
    assert isinstance(env, GroupEnvelope)
    return open_group(env, epochs=epochs, network_id=NET_ID, route_tag=route)


def _group_bytes(route: bytes, epoch_id: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    return wire.encode([1, route, epoch_id, nonce, ciphertext])


def _encrypt_raw(padded: bytes, nonce: bytes = NONCE) -> bytes:
    """A group envelope around any plaintext, correctly encrypted under EPOCH."""
    aad = wire.encode([1, ROUTE, EPOCH.epoch_id, nonce])
    return _group_bytes(ROUTE, EPOCH.epoch_id, nonce, EPOCH.encrypt(padded, aad, nonce))


def _bucket_edges() -> Iterator[int]:
    for bucket in BUCKETS:
        yield from (bucket - 2, bucket - 1, bucket)


class TestPadding:
    def test_every_small_size(self) -> None:
        for n in range(1100):
            for filler in (b"\x00", b"\x80", b"\x01"):
                plaintext = filler * n
                padded = pad(plaintext)
                assert len(padded) == min(b for b in BUCKETS if b > n), n
                assert unpad(padded) == plaintext, n

    def test_bucket_edges(self) -> None:
        for n in _bucket_edges():
            if n >= BUCKETS[-1]:
                continue
            plaintext = b"\x00" * n
            padded = pad(plaintext)
            assert len(padded) == min(b for b in BUCKETS if b > n), n
            assert padded[n] == 0x80
            assert unpad(padded) == plaintext, n

    def test_layout(self) -> None:
        assert pad(b"abc") == b"abc\x80" + bytes(252)
        assert pad(b"x" * 255) == b"x" * 255 + b"\x80"
        assert len(pad(b"x" * 256)) == 512

    def test_largest(self) -> None:
        largest = b"\x00" * (BUCKETS[-1] - 1)
        assert unpad(pad(largest)) == largest
        with pytest.raises(LocalProtocolError):
            pad(b"\x00" * BUCKETS[-1])

    def test_buckets(self) -> None:
        assert tuple(2**n for n in range(8, 17)) == BUCKETS

    @pytest.mark.parametrize("size", [0, 1, 255, 257, 511, 1000, 65537])
    def test_unpad_rejects_non_bucket_sizes(self, size: int) -> None:
        with pytest.raises(RemoteProtocolError):
            unpad((b"\x80" + bytes(size - 1)) if size else b"")

    @pytest.mark.parametrize(
        "padded",
        [
            bytes(256),
            b"\x01" * 256,
            b"\x80" + bytes(254) + b"\x01",
            b"abc\x81" + bytes(252),
            b"\x80" * 255 + b"\x01",
        ],
        ids=["all-zero", "no-marker", "junk-after-marker", "wrong-marker", "marker-not-last"],
    )
    def test_unpad_rejects_bad_padding(self, padded: bytes) -> None:
        assert len(padded) in BUCKETS
        with pytest.raises(RemoteProtocolError):
            unpad(padded)

    def test_unpad_takes_the_last_marker(self) -> None:
        # Earlier 0x80 and 0x00 bytes belong to the plaintext.
        padded = b"abc\x80\x00\x00" + bytes(249) + b"\x80"
        assert unpad(padded) == padded[:-1]
        assert unpad(b"\x80" * 256) == b"\x80" * 255


class TestGroupEnvelope:
    def test_round_trip(self) -> None:
        op = _op()
        data = _group(op)
        env = parse_envelope(data)
        assert isinstance(env, GroupEnvelope)
        assert env.route_tag == ROUTE
        assert env.epoch_id == EPOCH.epoch_id
        assert env.nonce == NONCE
        assert env.raw == data
        assert env.envelope_id == hash256(data)
        opened = open_group(env, epochs=EPOCHS, network_id=NET_ID, route_tag=ROUTE)
        assert opened == op
        assert opened.signed == op.signed

    def test_wire_layout(self) -> None:
        data = _group()
        kind, route, epoch_id, nonce, ciphertext = wire.decode(data, max_size=MAX_ENVELOPE_BYTES)
        assert (kind, route, epoch_id, nonce) == (1, ROUTE, EPOCH.epoch_id, NONCE)
        assert len(ciphertext) - 16 in BUCKETS
        env = parse_envelope(data)
        assert isinstance(env, GroupEnvelope)
        assert env.aad == wire.encode([1, ROUTE, EPOCH.epoch_id, NONCE])
        # The ciphertext is the AEAD of the padded signed op under that header.
        assert EPOCH.decrypt(ciphertext, env.aad, NONCE) == pad(_op().signed)

    def test_sizes_only_leak_the_bucket(self) -> None:
        short = _group(_op(body={}))
        longer = _group(_op(body={"text": "x" * 20}))
        assert len(short) == len(longer)
        big = _group(_op(body={"text": "x" * 300}))
        assert len(big) > len(short)

    def test_largest_op_fits(self) -> None:
        op = _op(body={"blob": b"x" * 59_500})
        data = _group(op)
        assert len(data) <= MAX_ENVELOPE_BYTES
        assert _open(data) == op

    def test_missing_epoch_key(self) -> None:
        data = _group()
        with pytest.raises(MissingEpochKey):
            _open(data, epochs={})
        other = EpochKey(bytes([7]) * 16, EPOCH.key)
        with pytest.raises(MissingEpochKey):
            _open(data, epochs={other.epoch_id: other})

    def test_missing_epoch_key_is_not_blamed_on_the_peer(self) -> None:
        assert issubclass(MissingEpochKey, ProtocolError)
        assert not issubclass(MissingEpochKey, RemoteProtocolError)

    def test_wrong_key_bytes_for_the_same_epoch_id(self) -> None:
        impostor = EpochKey(EPOCH.epoch_id, bytes([7]) * 32)
        with pytest.raises(DecryptionFailed):
            _open(_group(), epochs={EPOCH.epoch_id: impostor})

    def test_op_from_another_network(self) -> None:
        foreign = _op(net=NetworkSecret(bytes(32)).network_id)
        with pytest.raises(RemoteProtocolError):
            _open(_group(foreign))

    def test_ciphertext_under_another_nonce(self) -> None:
        first = parse_envelope(_group(nonce=NONCE))
        second = parse_envelope(_group(_op(seq=2), nonce=OTHER_NONCE))
        assert isinstance(first, GroupEnvelope)
        assert isinstance(second, GroupEnvelope)
        moved = _group_bytes(ROUTE, EPOCH.epoch_id, second.nonce, first.ciphertext)
        with pytest.raises(DecryptionFailed):
            _open(moved)

    def test_envelope_of_another_network(self) -> None:
        other_route = NetworkSecret(bytes(32)).route_tag
        data = _group(route=other_route)
        with pytest.raises(RemoteProtocolError):
            _open(data)
        assert _open(data, route=other_route) == _op()

    def test_ciphertext_under_another_route_tag(self) -> None:
        env = parse_envelope(_group())
        assert isinstance(env, GroupEnvelope)
        other_route = NetworkSecret(bytes(32)).route_tag
        moved = _group_bytes(other_route, env.epoch_id, NONCE, env.ciphertext)
        # Refused as another network's envelope...
        with pytest.raises(RemoteProtocolError):
            _open(moved)
        # ...and by the AEAD, even for a node that takes that route tag for its own.
        with pytest.raises(DecryptionFailed):
            _open(moved, route=other_route)

    def test_ciphertext_under_another_epoch_id(self) -> None:
        # Even when the other epoch id maps to the very same key bytes.
        env = parse_envelope(_group())
        assert isinstance(env, GroupEnvelope)
        other_id = bytes([9]) * 16
        moved = _group_bytes(ROUTE, other_id, NONCE, env.ciphertext)
        same_key = {other_id: EpochKey(other_id, EPOCH.key)}
        with pytest.raises(DecryptionFailed):
            _open(moved, epochs=same_key)

    def test_ciphertexts_swapped_between_envelopes(self) -> None:
        a = parse_envelope(_group(_op(seq=1), nonce=NONCE))
        b = parse_envelope(_group(_op(seq=2), nonce=OTHER_NONCE))
        assert isinstance(a, GroupEnvelope)
        assert isinstance(b, GroupEnvelope)
        with pytest.raises(DecryptionFailed):
            _open(_group_bytes(ROUTE, EPOCH.epoch_id, a.nonce, b.ciphertext))

    def test_badly_padded_plaintext(self) -> None:
        with pytest.raises(RemoteProtocolError):
            _open(_encrypt_raw(bytes(256)))
        with pytest.raises(RemoteProtocolError):
            _open(_encrypt_raw(_op().signed.ljust(256, b"\x01")))

    def test_padded_plaintext_that_is_not_a_signed_op(self) -> None:
        for plaintext in (b"", b"\xc0", wire.encode([1, 2]), _op().signed[:-1]):
            with pytest.raises(RemoteProtocolError):
                _open(_encrypt_raw(pad(plaintext)))

    def test_forged_op_inside_a_valid_envelope(self) -> None:
        # A member with the epoch key cannot impersonate another author.
        op = _op()
        forged = bytearray(op.signed)
        forged[-1] ^= 0x01
        with pytest.raises(BadSignature):
            _open(_encrypt_raw(pad(bytes(forged))))

    def test_seal_refuses_bad_lengths(self) -> None:
        with pytest.raises(LocalProtocolError):
            seal_group(_op(), epoch=EPOCH, route_tag=bytes(15), nonce=NONCE)
        with pytest.raises(LocalProtocolError):
            seal_group(_op(), epoch=EPOCH, route_tag=ROUTE, nonce=bytes(23))


class TestSealedEnvelope:
    def test_round_trip(self) -> None:
        for payload in (b"", b"epoch key material", bytes(300)):
            data = seal_to_member(MEMBER.public, payload, route_tag=ROUTE)
            env = parse_envelope(data)
            assert isinstance(env, SealedEnvelope)
            assert env.route_tag == ROUTE
            assert env.raw == data
            assert env.envelope_id == hash256(data)
            assert len(env.sealed) - 48 in BUCKETS
            assert open_sealed(env, MEMBER) == payload

    def test_wire_layout(self) -> None:
        data = seal_to_member(MEMBER.public, b"payload", route_tag=ROUTE)
        kind, route, sealed = wire.decode(data, max_size=MAX_ENVELOPE_BYTES)
        assert (kind, route) == (2, ROUTE)
        assert MEMBER.unseal(sealed) == pad(b"payload")

    def test_only_the_recipient_can_open(self) -> None:
        env = parse_envelope(seal_to_member(MEMBER.public, b"for member", route_tag=ROUTE))
        assert isinstance(env, SealedEnvelope)
        for other in (STRANGER, AUTHOR):
            with pytest.raises(DecryptionFailed):
                open_sealed(env, other)

    def test_sizes_only_leak_the_bucket(self) -> None:
        a = seal_to_member(MEMBER.public, b"a", route_tag=ROUTE)
        b = seal_to_member(MEMBER.public, b"b" * 200, route_tag=ROUTE)
        assert len(a) == len(b)

    def test_badly_padded_payload(self) -> None:
        sealed = MEMBER.public.seal(bytes(256))
        data = wire.encode([2, ROUTE, sealed])
        env = parse_envelope(data)
        assert isinstance(env, SealedEnvelope)
        with pytest.raises(RemoteProtocolError):
            open_sealed(env, MEMBER)

    def test_seal_refuses_bad_input(self) -> None:
        with pytest.raises(LocalProtocolError):
            seal_to_member(MEMBER.public, b"x", route_tag=bytes(17))
        with pytest.raises(LocalProtocolError):
            seal_to_member(MEMBER.public, bytes(BUCKETS[-1]), route_tag=ROUTE)


def _malformed() -> dict[str, bytes]:
    ct = bytes(256 + 16)
    good = _group_bytes(ROUTE, EPOCH.epoch_id, NONCE, ct)
    sealed = bytes(256 + 48)
    return {
        "empty": b"",
        "empty array": b"\x90",
        "map": wire.encode({"kind": 1}),
        "bare int": b"\x01",
        "kind 0": wire.encode([0, ROUTE, EPOCH.epoch_id, NONCE, ct]),
        "kind 3": wire.encode([3, ROUTE, EPOCH.epoch_id, NONCE, ct]),
        "kind -1": wire.encode([-1, ROUTE, sealed]),
        "kind true": wire.encode([True, ROUTE, EPOCH.epoch_id, NONCE, ct]),
        "kind as str": wire.encode(["1", ROUTE, EPOCH.epoch_id, NONCE, ct]),
        "kind 1 with 3 items": wire.encode([1, ROUTE, sealed]),
        "kind 2 with 5 items": wire.encode([2, ROUTE, EPOCH.epoch_id, NONCE, ct]),
        "group with 6 items": wire.encode([1, ROUTE, EPOCH.epoch_id, NONCE, ct, b""]),
        "route tag 15 bytes": wire.encode([1, ROUTE[:15], EPOCH.epoch_id, NONCE, ct]),
        "route tag as str": wire.encode([1, "r" * 16, EPOCH.epoch_id, NONCE, ct]),
        "epoch id 17 bytes": wire.encode([1, ROUTE, EPOCH.epoch_id + b"x", NONCE, ct]),
        "nonce 23 bytes": wire.encode([1, ROUTE, EPOCH.epoch_id, NONCE[:23], ct]),
        "ciphertext not bucket + tag": wire.encode([1, ROUTE, EPOCH.epoch_id, NONCE, ct[:-1]]),
        "ciphertext is a bare bucket": wire.encode([1, ROUTE, EPOCH.epoch_id, NONCE, ct[:256]]),
        "ciphertext as str": wire.encode([1, ROUTE, EPOCH.epoch_id, NONCE, "c" * 272]),
        "sealed not bucket + overhead": wire.encode([2, ROUTE, sealed[:-1]]),
        "sealed route 17 bytes": wire.encode([2, ROUTE + b"x", sealed]),
        "array16 header": b"\xdc\x00\x05" + good[1:],
        "kind as uint8": b"\x95\xcc\x01" + good[2:],
        "route tag as bin16": b"\x95\x01\xc5\x00\x10" + good[4:],
        "ciphertext as bin32": good[:64] + b"\xc6" + len(ct).to_bytes(4, "big") + ct,
        "trailing byte": good + b"\x00",
        "truncated": good[:-1],
        "float kind": msgpack.packb([1.0, ROUTE, EPOCH.epoch_id, NONCE, ct]),
        "ext item": msgpack.packb([1, ROUTE, EPOCH.epoch_id, NONCE, msgpack.ExtType(1, ct)]),
        "oversize": wire.encode([1, ROUTE, EPOCH.epoch_id, NONCE, bytes(MAX_ENVELOPE_BYTES)]),
    }


MALFORMED = _malformed()


class TestParseEnvelope:
    def test_baseline_is_well_formed(self) -> None:
        # The malformed cases below are each one change away from this.
        env = parse_envelope(_group_bytes(ROUTE, EPOCH.epoch_id, NONCE, bytes(272)))
        assert isinstance(env, GroupEnvelope)
        assert isinstance(parse_envelope(wire.encode([2, ROUTE, bytes(304)])), SealedEnvelope)

    @pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
    def test_malformed(self, data: bytes) -> None:
        with pytest.raises(RemoteProtocolError):
            parse_envelope(data)

    def test_every_bucket_size_parses(self) -> None:
        for bucket in BUCKETS:
            env = parse_envelope(_group_bytes(ROUTE, EPOCH.epoch_id, NONCE, bytes(bucket + 16)))
            assert isinstance(env, GroupEnvelope)
            assert len(env.ciphertext) == bucket + 16
            sealed = parse_envelope(wire.encode([2, ROUTE, bytes(bucket + 48)]))
            assert isinstance(sealed, SealedEnvelope)
