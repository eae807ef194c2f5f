"""The direct libsodium AEAD calls: the same bytes as PyNaCl's wrapper, and every bad
input is DecryptionFailed or KeyLengthError, never a cffi error or a crash."""

from __future__ import annotations

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto._errors import DecryptionFailed, KeyLengthError
from crypto._primitives import aead_decrypt, aead_encrypt, aead_opener

KEY = bytes(range(32))
NONCE = bytes(range(24))


@given(st.binary(max_size=2000), st.binary(max_size=200))
def test_matches_pynacl_both_ways(plaintext: bytes, aad: bytes) -> None:
    ours = aead_encrypt(KEY, NONCE, plaintext, aad)
    theirs = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, NONCE, KEY)
    assert ours == theirs
    assert aead_decrypt(KEY, NONCE, ours, aad) == plaintext
    assert aead_decrypt(KEY, NONCE, memoryview(ours), bytearray(aad)) == plaintext


@given(st.binary(max_size=300), st.integers(min_value=0), st.integers(0, 7))
def test_any_flipped_bit_fails(plaintext: bytes, where: int, bit: int) -> None:
    sealed = bytearray(aead_encrypt(KEY, NONCE, plaintext, b"aad"))
    sealed[where % len(sealed)] ^= 1 << bit
    with pytest.raises(DecryptionFailed):
        aead_decrypt(KEY, NONCE, bytes(sealed), b"aad")


@pytest.mark.parametrize(
    ("key", "nonce", "ciphertext", "aad"),
    [
        (KEY[:31], NONCE, bytes(16), b""),
        (KEY, NONCE[:23], bytes(16), b""),
        (KEY, NONCE, bytes(15), b""),
        (KEY, NONCE, b"", b""),
        ("k" * 32, NONCE, bytes(16), b""),
        (KEY, NONCE, "text" * 8, b""),
        (KEY, NONCE, bytes(16), None),
        (KEY, NONCE, bytes(40), b"wrong aad"),
    ],
)
def test_bad_decrypt_input_is_decryption_failed(
    key: object, nonce: object, ciphertext: object, aad: object
) -> None:
    with pytest.raises(DecryptionFailed):
        aead_decrypt(key, nonce, ciphertext, aad)  # type: ignore[arg-type]


def test_empty_plaintext_round_trips() -> None:
    assert aead_decrypt(KEY, NONCE, aead_encrypt(KEY, NONCE, b"", b""), b"") == b""


def test_wrong_key_length_on_encrypt_is_refused() -> None:
    with pytest.raises(KeyLengthError):
        aead_encrypt(KEY[:16], NONCE, b"x", b"")
    with pytest.raises(KeyLengthError):
        aead_encrypt(KEY, NONCE[:12], b"x", b"")


@given(st.lists(st.tuples(st.binary(max_size=9000), st.binary(max_size=64)), max_size=8))
def test_opener_opens_what_aead_decrypt_opens(values: list[tuple[bytes, bytes]]) -> None:
    open_ = aead_opener(KEY)  # one buffer for every value, grown past 4 KiB when needed
    for plaintext, aad in values:
        assert open_(NONCE + aead_encrypt(KEY, NONCE, plaintext, aad), aad) == plaintext


@pytest.mark.parametrize(
    ("sealed", "aad"),
    [
        (NONCE + bytes(15), b""),
        (b"", b""),
        (bytearray(NONCE + bytes(16)), b""),
        ("text" * 10, b""),
        (NONCE + bytes(16), None),
        (NONCE + aead_encrypt(KEY, NONCE, b"x", b"aad"), b"other aad"),
    ],
)
def test_opener_refuses_bad_input_as_decryption_failed(sealed: object, aad: object) -> None:
    with pytest.raises(DecryptionFailed):
        aead_opener(KEY)(sealed, aad)  # type: ignore[arg-type]


def test_opener_checks_the_key_length() -> None:
    with pytest.raises(KeyLengthError):
        aead_opener(KEY[:31])
