"""crypto.keystore: the one encrypted file that holds a member's keys.

Every test uses ``KdfParams.insecure_for_tests()``: the default costs 256 MiB per unlock.
"""

from __future__ import annotations

import os
import stat
import struct
import unicodedata
from pathlib import Path

import msgpack
import nacl.pwhash
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import (
    Identity,
    KdfParams,
    KeystoreContents,
    KeystoreCorrupt,
    KeystoreLocked,
    KeystoreMissing,
    LocalKey,
    NetworkSecret,
    UnlockedKeystore,
    create_keystore,
    open_keystore,
    wipe,
)
from crypto._primitives import aead_encrypt
from crypto.keystore import decrypt_keystore, encrypt_keystore
from tests.strategies import bytes_of

PARAMS = KdfParams.insecure_for_tests()
PASSPHRASE = "correct horse battery staple"
HEADER = struct.Struct(">8sBII16s24s")
# "Freedom for everyone" in Persian. The first letter, ALEF WITH MADDA ABOVE, has a
# canonical decomposition, so NFC and NFD give different code points (and bytes).
PERSIAN = "آزادی برای همه"


def _contents(networks: int = 2) -> KeystoreContents:
    contents = KeystoreContents(Identity(bytes(range(32))), LocalKey(bytes(range(1, 33))))
    for i in range(networks):
        contents = contents.with_network(NetworkSecret(bytes([i + 7]) * 32))
    return contents


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keystore"


@pytest.fixture
def created(path: Path) -> UnlockedKeystore:
    return create_keystore(path, _contents(), PASSPHRASE, params=PARAMS)


