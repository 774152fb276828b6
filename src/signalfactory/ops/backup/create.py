"""`backup create`: snapshot, compress, encrypt, store the parts, then the manifest last.

SQLite backups are incremental: their files go into the shared chunk store, only the chunks
not stored yet are written (:mod:`signalfactory.ops.backup.chunks`). PostgreSQL backups are
one pg_dump part (plus bar segments), each stored whole in the backup's folder.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import signalfactory
from signalfactory.observability.metrics import BACKUP_RPO
from signalfactory.ops.backup import metrics
from signalfactory.ops.backup.chunks import ChunkWriter
from signalfactory.ops.backup.crypto import Digest, default_compression, encrypt_stream, hashing
from signalfactory.ops.backup.fetch import Progress, backup_key
from signalfactory.ops.backup.manifest import Manifest, Part, new_backup_id
from signalfactory.ops.backup.snapshot import take_snapshot
from signalfactory.ops.backup.targets import Target, disk_full, open_target
from signalfactory.services.platform import Platform

OBJECT_SUFFIX = ".sfbk"


def create_backup(platform: Platform, dest: str, *,
                  progress: Progress | None = None) -> Manifest:
    """Back up the platform's database and bar files to ``dest``; returns the manifest."""
    key = backup_key(platform.settings)
    target = open_target(dest)
    compression = default_compression()
    started = time.monotonic()
    now = datetime.now(UTC)
    backup_id = new_backup_id(now)
    platform.settings.home.mkdir(parents=True, exist_ok=True)
    # Staging sits in home: same filesystem as the bar files, so they can be hard-linked.
    staging = Path(tempfile.mkdtemp(prefix=".backup-", dir=platform.settings.home))
    try:
        with take_snapshot(platform, staging) as snap:
            parts = []
            chunked = (ChunkWriter(target, key, compression, now)
                       if snap.backend == "sqlite" else None)
            for source in snap.parts:
                if chunked is not None:
                    with source.open() as stream:
                        parts.append(chunked.write_part(source.name, source.kind, stream,
                                                        progress))
                    continue
                stored, plain = Digest(), Digest()
                obj = source.name + OBJECT_SUFFIX
                with source.open() as stream:
                    sealed = encrypt_stream(stream, key, compression, plain)
                    target.write_object(backup_id, obj, hashing(sealed, stored))
                if progress is not None:
                    progress(plain.size)
                parts.append(Part(
                    name=source.name, kind=source.kind, object=obj, size=stored.size,
                    sha256=stored.sha256, plain_size=plain.size, plain_sha256=plain.sha256))
        manifest = Manifest(
            id=backup_id, created_at=now.isoformat(), app_version=signalfactory.__version__,
            schema_revision=snap.schema_revision, backend=snap.backend,
            bar_store=snap.bar_store, compression=compression, key_id=key.key_id,
            tables=snap.tables, bars=snap.bars, parts=tuple(parts), audit_head=snap.audit_head,
            seconds=time.monotonic() - started,
            new_bytes=chunked.new_bytes if chunked is not None else None).signed(key)
        if chunked is not None:
            chunked.check_still_safe()
        target.write_manifest(backup_id, manifest.to_json())
    except OSError as exc:
        _discard(target, backup_id)
        if exc.errno == errno.ENOSPC:
            raise disk_full(exc, str(platform.settings.home)) from exc
        raise
    except BaseException:
        _discard(target, backup_id)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    metrics.record_success(manifest)
    return manifest


def _discard(target: Target, backup_id: str) -> None:
    """Best effort: remove what a failed backup wrote. It has no manifest either way."""
    # The missing manifest already marks it incomplete; cleaning up is a courtesy.
    with contextlib.suppress(Exception):
        target.delete(backup_id)


def run_scheduled_backup(platform: Platform, dest: str,
                         rpo_seconds: float | None = None) -> Manifest:
    """What the scheduler calls every RPO interval; exports the configured RPO as a gauge."""
    if rpo_seconds is not None:
        BACKUP_RPO.set(rpo_seconds)
    return create_backup(platform, dest)
