"""The raw crypto ceiling the benchmarks compare against: libsodium itself.

Calls go through PyNaCl's cffi binding with no Python wrapper (the wrappers cost about
2 µs per call in argument checks), with one reused output buffer and the signed message
pre-joined: the fastest that decrypting and verifying these envelopes can be in Python.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from nacl._sodium import ffi, lib  # type: ignore[import-not-found]

# (ciphertext, aad, nonce, signature + signed bytes, author key) per envelope
RawInput = tuple[bytes, bytes, bytes, bytes, bytes]


def raw_open_per_s(raw_inputs: Sequence[RawInput], key: bytes) -> float:
    """Decrypt and verify every input once; envelopes per second."""
    decrypt = lib.crypto_aead_xchacha20poly1305_ietf_decrypt
    verify = lib.crypto_sign_open
    out = ffi.new("unsigned char[]", 1 << 17)
    out_len = ffi.new("unsigned long long *")
    null = ffi.NULL
    t0 = time.perf_counter()
    for ciphertext, aad, nonce, signed, author in raw_inputs:
        if decrypt(out, out_len, null, ciphertext, len(ciphertext), aad, len(aad), nonce, key):
            raise AssertionError("raw decrypt failed")
        if verify(null, null, signed, len(signed), author):
            raise AssertionError("raw verify failed")
    return len(raw_inputs) / (time.perf_counter() - t0)
