"""Profiles on disk: one directory per profile under the home, holding the keystore and
the store, and the panic wipe that destroys both.

Layout: ``HOME/profiles/NAME/{keystore, store.db, store.db-wal, store.db-shm}``; the
home and profile directories are created 0700, every file 0600. The profile name is the
only plaintext a seized home reveals (besides sizes); choose a dull one.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from crypto import (
    KdfParams,
    KeystoreContents,
    UnlockedKeystore,
    create_keystore,
    open_keystore,
    random_bytes,
    wipe,
)
from p2pnet.errors import P2pnetError
from p2pnet.store import Store

__all__ = [
    "MIN_PASSPHRASE_CHARS",
    "Profile",
    "ProfileError",
    "create_profile",
    "open_profile",
    "passphrase_problem",
    "wipe_profile",
]

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_KEYSTORE = "keystore"
_STORE = "store.db"


class ProfileError(P2pnetError):
    """A profile name is invalid, or the profile does not exist / already exists."""


MIN_PASSPHRASE_CHARS = 10


def passphrase_problem(passphrase: str) -> str | None:
    """Why ``passphrase`` is too short to protect a profile, or None: the one rule that
    the command line and the app apply to a new passphrase."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        return (
            f"choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters"
            " (a few unrelated words is best)"
        )
    return None


def profile_dir(home: Path, name: str) -> Path:
    """The directory of profile ``name``.

    Raises:
        ProfileError: the name is not 1-32 of a-z, 0-9, '_' and '-' (starting alphanumeric).
    """
    if not _NAME_RE.fullmatch(name):
        raise ProfileError(
            f"invalid profile name {name!r}: use 1-32 lowercase letters, digits, '-' or '_'"
        )
    return home / "profiles" / name


def _private_dirs(path: Path) -> None:
    for directory in reversed([path, *path.parents]):
        if not directory.exists():
            directory.mkdir(mode=0o700)


@dataclass(slots=True)
class Profile:
    """An unlocked profile: its keystore handle and its open store."""

    path: Path
    keystore: UnlockedKeystore
    store: Store

    def close(self) -> None:
        """Close the store and forget the derived key."""
        try:
            self.store.close()
        finally:
            self.keystore.lock()


def create_profile(
    home: Path, name: str, passphrase: str, *, kdf: KdfParams | None = None
) -> Profile:
    """Create a profile with a new identity.

    Raises:
        ProfileError: it already exists or the name is invalid.
    """
    path = profile_dir(home, name)
    if (path / _KEYSTORE).exists():
        raise ProfileError(f"profile {name!r} already exists")
    _private_dirs(path)
    contents = KeystoreContents.generate()
    keystore = create_keystore(path / _KEYSTORE, contents, passphrase, params=kdf)
    return Profile(path, keystore, Store.open(path / _STORE, contents.profile_key))


def open_profile(home: Path, name: str, passphrase: str) -> Profile:
    """Unlock a profile.

    Raises:
        KeystoreMissing: no such profile. KeystoreLocked: wrong passphrase.
        KeystoreCorrupt / StoreCorrupt: damaged files (nothing is changed).
    """
    path = profile_dir(home, name)
    keystore = open_keystore(path / _KEYSTORE, passphrase)
    store = Store.open(path / _STORE, keystore.contents.profile_key)
    return Profile(path, keystore, store)


def _overwrite(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return
    try:
        remaining = os.fstat(fd).st_size
        while remaining > 0:
            chunk = min(remaining, 1 << 20)
            os.write(fd, random_bytes(chunk))
            remaining -= chunk
        os.fsync(fd)
    finally:
        os.close(fd)


def wipe_profile(home: Path, name: str) -> None:
    """Panic wipe: destroy the keystore first, then overwrite and remove every file.

    Destroying the keystore alone already makes the rest unreadable (it holds the profile
    key); overwriting the rest is defence in depth. Idempotent. See docs/threat-model.md
    for what overwriting cannot guarantee on SSDs.
    """
    path = profile_dir(home, name)
    if not path.exists():
        return
    wipe(path / _KEYSTORE)
    for file in sorted(path.rglob("*"), reverse=True):
        if file.is_file() and not file.is_symlink():
            _overwrite(file)
    shutil.rmtree(path)
