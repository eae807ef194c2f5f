"""The keystore: a member's identity, profile key and network secrets in one file.

This is the only module of ``crypto`` that touches files (STYLE.md rule 5); the format
functions ``encrypt_keystore``/``decrypt_keystore`` are pure and tested on bytes.

File format (all integers big-endian)::

    magic      8  b"P2PNETKS"
    version    1  0x01
    opslimit   4  Argon2id passes
    memlimit   4  Argon2id memory in KiB
    salt      16  random, new on every passphrase change
    nonce     24  random, new on every write
    ciphertext    XChaCha20-Poly1305(key, nonce, contents, aad = the 57 header bytes)

``key = Argon2id(NFC(passphrase), salt, opslimit, memlimit)``. The contents are msgpack
``[1, identity_seed, profile_key, [[network_id, network_secret], ...]]``.

Security notes:
- A wrong passphrase and a tampered ciphertext are indistinguishable by design; both
  raise :class:`KeystoreLocked`. A file too damaged to parse raises
  :class:`KeystoreCorrupt`. Neither changes anything on disk.
- Writes create a new file with mode 0600 (never chmod after the fact), fsync it and
  atomically rename it over the old one, so a crash leaves the old or the new keystore.
- :func:`wipe` overwrites the file with random bytes before unlinking it. On SSDs and
  copy-on-write file systems the old blocks may survive; docs/threat-model.md says so.
- KDF parameters read from a file are bounded, so a planted file cannot make unlock
  allocate gigabytes.
"""

from __future__ import annotations

import os
import struct
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import msgpack
import nacl.pwhash

from crypto._errors import (
    CryptoError,
    DecryptionFailed,
    KeystoreCorrupt,
    KeystoreLocked,
    KeystoreMissing,
)
from crypto._primitives import KEY_BYTES, XNONCE_BYTES, aead_decrypt, aead_encrypt
from crypto.groupkeys import LocalKey, NetworkSecret, random_bytes
from crypto.identity import Identity

__all__ = [
    "KdfParams",
    "KeystoreContents",
    "UnlockedKeystore",
    "create_keystore",
    "decrypt_keystore",
    "encrypt_keystore",
    "open_keystore",
    "wipe",
]

_MAGIC = b"P2PNETKS"
_VERSION = 1
_HEADER = struct.Struct(">8sBII16s24s")
_SALT_BYTES = 16
_MAX_FILE = 1 << 20
_MAX_NETWORKS = 4096


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost. The default is libsodium's "moderate" (3 passes, 256 MiB)."""

    opslimit: int = 3
    memlimit_kib: int = 256 * 1024

    # Bounds for parameters read from a file: up to 1 GiB and 16 passes, far above any
    # default and far below a denial of service.
    MIN_OPS = 1
    MAX_OPS = 16
    MIN_MEM_KIB = 8
    MAX_MEM_KIB = 1024 * 1024

    def __post_init__(self) -> None:
        if not (self.MIN_OPS <= self.opslimit <= self.MAX_OPS) or not (
            self.MIN_MEM_KIB <= self.memlimit_kib <= self.MAX_MEM_KIB
        ):
            raise ValueError("Argon2id parameters out of range")

    @classmethod
    def insecure_for_tests(cls) -> KdfParams:
        """The cheapest parameters libsodium allows. Tests only: offers no protection."""
        return cls(opslimit=1, memlimit_kib=8)


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return bytes(
        nacl.pwhash.argon2id.kdf(
            KEY_BYTES,
            secret,
            salt,
            opslimit=params.opslimit,
            memlimit=params.memlimit_kib * 1024,
        )
    )


@dataclass(frozen=True, slots=True)
class KeystoreContents:
    """What the keystore protects."""

    identity: Identity
    profile_key: LocalKey
    networks: Mapping[bytes, NetworkSecret] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def generate(cls) -> KeystoreContents:
        """A new identity and profile key, no networks yet."""
        return cls(Identity.generate(), LocalKey.generate())

    def with_network(self, secret: NetworkSecret) -> KeystoreContents:
        nets = dict(self.networks)
        nets[secret.network_id] = secret
        return KeystoreContents(self.identity, self.profile_key, MappingProxyType(nets))

    def without_network(self, network_id: bytes) -> KeystoreContents:
        nets = {k: v for k, v in self.networks.items() if k != network_id}
        return KeystoreContents(self.identity, self.profile_key, MappingProxyType(nets))

    def _pack(self) -> bytes:
        nets = sorted([nid, s.secret] for nid, s in self.networks.items())
        return msgpack.packb(
            [_VERSION, self.identity.seed, self.profile_key.key, nets], use_bin_type=True
        )

    @classmethod
    def _unpack(cls, data: bytes) -> KeystoreContents:
        try:
            obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
            version, seed, profile_key, nets = obj
            if version != _VERSION or not isinstance(nets, list) or len(nets) > _MAX_NETWORKS:
                raise ValueError
            secrets = {}
            for nid, secret in nets:
                ns = NetworkSecret(secret)
                if ns.network_id != nid:
                    raise ValueError
                secrets[nid] = ns
            return cls(Identity(seed), LocalKey(profile_key), MappingProxyType(secrets))
        except (ValueError, TypeError, CryptoError, msgpack.UnpackException):
            raise KeystoreCorrupt("the keystore contents are damaged") from None


