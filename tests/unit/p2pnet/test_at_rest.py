"""No plaintext at rest, and the panic wipe leaves nothing readable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crypto import EpochKey, KdfParams, KeystoreLocked, NetworkSecret, random_bytes
from p2pnet.profile import ProfileError, create_profile, open_profile, wipe_profile
from protocol import seal_group, sign_op

NETWORK_NAME = "Zanjireh Teachers Solidarity Circle"
PERSIAN_NAME = "شبکه همبستگی معلمان"
MEMBER_NAME = "Shirin Qolamrezaei-Tehrani"
AGREEMENT_TEXT = "We commit to resolve every dispute by consensus, face to face."
PASSPHRASE = "correct horse battery staple"


def _populate(home: Path) -> dict[str, bytes]:
    """Create a profile with a network and ops; return the secrets that must not leak."""
    profile = create_profile(home, "default", PASSPHRASE, kdf=KdfParams.insecure_for_tests())
    secret = NetworkSecret.generate()
    contents = profile.keystore.contents.with_network(secret)
    profile.keystore.save(contents)
    identity = contents.identity
    epoch = EpochKey.generate()
    net = secret.network_id
    bodies = [
        ("genesis", {"name": NETWORK_NAME, "name_fa": PERSIAN_NAME, "type": "coordination"}),
        ("member_update", {"display_name": MEMBER_NAME}),
        ("agreement_version", {"text": AGREEMENT_TEXT}),
    ]
    parents: list[bytes] = []
    envelopes = []
    for seq, (op_type, body) in enumerate(bodies, start=1):
        op = sign_op(
            identity,
            net=net,
            seq=seq,
            lamport=seq,
            parents=parents,
            time=1_700_000_000_000 + seq,
            type=op_type,
            body=body,
        )
        parents = [op.op_id]
        env = seal_group(op, epoch=epoch, route_tag=secret.route_tag, nonce=random_bytes(24))
        envelopes.append((op.op_id, env, op))  # the op is kept beside it, sealed too
    profile.store.add_envelopes(net, envelopes)
    # Local data the node keeps (epoch keys, a state cache naming the network).
    profile.store.put(net, "epoch-keys", epoch.epoch_id + epoch.key)
    profile.store.put(net, "state-cache", f"{NETWORK_NAME}|{MEMBER_NAME}".encode())
    profile.close()
    return {
        "identity seed": identity.seed,
        "identity public key": identity.public.key,
        "network secret": secret.secret,
        "network id": net,
        "route tag": secret.route_tag,
        "epoch key": epoch.key,
        "epoch id": epoch.epoch_id,
        "first envelope": envelopes[0][1][:64],
        "passphrase": PASSPHRASE.encode(),
    }


def _needles(extra: dict[str, bytes]) -> dict[str, bytes]:
    needles = dict(extra)
    for text in (NETWORK_NAME, PERSIAN_NAME, MEMBER_NAME, AGREEMENT_TEXT):
        needles[text] = text.encode("utf-8")
        needles[text + " (utf-16)"] = text.encode("utf-16-le")
        needles[text + " (prefix)"] = text.encode("utf-8")[:12]
    for name, value in list(extra.items()):
        if len(value) >= 16:
            needles[name + " (hex)"] = value.hex().encode()
    return needles


def _scan(root: Path, needles: dict[str, bytes]) -> list[str]:
    found = []
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, "nothing to scan"
    for path in files:
        data = path.read_bytes()
        found += [f"{name} in {path.name}" for name, n in needles.items() if n in data]
    return found


def test_no_plaintext_at_rest(tmp_path: Path) -> None:
    needles = _needles(_populate(tmp_path))
    assert _scan(tmp_path, needles) == []
    # Also while the store is open (the WAL holds the latest pages).
    profile = open_profile(tmp_path, "default", PASSPHRASE)
    profile.store.put(None, "note", MEMBER_NAME.encode())
    assert {p.name for p in profile.path.iterdir()} >= {"keystore", "store.db", "store.db-wal"}
    assert _scan(tmp_path, needles) == []
    profile.close()


def test_scanner_would_find_a_leak(tmp_path: Path) -> None:
    (tmp_path / "leak.txt").write_bytes(b"xx" + MEMBER_NAME.encode() + b"yy")
    assert _scan(tmp_path, _needles({})) != []


def test_wrong_passphrase_changes_nothing(tmp_path: Path) -> None:
    _populate(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(KeystoreLocked):
        open_profile(tmp_path, "default", "wrong passphrase")
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after


def test_panic_wipe_leaves_nothing_readable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secrets = _populate(home)
    profile_dir = home / "profiles" / "default"
    # Hard links keep the files' inodes reachable after the wipe unlinks them, so we can
    # check that the bytes themselves were overwritten, not just the names removed.
    spies = tmp_path / "spies"
    spies.mkdir()
    originals = {}
    for path in profile_dir.iterdir():
        os.link(path, spies / path.name)
        originals[path.name] = path.read_bytes()
    wipe_profile(home, "default")
    assert not profile_dir.exists()
    assert [p for p in home.rglob("*") if p.is_file()] == []
    for spy in spies.iterdir():
        data = spy.read_bytes()
        assert len(data) == len(originals[spy.name])
        assert data != originals[spy.name]
    assert _scan(spies, _needles(secrets)) == []
    assert not (spies / "keystore").read_bytes().startswith(b"P2PNETKS")
    wipe_profile(home, "default")  # idempotent


def test_directories_and_files_are_private(tmp_path: Path) -> None:
    _populate(tmp_path)
    profile_dir = tmp_path / "profiles" / "default"
    assert profile_dir.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "profiles").stat().st_mode & 0o777 == 0o700
    for path in profile_dir.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "UPPER", "x" * 40, "-lead"])
def test_profile_names_are_validated(tmp_path: Path, name: str) -> None:
    with pytest.raises(ProfileError):
        create_profile(tmp_path, name, PASSPHRASE, kdf=KdfParams.insecure_for_tests())