@pytest.fixture
def no_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything runs Argon2id."""

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("Argon2id must not run for this input")

    monkeypatch.setattr(nacl.pwhash.argon2id, "kdf", refuse)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _with_header(blob: bytes, **fields: int) -> bytes:
    magic, version, ops, mem, salt, nonce = HEADER.unpack_from(blob)
    values = {"version": version, "ops": ops, "mem": mem, **fields}
    header = HEADER.pack(magic, values["version"], values["ops"], values["mem"], salt, nonce)
    return header + blob[HEADER.size :]


class TestRoundTrip:
    def test_create_then_open(self, path: Path, created: UnlockedKeystore) -> None:
        opened = open_keystore(path, PASSPHRASE)
        assert opened.contents == _contents()
        assert created.contents == _contents()
        assert len(opened.contents.networks) == 2
        for nid, secret in opened.contents.networks.items():
            assert nid == secret.network_id

    def test_empty_networks(self, path: Path) -> None:
        create_keystore(path, _contents(networks=0), PASSPHRASE, params=PARAMS)
        assert open_keystore(path, PASSPHRASE).contents == _contents(networks=0)

    def test_pure_format_round_trip(self, path: Path, created: UnlockedKeystore) -> None:
        blob = path.read_bytes()
        contents, key = decrypt_keystore(blob, PASSPHRASE)
        assert contents == _contents()
        _, _, _, _, salt, _ = HEADER.unpack_from(blob)
        changed = contents.with_network(NetworkSecret(bytes(32))).without_network(
            NetworkSecret(bytes([7]) * 32).network_id
        )
        again = encrypt_keystore(changed, key, salt=salt, params=PARAMS, nonce=bytes(24))
        assert decrypt_keystore(again, PASSPHRASE)[0] == changed

    def test_header_layout(self, path: Path, created: UnlockedKeystore) -> None:
        blob = path.read_bytes()
        magic, version, ops, mem, salt, nonce = HEADER.unpack_from(blob)
        assert (magic, version) == (b"P2PNETKS", 1)
        assert (ops, mem) == (PARAMS.opslimit, PARAMS.memlimit_kib)
        assert salt != bytes(16)
        assert nonce != bytes(24)
        # Nothing secret appears in the file.
        for secret in (_contents().identity.seed, _contents().profile_key.key):
            assert secret not in blob

    def test_save_replaces_contents(self, path: Path, created: UnlockedKeystore) -> None:
        before = path.read_bytes()
        updated = created.contents.with_network(NetworkSecret(bytes(32)))
        created.save(updated)
        assert created.contents == updated
        after = path.read_bytes()
        assert HEADER.unpack_from(after)[5] != HEADER.unpack_from(before)[5], "fresh nonce"
        assert HEADER.unpack_from(after)[4] == HEADER.unpack_from(before)[4], "same salt"
        assert open_keystore(path, PASSPHRASE).contents == updated

    def test_no_temporary_files_left(self, path: Path, created: UnlockedKeystore) -> None:
        created.save(created.contents)
        created.change_passphrase("another", PARAMS)
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    def test_contents_equality_is_meaningful(self) -> None:
        assert _contents() != _contents(networks=1)
        other = KeystoreContents(Identity(bytes(32)), _contents().profile_key)
        assert other != _contents(networks=0)


class TestPassphrase:
    def test_wrong_passphrase_is_locked_and_changes_nothing(
        self, path: Path, created: UnlockedKeystore
    ) -> None:
        before = path.read_bytes()
        for wrong in ("", "correct horse battery stapl", PASSPHRASE + " ", PASSPHRASE.upper()):
            with pytest.raises(KeystoreLocked):
                open_keystore(path, wrong)
        assert path.read_bytes() == before
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    def test_change_passphrase(self, path: Path, created: UnlockedKeystore) -> None:
        old_salt = HEADER.unpack_from(path.read_bytes())[4]
        created.change_passphrase("new passphrase")
        with pytest.raises(KeystoreLocked):
            open_keystore(path, PASSPHRASE)
        reopened = open_keystore(path, "new passphrase")
        assert reopened.contents == _contents()
        assert HEADER.unpack_from(path.read_bytes())[4] != old_salt
        # The handle keeps working under the new passphrase.
        created.save(created.contents.with_network(NetworkSecret(bytes(32))))
        assert len(open_keystore(path, "new passphrase").contents.networks) == 3

    def test_change_passphrase_with_new_params(self, path: Path, created: UnlockedKeystore) -> None:
        cheap_but_different = KdfParams(opslimit=2, memlimit_kib=16)
        created.change_passphrase("new", cheap_but_different)
        _, _, ops, mem, _, _ = HEADER.unpack_from(path.read_bytes())
        assert (ops, mem) == (2, 16)
        assert open_keystore(path, "new").contents == _contents()

    @pytest.mark.parametrize(("create_form", "open_form"), [("NFC", "NFD"), ("NFD", "NFC")])
    def test_persian_passphrase_nfc_and_nfd_both_unlock(
        self, path: Path, create_form: str, open_form: str
    ) -> None:
        created_with = unicodedata.normalize(create_form, PERSIAN)
        opened_with = unicodedata.normalize(open_form, PERSIAN)
        assert created_with != opened_with
        assert created_with.encode() != opened_with.encode()
        create_keystore(path, _contents(), created_with, params=PARAMS)
        assert open_keystore(path, opened_with).contents == _contents()
        assert open_keystore(path, created_with).contents == _contents()


class TestFileHandling:
    def test_mode_is_0600_after_create_save_and_change(self, path: Path) -> None:
        # With a permissive umask the mode must still be 0600: set at creation, never
        # left to the umask or chmod-ed afterwards.
        old_umask = os.umask(0)
        try:
            handle = create_keystore(path, _contents(), PASSPHRASE, params=PARAMS)
            assert _mode(path) == 0o600
            handle.save(handle.contents.with_network(NetworkSecret(bytes(32))))
            assert _mode(path) == 0o600
            handle.change_passphrase("other", PARAMS)
            assert _mode(path) == 0o600
        finally:
            os.umask(old_umask)

    def test_create_refuses_to_overwrite(self, path: Path, created: UnlockedKeystore) -> None:
        before = path.read_bytes()
        with pytest.raises(FileExistsError):
            create_keystore(path, _contents(networks=0), "other", params=PARAMS)
        assert path.read_bytes() == before
        assert open_keystore(path, PASSPHRASE).contents == _contents()

    def test_create_refuses_to_overwrite_any_file(self, path: Path) -> None:
        path.write_bytes(b"someone else's file")
        with pytest.raises(FileExistsError):
            create_keystore(path, _contents(), PASSPHRASE, params=PARAMS)
        assert path.read_bytes() == b"someone else's file"

    def test_create_does_not_overwrite_a_file_that_appears_late(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The up-front exists() check is only a shortcut; the write itself must refuse to
        # replace a file created in the meantime, and leave no temporary file behind.
        path.write_bytes(b"written by another process")
        with monkeypatch.context() as patch:
            patch.setattr(Path, "exists", lambda self: False)
            with pytest.raises(FileExistsError):
                create_keystore(path, _contents(), PASSPHRASE, params=PARAMS)
        assert path.read_bytes() == b"written by another process"
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    def test_open_changes_nothing_on_disk(self, path: Path, created: UnlockedKeystore) -> None:
        before_bytes, before_mtime = path.read_bytes(), path.stat().st_mtime_ns
        open_keystore(path, PASSPHRASE)
        assert path.read_bytes() == before_bytes
        assert path.stat().st_mtime_ns == before_mtime
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    def test_missing(self, path: Path) -> None:
        with pytest.raises(KeystoreMissing) as info:
            open_keystore(path, PASSPHRASE)
        assert isinstance(info.value, FileNotFoundError)

    def test_wipe_removes_and_is_idempotent(self, path: Path, created: UnlockedKeystore) -> None:
        wipe(path)
        assert not path.exists()
        wipe(path)
        assert not path.exists()
        with pytest.raises(KeystoreMissing):
            open_keystore(path, PASSPHRASE)

    def test_wipe_of_nothing(self, tmp_path: Path) -> None:
        wipe(tmp_path / "never-existed")
        assert list(tmp_path.iterdir()) == []

    def test_wipe_overwrites_before_unlinking(self, path: Path, created: UnlockedKeystore) -> None:
        # A second hard link keeps the inode alive, so we can see what wipe left in it.
        before = path.read_bytes()
        witness = path.with_name("witness")
        os.link(path, witness)
        wipe(path)
        assert not path.exists()
        left = witness.read_bytes()
        assert len(left) >= len(before)
        assert left[: len(before)] != before
        assert b"P2PNETKS" not in left

    def test_repr_of_contents_hides_every_secret(self) -> None:
        contents = _contents()
        text = repr(contents) + str(contents)
        secrets = [contents.identity.seed, contents.profile_key.key]
        secrets += [ns.secret for ns in contents.networks.values()]
        for secret in secrets:
            assert secret.hex() not in text
            assert repr(secret)[2:-1] not in text

    def test_repr_hides_the_derived_key(self, created: UnlockedKeystore) -> None:
        text = repr(created)
        key = created._key
        assert len(key) == 32
        assert key.hex() not in text
        assert repr(key)[2:-1] not in text
        assert _contents().identity.seed.hex() not in text
        assert _contents().profile_key.key.hex() not in text


class TestDamagedFiles:
    def test_truncated_file(self, path: Path, created: UnlockedKeystore) -> None:
        blob = path.read_bytes()
        for cut in range(len(blob)):
            path.write_bytes(blob[:cut])
            with pytest.raises((KeystoreCorrupt, KeystoreLocked)):
                open_keystore(path, PASSPHRASE)

    def test_short_files_are_corrupt(self, path: Path, created: UnlockedKeystore) -> None:
        blob = path.read_bytes()
        for cut in (0, 8, HEADER.size, HEADER.size + 15):
            with pytest.raises(KeystoreCorrupt):
                decrypt_keystore(blob[:cut], PASSPHRASE)

    def test_garbage_file(self, path: Path) -> None:
        path.write_bytes(bytes(range(256)) * 4)
        with pytest.raises(KeystoreCorrupt):
            open_keystore(path, PASSPHRASE)

    def test_every_flipped_byte(self, path: Path, created: UnlockedKeystore) -> None:
        blob = path.read_bytes()
        for i in range(len(blob)):
            damaged = bytearray(blob)
            damaged[i] ^= 0x01
            expected = KeystoreCorrupt if i < 9 else (KeystoreCorrupt, KeystoreLocked)
            with pytest.raises(expected):
                decrypt_keystore(bytes(damaged), PASSPHRASE)

    def test_newer_version_is_corrupt(self, path: Path, created: UnlockedKeystore) -> None:
        with pytest.raises(KeystoreCorrupt):
            decrypt_keystore(_with_header(path.read_bytes(), version=2), PASSPHRASE)

    @pytest.mark.parametrize(
        "fields",
        [
            {"mem": 0xFFFFFFFF},
            {"mem": KdfParams.MAX_MEM_KIB + 1},
            {"mem": KdfParams.MIN_MEM_KIB - 1},
            {"mem": 0},
            {"ops": 0xFFFFFFFF},
            {"ops": KdfParams.MAX_OPS + 1},
            {"ops": 0},
        ],
    )
    @pytest.mark.usefixtures("no_argon2")
    def test_out_of_range_kdf_params_are_refused_before_argon2(
        self, path: Path, fields: dict[str, int]
    ) -> None:
        # A hand-made file: building it needs no Argon2 either.
        blob = HEADER.pack(b"P2PNETKS", 1, 1, 8, bytes(16), bytes(24)) + bytes(200)
        planted = _with_header(blob, **fields)
        with pytest.raises(KeystoreCorrupt):
            decrypt_keystore(planted, PASSPHRASE)
        path.write_bytes(planted)
        with pytest.raises(KeystoreCorrupt):
            open_keystore(path, PASSPHRASE)

    @pytest.mark.usefixtures("no_argon2")
    def test_oversized_file_is_refused_before_argon2(self, path: Path) -> None:
        header = HEADER.pack(b"P2PNETKS", 1, 1, 8, bytes(16), bytes(24))
        path.write_bytes(header + bytes((1 << 20) + 1))
        with pytest.raises(KeystoreCorrupt):
            open_keystore(path, PASSPHRASE)

    def test_authenticated_but_malformed_contents_are_corrupt(self) -> None:
        # Encrypt hand-made plaintexts under the right key: only the contents check is
        # left to catch them.
        seed, profile = bytes(range(32)), bytes(range(1, 33))
        net = NetworkSecret(bytes([9]) * 32)
        bad_plaintexts = [
            b"",
            b"\xc1",
            msgpack.packb([2, seed, profile, []]),
            msgpack.packb([1, seed, profile]),
            msgpack.packb([1, seed[:31], profile, []]),
            msgpack.packb([1, seed, profile + b"x", []]),
            msgpack.packb([1, seed, profile, [[bytes(16), net.secret]]]),
            msgpack.packb([1, seed, profile, [[net.network_id, net.secret[:31]]]]),
            msgpack.packb([1, seed, profile, [[net.network_id]]]),
            msgpack.packb([1, seed, profile, {"a": 1}]),
            msgpack.packb([1, seed, profile, 5]),
            msgpack.packb({"v": 1, "s": seed, "p": profile, "n": []}),
            msgpack.packb([1, seed, profile, []]) + b"\x00",
            msgpack.packb([1, "s" * 32, profile, []]),
        ]
        salt, nonce = bytes(16), bytes(24)
        key = nacl.pwhash.argon2id.kdf(
            32, PASSPHRASE.encode(), salt, opslimit=PARAMS.opslimit, memlimit=8 * 1024
        )
        header = HEADER.pack(b"P2PNETKS", 1, PARAMS.opslimit, PARAMS.memlimit_kib, salt, nonce)
        good = header + aead_encrypt(key, nonce, msgpack.packb([1, seed, profile, []]), header)
        assert decrypt_keystore(good, PASSPHRASE)[0].identity == Identity(seed)
        for plaintext in bad_plaintexts:
            blob = header + aead_encrypt(key, nonce, plaintext, header)
            with pytest.raises(KeystoreCorrupt):
                decrypt_keystore(blob, PASSPHRASE)

    @settings(max_examples=150, deadline=None)
    @given(blob=st.binary(max_size=400))
    def test_random_bytes(self, blob: bytes) -> None:
        with pytest.raises((KeystoreCorrupt, KeystoreLocked)):
            decrypt_keystore(blob, PASSPHRASE)

    @settings(max_examples=150, deadline=None)
    @given(salt=bytes_of(16), nonce=bytes_of(24), rest=st.binary(max_size=300))
    def test_random_bytes_behind_a_valid_header(
        self, salt: bytes, nonce: bytes, rest: bytes
    ) -> None:
        header = HEADER.pack(b"P2PNETKS", 1, PARAMS.opslimit, PARAMS.memlimit_kib, salt, nonce)
        with pytest.raises((KeystoreCorrupt, KeystoreLocked)):
            decrypt_keystore(header + rest, PASSPHRASE)


def test_kdf_params_bounds() -> None:
    assert KdfParams() == KdfParams(opslimit=3, memlimit_kib=256 * 1024)
    KdfParams(opslimit=KdfParams.MAX_OPS, memlimit_kib=KdfParams.MAX_MEM_KIB)
    for ops, mem in [(0, 8), (17, 8), (1, 7), (1, KdfParams.MAX_MEM_KIB + 1), (-1, 8)]:
        with pytest.raises(ValueError, match="range"):
            KdfParams(opslimit=ops, memlimit_kib=mem)