def encrypt_keystore(
    contents: KeystoreContents, key: bytes, *, salt: bytes, params: KdfParams, nonce: bytes
) -> bytes:
    """Serialise and encrypt ``contents`` under an already derived ``key``."""
    header = _HEADER.pack(_MAGIC, _VERSION, params.opslimit, params.memlimit_kib, salt, nonce)
    return header + aead_encrypt(key, nonce, contents._pack(), header)


def _parse_header(blob: bytes) -> tuple[KdfParams, bytes, bytes]:
    if len(blob) < _HEADER.size + 16 or len(blob) > _MAX_FILE:
        raise KeystoreCorrupt("not a p2pnet keystore (wrong size)")
    magic, version, ops, mem, salt, nonce = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != _VERSION:
        raise KeystoreCorrupt("not a p2pnet keystore, or from a newer version")
    try:
        params = KdfParams(ops, mem)
    except ValueError:
        raise KeystoreCorrupt("the keystore's key-derivation settings are invalid") from None
    return params, salt, nonce


def decrypt_keystore(blob: bytes, passphrase: str) -> tuple[KeystoreContents, bytes]:
    """Open a keystore file's bytes; returns the contents and the derived key.

    Raises:
        KeystoreCorrupt: the bytes are not a well-formed keystore.
        KeystoreLocked: wrong passphrase (or tampered ciphertext).
    """
    params, salt, _nonce = _parse_header(blob)
    key = _derive(passphrase, salt, params)
    return _open_with_key(blob, key), key


def _open_with_key(blob: bytes, key: bytes) -> KeystoreContents:
    header = blob[: _HEADER.size]
    nonce = header[-XNONCE_BYTES:]
    try:
        plaintext = aead_decrypt(key, nonce, blob[_HEADER.size :], header)
    except DecryptionFailed:
        raise KeystoreLocked("wrong passphrase, or the keystore was altered") from None
    return KeystoreContents._unpack(plaintext)


def _atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to a new 0600 file, fsync it, and rename it onto ``path``.

    With ``exclusive``, a hard link publishes it instead, which fails if ``path`` exists.
    """
    tmp = path.with_name(f".{path.name}.{random_bytes(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:
                # File systems without hard links (FAT, exFAT on a USB stick): fall back
                # to a rename, after the existence check create_keystore already made.
                if path.exists():
                    raise FileExistsError(f"a keystore already exists at {path}") from None
                os.replace(tmp, path)
            else:
                tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(slots=True)
class UnlockedKeystore:
    """An open keystore: the contents plus the derived key, to save changes cheaply."""

    path: Path
    contents: KeystoreContents
    _key: bytes = field(repr=False)
    _salt: bytes = field(repr=False)
    _params: KdfParams

    def save(self, contents: KeystoreContents, *, _create: bool = False) -> None:
        """Atomically replace the file with ``contents`` (same passphrase)."""
        blob = encrypt_keystore(
            contents,
            self._key,
            salt=self._salt,
            params=self._params,
            nonce=random_bytes(XNONCE_BYTES),
        )
        _atomic_write(self.path, blob, exclusive=_create)
        self.contents = contents

    def change_passphrase(self, new_passphrase: str, params: KdfParams | None = None) -> None:
        """Re-encrypt under a new passphrase with a new salt (atomic)."""
        new_params = params or self._params
        salt = random_bytes(_SALT_BYTES)
        key = _derive(new_passphrase, salt, new_params)
        blob = encrypt_keystore(
            self.contents, key, salt=salt, params=new_params, nonce=random_bytes(XNONCE_BYTES)
        )
        _atomic_write(self.path, blob)
        self._key, self._salt, self._params = key, salt, new_params

    def lock(self) -> None:
        """Forget the derived key (best effort: Python cannot zero immutable bytes)."""
        self._key = b""


def create_keystore(
    path: Path,
    contents: KeystoreContents,
    passphrase: str,
    *,
    params: KdfParams | None = None,
) -> UnlockedKeystore:
    """Write a new keystore. Refuses to overwrite an existing file.

    Raises:
        FileExistsError: there is already a keystore at ``path``.
    """
    params = params or KdfParams()
    if path.exists():  # fail before the costly derivation; the link below is the real guard
        raise FileExistsError(f"a keystore already exists at {path}")
    salt = random_bytes(_SALT_BYTES)
    handle = UnlockedKeystore(path, contents, _derive(passphrase, salt, params), salt, params)
    handle.save(contents, _create=True)
    return handle


def open_keystore(path: Path, passphrase: str) -> UnlockedKeystore:
    """Read and decrypt the keystore at ``path``. Changes nothing on disk.

    Raises:
        KeystoreMissing, KeystoreCorrupt, KeystoreLocked.
    """
    try:
        with open(path, "rb") as fh:
            blob = fh.read(_MAX_FILE + 1)
    except FileNotFoundError:
        raise KeystoreMissing(f"no keystore at {path}") from None
    params, salt, _ = _parse_header(blob)
    contents, key = decrypt_keystore(blob, passphrase)
    return UnlockedKeystore(path, contents, key, salt, params)


def wipe(path: Path) -> None:
    """Overwrite the keystore with random bytes, fsync, and remove it. Idempotent."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        os.write(fd, random_bytes(max(size, 1)))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
