"""Bundle files on disk: export what a member lacks, import what a stick carries.

The formats are in :mod:`protocol.bundle`; this module reads and writes files (created
0600, written to a temporary name and renamed, so a crash never leaves half a bundle
under the real name), reports progress, and validates every imported envelope exactly
as sync does (:meth:`protocol.syncpeer.Holdings.receive`), keeping the valid ones and
reporting the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from crypto import EpochKey, random_bytes
from protocol import RemoteProtocolError
from protocol.bundle import (
    CHUNK_BYTES,
    HEADER_BYTES,
    BundleReader,
    open_summary,
    seal_bundle,
    seal_summary,
)
from protocol.reconcile import Summary, build_summary, to_send, unattributed_digest
from protocol.syncpeer import Holdings

__all__ = [
    "ImportReport",
    "Progress",
    "export_bundle",
    "import_bundle",
    "import_bundle_from",
    "read_summary",
    "write_private_file",
    "write_summary",
]

Progress = Callable[[int, int], None]  # (done, total); total 0 when unknown


def _no_progress(done: int, total: int) -> None:
    return None


@dataclass(slots=True)
class ImportReport:
    """What an import did."""

    network_id: bytes
    imported: int = 0
    duplicates: int = 0
    unattributed: int = 0
    invalid: int = 0
    problems: list[str] = field(default_factory=list)
    truncated: bool = False


def write_private_file(path: Path, pieces: Iterable[bytes]) -> int:
    """Write a file readable only by us (0600), atomically: a temporary name, fsync,
    rename. Returns the bytes written."""
    return _write_atomically(path, pieces)


def _write_atomically(path: Path, pieces: Iterable[bytes]) -> int:
    tmp = path.with_name(f".{path.name}.{random_bytes(6).hex()}.part")
    written = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            for piece in pieces:
                fh.write(piece)
                written += len(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def _selection(holdings: Holdings, summary: Summary | None) -> list[bytes]:
    index = holdings.chain_index()
    unattributed = holdings.unattributed()
    if summary is None:
        op_ids = [o for author, _, _ in index.chains() for o in index.ops_above(author, 0)]
        extra = list(unattributed.values())
    else:
        plan = to_send(index, summary, unattributed_digest(unattributed.keys()))
        op_ids = list(plan.op_ids)
        # Forked chains: the recipient may lack any op above the fork; send all of them.
        for author in plan.probes:
            op_ids.extend(index.ops_above(author, 0))
        extra = list(unattributed.values()) if plan.exchange_unattributed else []
    ordered = sorted(set(op_ids), key=holdings.order_key)
    return [holdings.envelope_of(o) for o in ordered] + extra


def export_bundle(
    path: Path,
    holdings: Holdings,
    *,
    network_id: bytes,
    key: EpochKey,
    for_summary: Summary | None = None,
    progress: Progress = _no_progress,
) -> int:
    """Write a bundle of everything, or of what ``for_summary``'s holder lacks.

    Returns the number of envelopes written.
    """
    envelopes = _selection(holdings, for_summary)
    total = len(envelopes)

    def counted() -> Iterable[bytes]:
        for done, envelope in enumerate(envelopes, 1):
            if done % 1000 == 0 or done == total:
                progress(done, total)
            yield envelope

    _write_atomically(path, seal_bundle(network_id, counted(), key=key))
    return total


def import_bundle(
    path: Path,
    networks: Mapping[bytes, tuple[EpochKey, Holdings]],
    *,
    progress: Progress = _no_progress,
) -> ImportReport:
    """Import a bundle file into whichever of ``networks`` it belongs to.

    Raises:
        RemoteProtocolError: not a bundle, or for none of these networks (nothing imported).
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        return import_bundle_from(fh, os.path.getsize(path), networks, progress=progress)


def import_bundle_from(
    fh: BinaryIO,
    size: int,
    networks: Mapping[bytes, tuple[EpochKey, Holdings]],
    *,
    progress: Progress = _no_progress,
) -> ImportReport:
    """:func:`import_bundle` from an open binary stream of ``size`` bytes."""
    total = max(size - HEADER_BYTES, 0) // CHUNK_BYTES
    head = fh.read(HEADER_BYTES)
    first = fh.read(CHUNK_BYTES)
    reader = BundleReader(head, {n: k for n, (k, _) in networks.items()}, first)
    holdings = networks[reader.network_id][1]
    report = ImportReport(reader.network_id)
    _receive(holdings, reader.first(), report)
    done = 1
    progress(done, total)
    while not reader.finished:
        chunk = fh.read(CHUNK_BYTES)
        try:
            envelopes = reader.next_chunk(chunk)
        except RemoteProtocolError as exc:
            report.truncated = len(chunk) < CHUNK_BYTES
            report.problems.append(
                "the bundle ends early: only part of it was copied"
                if report.truncated
                else f"stopped at part {done + 1} of {total}: {exc}"
            )
            break
        _receive(holdings, envelopes, report)
        done += 1
        progress(done, total)
    return report


def _receive(holdings: Holdings, envelopes: list[bytes], report: ImportReport) -> None:
    if not envelopes:
        return
    try:
        results = [holdings.receive(envelopes)]
    except RemoteProtocolError:
        # Something in the batch is bad: take the envelopes one by one, keep the good.
        results = []
        for envelope in envelopes:
            try:
                results.append(holdings.receive([envelope]))
            except RemoteProtocolError as exc:
                report.invalid += 1
                if len(report.problems) < 20:
                    report.problems.append(f"an envelope was refused: {exc}")
    for result in results:
        report.imported += result.new
        report.duplicates += result.duplicates
        report.unattributed += result.unattributed
        report.invalid += result.rejected


def write_summary(path: Path, holdings: Holdings, *, network_id: bytes, key: EpochKey) -> bytes:
    """Write what we hold, for a member who will bring us a bundle; returns the bytes
    (small enough to show as a QR code for a typical network)."""
    summary = build_summary(holdings.chain_index(), holdings.unattributed().keys())
    data = seal_summary(network_id, summary, key=key, nonce=random_bytes(24))
    _write_atomically(path, [data])
    return data


def read_summary(data: bytes, keys: Mapping[bytes, EpochKey]) -> tuple[bytes, Summary]:
    """Open a summary file's bytes.

    Raises:
        RemoteProtocolError: damaged or for none of these networks.
    """
    return open_summary(data, keys)
