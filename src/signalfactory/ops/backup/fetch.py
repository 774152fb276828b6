"""Reading a backup back: its manifest, and its parts decrypted and checked into a folder.

Everything here is refused before any database is touched: a wrong key, an edited manifest,
a missing, truncated or tampered part, a disk that fills up while unpacking.
"""

from __future__ import annotations

import errno
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from signalfactory.domain.errors import NotFoundError
from signalfactory.ops.backup.chunks import CHUNK_NAME, read_chunks
from signalfactory.ops.backup.crypto import (
    BackupKey,
    Digest,
    TamperedError,
    decrypt_stream,
    load_backup_key,
)
from signalfactory.ops.backup.manifest import BackupSummary, Manifest, Part, UnreadableBackup
from signalfactory.ops.backup.targets import Target, disk_full, open_target
from signalfactory.settings import Settings

_SAFE_NAME = re.compile(r"^(database\.sqlite|database\.pgdump|bars/[A-Za-z0-9]+/[\w.-]+\.arrow)$")

Progress = Callable[[int], None]


def backup_key(settings: Settings) -> BackupKey:
    secret = settings.backup_key.get_secret_value() if settings.backup_key else None
    return load_backup_key(secret)


def load_manifest(target: Target, key: BackupKey, backup_id: str | None = None) -> Manifest:
    """The named (default: newest) complete backup's manifest, authenticated with ``key``."""
    if backup_id is None:
        ids = target.list_ids()
        if not ids:
            raise NotFoundError(f"there is no complete backup in {target.url}; make one with "
                                "`signalfactory backup create --to ...`")
        backup_id = ids[-1]
    manifest = Manifest.from_json(target.read_manifest(backup_id), f"{target.url}/{backup_id}")
    manifest.check(key)
    if manifest.id != backup_id:
        raise TamperedError(f"{target.url}/{backup_id} holds the manifest of backup "
                            f"{manifest.id}: it was moved or copied over")
    for part in manifest.parts:
        if not _SAFE_NAME.match(part.name) or part.object != part.name + ".sfbk":
            raise TamperedError(f"backup {manifest.id} lists a part named {part.name!r}, "
                                "which no backup writes")
        if not all(CHUNK_NAME.match(name) for name in part.chunks):
            raise TamperedError(f"backup {manifest.id} lists a chunk of part {part.name} "
                                "with a name no backup writes")
    return manifest


def open_backup(settings: Settings, dest: str,
                backup_id: str | None) -> tuple[Target, BackupKey, Manifest]:
    key = backup_key(settings)
    target = open_target(dest)
    return target, key, load_manifest(target, key, backup_id)


@dataclass(frozen=True)
class FetchReport:
    seconds: float


def _fetch_part(target: Target, manifest: Manifest, key: BackupKey, part: Part, dest: Path,
                progress: Progress | None) -> None:
    stored, plain = Digest(), Digest()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if part.chunks:
            with dest.open("wb") as out:
                whole = hashlib.sha256()

                def write(block: bytes) -> None:
                    out.write(block)
                    whole.update(block)
                    plain.size += len(block)
                    if progress is not None:
                        progress(len(block))

                read_chunks(target, key, part, manifest.id, write, stored)
                plain.sha256 = whole.hexdigest()
        else:
            with target.open_object(manifest.id, part.object) as stream, \
                    dest.open("wb") as out:
                for block in decrypt_stream(stream, key, part.object, stored, plain):
                    out.write(block)
                    if progress is not None:
                        progress(len(block))
    except OSError as exc:
        dest.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise disk_full(exc, str(dest.parent)) from exc
        raise
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if (stored.size, stored.sha256) != (part.size, part.sha256):
        raise TamperedError(f"part {part.object}: its SHA-256 or size differs from the "
                            f"manifest ({stored.size} bytes stored, {part.size} listed); "
                            "it was replaced or damaged")
    if (plain.size, plain.sha256) != (part.plain_size, part.plain_sha256):
        raise TamperedError(f"part {part.object}: the decrypted content differs from the "
                            "manifest's SHA-256; it was replaced by another backup's part")


def fetch_parts(target: Target, manifest: Manifest, key: BackupKey,
                place: Callable[[Part], Path], progress: Progress | None = None) -> FetchReport:
    """Decrypt every part to ``place(part)``, checking both hashes of each."""
    started = time.monotonic()
    for part in manifest.parts:
        _fetch_part(target, manifest, key, part, place(part), progress)
    return FetchReport(seconds=time.monotonic() - started)


def placer(database_dir: Path, bars_dir: Path | None) -> Callable[[Part], Path]:
    """Database dump into ``database_dir``; ``bars/<tf>/<file>`` under ``bars_dir``."""

    def place(part: Part) -> Path:
        if part.name.startswith("bars/"):
            if bars_dir is None:
                raise TamperedError(f"backup lists bar segment {part.name} but says its bar "
                                    "store is not columnar")
            return bars_dir / part.name[len("bars/"):]
        return database_dir / part.name

    return place


def list_backups(dest: str) -> list[BackupSummary | UnreadableBackup]:
    """Complete backups, oldest first, as `backup list` shows them (no key needed)."""
    target = open_target(dest)
    out: list[BackupSummary | UnreadableBackup] = []
    for backup_id in target.list_ids():
        try:
            manifest = Manifest.from_json(target.read_manifest(backup_id),
                                          f"{target.url}/{backup_id}")
            out.append(manifest.summary())
        except TamperedError as exc:
            out.append(UnreadableBackup(id=backup_id, error=str(exc)))
    return out
