"""p2pnet's cryptography: recipes over PyNaCl with no knobs.

Pure except for :mod:`crypto.keystore`, the one module that touches key files.
"""

from __future__ import annotations

from crypto._errors import (
    BadSignature,
    CryptoError,
    DecryptionFailed,
    KeyLengthError,
    KeystoreCorrupt,
    KeystoreLocked,
    KeystoreMissing,
)
from crypto._primitives import hash256
from crypto.groupkeys import (
    EPOCH_ID_BYTES,
    ROUTE_TAG_BYTES,
    EpochKey,
    LocalKey,
    NetworkSecret,
    random_bytes,
)
from crypto.identity import (
    Identity,
    PublicIdentity,
    is_valid_public_key,
    signing_input,
    verify_signature,
)
from crypto.keystore import (
    KdfParams,
    KeystoreContents,
    UnlockedKeystore,
    create_keystore,
    open_keystore,
    wipe,
)
from crypto.safety import SafetyNumber, qr_payload, safety_number
from crypto.stream import STREAM_HEADER_BYTES, STREAM_OVERHEAD, StreamOpener, StreamSealer

__all__ = [
    "EPOCH_ID_BYTES",
    "ROUTE_TAG_BYTES",
    "STREAM_HEADER_BYTES",
    "STREAM_OVERHEAD",
    "BadSignature",
    "CryptoError",
    "DecryptionFailed",
    "EpochKey",
    "Identity",
    "KdfParams",
    "KeyLengthError",
    "KeystoreContents",
    "KeystoreCorrupt",
    "KeystoreLocked",
    "KeystoreMissing",
    "LocalKey",
    "NetworkSecret",
    "PublicIdentity",
    "SafetyNumber",
    "StreamOpener",
    "StreamSealer",
    "UnlockedKeystore",
    "create_keystore",
    "hash256",
    "is_valid_public_key",
    "open_keystore",
    "qr_payload",
    "random_bytes",
    "safety_number",
    "signing_input",
    "verify_signature",
    "wipe",
]
