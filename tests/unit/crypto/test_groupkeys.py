"""crypto.groupkeys: the network secret, its derived values, epoch keys, the profile key."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings

from crypto import (
    EPOCH_ID_BYTES,
    ROUTE_TAG_BYTES,
    CryptoError,
    DecryptionFailed,
    EpochKey,
    KeyLengthError,
    LocalKey,
    NetworkSecret,
    random_bytes,
)
from tests.strategies import bytes_of

SECRET = bytes(range(32))
NONCE = bytes(range(24))


def _derived(ns: NetworkSecret) -> dict[str, bytes]:
    return {
        "network_id": ns.network_id,
        "route_tag": ns.route_tag,
        "psk": ns.psk,
        "lan_token(0)": ns.lan_token(0),
        "lan_token(1)": ns.lan_token(1),
    }


def _assert_hidden(text: str, secret: bytes) -> None:
    assert secret.hex() not in text
    assert secret.hex().upper() not in text
    assert repr(secret)[2:-1] not in text


class TestNetworkSecret:
    def test_lengths(self) -> None:
        ns = NetworkSecret(SECRET)
        assert len(ns.network_id) == 16
        assert len(ns.route_tag) == ROUTE_TAG_BYTES
        assert len(ns.psk) == 32
        assert len(ns.lan_token(7)) == 16

    @settings(max_examples=50)
    @given(secret=bytes_of(32))
    def test_derived_values_are_distinct_from_each_other_and_the_secret(
        self, secret: bytes
    ) -> None:
        values = _derived(NetworkSecret(secret))
        # Compare 16-byte prefixes too: no value may be a prefix or slice of another.
        prefixes = {v[:16] for v in values.values()}
        assert len(prefixes) == len(values)
        for name, value in values.items():
            assert value not in secret, name
            assert secret[:16] not in value, name

    def test_deterministic_for_the_same_secret(self) -> None:
        assert _derived(NetworkSecret(SECRET)) == _derived(NetworkSecret(bytes(SECRET)))

    def test_different_secrets_give_different_values(self) -> None:
        a, b = _derived(NetworkSecret(SECRET)), _derived(NetworkSecret(bytes(32)))
        for name in a:
            assert a[name] != b[name], name

    def test_lan_tokens_differ_across_periods(self) -> None:
        ns = NetworkSecret(SECRET)
        periods = [*range(200), 2**32, 2**63, 2**64 - 1]
        assert len({ns.lan_token(p) for p in periods}) == len(periods)

    @pytest.mark.parametrize("period", [-1, 2**64, 2**80])
    def test_lan_token_rejects_periods_out_of_range(self, period: int) -> None:
        with pytest.raises(ValueError, match="period"):
            NetworkSecret(SECRET).lan_token(period)

    def test_lan_token_largest_period(self) -> None:
        ns = NetworkSecret(SECRET)
        assert ns.lan_token(2**64 - 1) != ns.lan_token(0)

    def test_derivation_is_stable(self) -> None:
        # Every member's node must derive the same values from the same secret, across
        # versions: pin the construction (keyed, personalised BLAKE2b-256).
        def blake(person: bytes, data: bytes = b"") -> bytes:
            return hashlib.blake2b(data, digest_size=32, key=SECRET, person=person).digest()

        ns = NetworkSecret(SECRET)
        assert ns.network_id == blake(b"p2pnet-netid")[:16]
        assert ns.route_tag == blake(b"p2pnet-route")[:16]
        assert ns.psk == blake(b"p2pnet-psk")
        assert ns.lan_token(5) == blake(b"p2pnet-lan", (5).to_bytes(8, "big"))[:16]

    def test_generate(self) -> None:
        a, b = NetworkSecret.generate(), NetworkSecret.generate()
        assert len(a.secret) == 32
        assert a.secret != b.secret
        assert a.network_id != b.network_id

    def test_repr_hides_the_secret(self) -> None:
        ns = NetworkSecret(SECRET)
        for text in (repr(ns), str(ns), repr({"k": ns})):
            _assert_hidden(text, SECRET)
            _assert_hidden(text, ns.psk)


class TestEpochKey:
    def test_round_trip(self) -> None:
        epoch = EpochKey(bytes(16), SECRET)
        ct = epoch.encrypt(b"plaintext", b"aad", NONCE)
        assert len(ct) == len(b"plaintext") + 16
        assert epoch.decrypt(ct, b"aad", NONCE) == b"plaintext"

    def test_wrong_aad_nonce_or_key_fails(self) -> None:
        epoch = EpochKey(bytes(16), SECRET)
        ct = epoch.encrypt(b"plaintext", b"aad", NONCE)
        with pytest.raises(DecryptionFailed):
            epoch.decrypt(ct, b"aaD", NONCE)
        with pytest.raises(DecryptionFailed):
            epoch.decrypt(ct, b"aad", bytes(24))
        with pytest.raises(DecryptionFailed):
            EpochKey(bytes(16), bytes(32)).decrypt(ct, b"aad", NONCE)

    def test_every_tampered_byte_fails(self) -> None:
        epoch = EpochKey(bytes(16), SECRET)
        ct = epoch.encrypt(b"plaintext", b"aad", NONCE)
        for i in range(len(ct)):
            tampered = bytearray(ct)
            tampered[i] ^= 0x80
            with pytest.raises(DecryptionFailed):
                epoch.decrypt(bytes(tampered), b"aad", NONCE)

    @pytest.mark.parametrize("length", [0, 12, 23, 25])
    def test_nonce_length(self, length: int) -> None:
        epoch = EpochKey(bytes(16), SECRET)
        with pytest.raises(KeyLengthError):
            epoch.encrypt(b"p", b"", bytes(length))
        # Decryption failures stay opaque, whatever the cause.
        with pytest.raises(DecryptionFailed):
            epoch.decrypt(bytes(32), b"", bytes(length))

    def test_short_ciphertext_fails_cleanly(self) -> None:
        with pytest.raises(DecryptionFailed):
            EpochKey(bytes(16), SECRET).decrypt(b"short", b"", NONCE)

    def test_generate(self) -> None:
        a, b = EpochKey.generate(), EpochKey.generate()
        assert len(a.epoch_id) == EPOCH_ID_BYTES
        assert len(a.key) == 32
        assert (a.epoch_id, a.key) != (b.epoch_id, b.key)

    def test_repr_shows_the_id_not_the_key(self) -> None:
        epoch = EpochKey(bytes(range(100, 116)), SECRET)
        assert epoch.epoch_id.hex() in repr(epoch)
        for text in (repr(epoch), str(epoch), repr([epoch])):
            _assert_hidden(text, SECRET)


class TestLocalKey:
    def test_round_trip(self) -> None:
        key = LocalKey(SECRET)
        for plaintext in (b"", b"row", bytes(5000)):
            assert key.open(key.seal(plaintext, b"table/1"), b"table/1") == plaintext

    def test_nonce_is_fresh(self) -> None:
        key = LocalKey(SECRET)
        a, b = key.seal(b"same", b"aad"), key.seal(b"same", b"aad")
        assert a != b
        assert a[:24] != b[:24]

    def test_aad_mismatch_fails(self) -> None:
        key = LocalKey(SECRET)
        sealed = key.seal(b"value", b"members/alice")
        with pytest.raises(DecryptionFailed):
            key.open(sealed, b"members/bob")
        with pytest.raises(DecryptionFailed):
            key.open(sealed, b"")

    def test_other_key_fails(self) -> None:
        sealed = LocalKey(SECRET).seal(b"value", b"aad")
        with pytest.raises(DecryptionFailed):
            LocalKey(bytes(32)).open(sealed, b"aad")

    def test_every_tampered_byte_fails(self) -> None:
        key = LocalKey(SECRET)
        sealed = key.seal(b"value", b"aad")
        for i in range(len(sealed)):
            tampered = bytearray(sealed)
            tampered[i] ^= 0x01
            with pytest.raises(DecryptionFailed):
                key.open(bytes(tampered), b"aad")

    @pytest.mark.parametrize("length", [0, 1, 23, 24, 39])
    def test_truncated_fails_cleanly(self, length: int) -> None:
        key = LocalKey(SECRET)
        sealed = key.seal(b"value", b"aad")
        with pytest.raises(DecryptionFailed):
            key.open(sealed[:length], b"aad")

    def test_opener_opens_many_values_like_open(self) -> None:
        key = LocalKey(SECRET)
        open_ = key.opener()
        for plaintext in (b"", b"row", bytes(5000), b"after a larger one"):
            sealed = key.seal(plaintext, b"table/1")
            assert open_(sealed, b"table/1") == plaintext
            with pytest.raises(DecryptionFailed):
                open_(sealed, b"table/2")
            with pytest.raises(DecryptionFailed):
                LocalKey(bytes(32)).opener()(sealed, b"table/1")

    def test_index(self) -> None:
        key = LocalKey(SECRET)
        assert key.index(b"alice") == LocalKey(bytes(SECRET)).index(b"alice")
        assert len(key.index(b"alice")) == 16
        assert key.index(b"alice") != key.index(b"bob")
        assert key.index(b"alice") != LocalKey(bytes(32)).index(b"alice")
        assert b"alice" not in key.index(b"alice")

    def test_repr_hides_the_key(self) -> None:
        key = LocalKey(SECRET)
        for text in (repr(key), str(key), repr((key,))):
            _assert_hidden(text, SECRET)


@pytest.mark.parametrize(
    "make",
    [
        lambda: NetworkSecret(bytes(31)),
        lambda: NetworkSecret(bytes(33)),
        lambda: NetworkSecret(b""),
        lambda: EpochKey(bytes(15), bytes(32)),
        lambda: EpochKey(bytes(17), bytes(32)),
        lambda: EpochKey(bytes(16), bytes(31)),
        lambda: EpochKey(bytes(16), bytes(33)),
        lambda: LocalKey(bytes(16)),
        lambda: LocalKey(bytes(64)),
        lambda: LocalKey("k" * 32),
        lambda: NetworkSecret(None),
    ],
)
def test_key_length_error(make: Callable[[], object]) -> None:
    with pytest.raises(KeyLengthError) as info:
        make()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CryptoError)


@pytest.mark.parametrize(
    "make",
    [
        lambda raw: NetworkSecret(raw(SECRET)),
        lambda raw: EpochKey(raw(bytes(16)), raw(SECRET)),
        lambda raw: LocalKey(raw(SECRET)),
    ],
    ids=["NetworkSecret", "EpochKey", "LocalKey"],
)
def test_bytearray_key_material_is_copied_or_refused(
    make: Callable[[type[bytes] | type[bytearray]], object],
) -> None:
    # A frozen key object must not hold mutable key material (the caller could change
    # the key under it, and the object would be unhashable): build it from bytes, or
    # refuse with KeyLengthError.
    try:
        key = make(bytearray)
    except KeyLengthError:
        return
    from_bytes = make(bytes)
    assert key == from_bytes
    for f in dataclasses.fields(key):  # type: ignore[arg-type]
        assert type(getattr(key, f.name)) is bytes, f.name
    assert hash(key) == hash(from_bytes)


def test_random_bytes() -> None:
    assert len(random_bytes(0)) == 0
    assert len(random_bytes(24)) == 24
    assert random_bytes(32) != random_bytes(32)


@settings(max_examples=50)
@given(key=bytes_of(32))
def test_an_epoch_id_is_bound_to_its_key(key: bytes) -> None:
    epoch = EpochKey(EpochKey.id_for(key), key)
    assert epoch.id_matches
    assert (
        EpochKey.id_for(key)
        == hashlib.blake2b(key, digest_size=32, person=b"p2pnet-epoch-id").digest()[:16]
    )
    other = bytes([key[0] ^ 1]) + key[1:]
    assert not EpochKey(epoch.epoch_id, other).id_matches  # another key, the same id


def test_generated_epoch_keys_carry_their_own_id() -> None:
    keys = [EpochKey.generate() for _ in range(20)]
    assert all(k.id_matches for k in keys)
    assert len({k.epoch_id for k in keys}) == 20
    with pytest.raises(KeyLengthError):
        EpochKey.id_for(b"short")
