"""`dr drill`: measure the RPO and RTO a failure now would really cost, and check the targets.

How (issue 14, "honest RPO"):

1. write a canary row (``ops_canaries``) and commit it: the last committed data;
2. the failure happens now: the drill takes no backup of its own, it takes the newest
   restorable point as it exists (the newest regular backup, or on PostgreSQL with
   point-in-time recovery configured, the newest point the WAL archive reaches);
3. restore that point into scratch and verify it (RTO = restore + verify seconds);
4. read the newest canary in the restored copy: RPO = last committed canary minus newest
   restored canary, the span of committed data the restore lost. A scheduled job writes a
   canary every ``canary_interval_seconds``, so the figure is exact to that interval.

Both are checked against ``dr_rpo_target_seconds`` and ``dr_rto_target_seconds``; the report
names each missed target and the command exits 1.

Restore-point providers: :class:`BackupRestorePoint` restores the newest regular backup;
:class:`PitrRestorePoint` restores PostgreSQL to the newest point its pgBackRest WAL archive
reaches (``ops/backup/pitr_restore.py``) when PITR is configured. Without PITR, PostgreSQL
falls back to its newest regular backup, whose RPO is whatever that backup's age makes it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from signalfactory.adapters.storage.canaries import newest_canary
from signalfactory.adapters.storage.canaries import write_canary as insert_canary
from signalfactory.adapters.storage.db import create_db_engine, is_sqlite_url
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.errors import BadInputError
from signalfactory.ops.backup.checks import table_checks
from signalfactory.ops.backup.snapshot import sqlite_path
from signalfactory.ops.backup.verify import scratch_restore
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings


@dataclass(frozen=True)
class RestoredPoint:
    """A restore point restored into scratch and verified."""

    point: str                 # what was restored: "backup sf-..." or "pitr"
    url: str                   # SQLAlchemy URL of the scratch copy (valid inside the block)
    restore_seconds: float     # fetching and loading
    verify_seconds: float      # checking the copy
    rows: int
    size_bytes: int


class RestorePointProvider(Protocol):
    @property
    def name(self) -> str: ...

    def restored_latest(self, scratch_dir: Path) -> AbstractContextManager[RestoredPoint]:
        """Restore the newest restorable point into scratch; dropped after the block."""
        ...


@dataclass(frozen=True)
class BackupRestorePoint:
    """The newest complete regular backup in ``dest`` (incremental on SQLite)."""

    settings: Settings
    dest: str
    scratch_url: str | None = None
    name: str = "backup"

    @contextmanager
    def restored_latest(self, scratch_dir: Path) -> Iterator[RestoredPoint]:
        with scratch_restore(self.settings, self.dest, None,
                             scratch_url=self.scratch_url) as copy:
            yield RestoredPoint(
                point=f"backup {copy.manifest.id}", url=copy.url,
                restore_seconds=copy.fetch_seconds + copy.restore_seconds,
                verify_seconds=copy.check_seconds,
                rows=sum(t.rows for t in copy.tables.values())
                + sum(b.rows for b in copy.bars.values()),
                size_bytes=copy.manifest.size)


@dataclass(frozen=True)
class PitrRestorePoint:
    """PostgreSQL point-in-time recovery: the newest point its WAL archive reaches."""

    settings: Settings
    name: str = "pitr"

    @contextmanager
    def restored_latest(self, scratch_dir: Path) -> Iterator[RestoredPoint]:
        from signalfactory.ops.backup.pitr_restore import restored_latest

        # pgBackRest restores into a directory that must not exist yet, and may run as the
        # database's OS user (SIGNALFACTORY_PITR_OS_USER): it must be able to pass through.
        scratch_dir.chmod(0o711)
        with restored_latest(self.settings, scratch_dir / "pitr") as server:
            checked = time.monotonic()
            engine = _engine(server.url)
            try:
                with engine.begin() as conn:
                    rows = sum(c.rows for c in table_checks(conn).values())
            finally:
                engine.dispose()
            yield RestoredPoint(point=f"pitr to {server.target.isoformat()}", url=server.url,
                                restore_seconds=server.restore_seconds,
                                verify_seconds=time.monotonic() - checked, rows=rows,
                                size_bytes=0)


def restore_point_provider(settings: Settings, dest: str | None,
                           scratch_url: str | None = None) -> RestorePointProvider:
    """PITR on PostgreSQL when it is configured, else the newest regular backup."""
    if not settings.is_sqlite and settings.pitr_repo and settings.pitr_pg_data:
        return PitrRestorePoint(settings)
    if not dest:
        raise BadInputError("no restore point: set SIGNALFACTORY_BACKUP_DEST (or pass --from), "
                            "or on PostgreSQL configure PITR (SIGNALFACTORY_PITR_REPO and "
                            "SIGNALFACTORY_PITR_PG_DATA)")
    return BackupRestorePoint(settings, dest, scratch_url)


def write_canary(platform: Platform, source: str) -> datetime:
    """Commit one canary row in the live database; returns its stamp."""
    with sql_database(platform.database).engine.begin() as conn:
        return insert_canary(conn, source)


def _engine(url: str) -> sa.Engine:
    return (sa.create_engine(f"sqlite:///{sqlite_path(url)}") if is_sqlite_url(url)
            else create_db_engine(url))


def _newest_canary_in(url: str) -> datetime | None:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return newest_canary(conn)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class DrillReport:
    """What `dr drill` measured (seconds rounded to the millisecond)."""

    ok: bool
    backend: str
    provider: str
    restore_point: str
    rows: int
    size_bytes: int
    last_committed_canary: str
    newest_restored_canary: str | None
    #: None when the restored copy holds no canary (the loss cannot be bounded)
    rpo_seconds: float | None
    rto_seconds: float
    restore_seconds: float
    verify_seconds: float
    rpo_target_seconds: float
    rto_target_seconds: float
    missed: list[str]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_drill(platform: Platform, dest: str | None, *, scratch_url: str | None = None,
              provider: RestorePointProvider | None = None) -> DrillReport:
    settings = platform.settings
    provider = provider or restore_point_provider(settings, dest, scratch_url)
    last_committed = write_canary(platform, "drill")
    # The failure happens here: whatever the provider can restore now is all there is.
    settings.home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".drill-", dir=settings.home))
    try:
        with provider.restored_latest(scratch) as point:
            restored_canary = _newest_canary_in(point.url)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rpo = ((last_committed - restored_canary).total_seconds()
           if restored_canary is not None else None)
    rto = point.restore_seconds + point.verify_seconds
    missed = []
    if rpo is None:
        missed.append(f"RPO: the restored copy ({point.point}) holds no canary, so the data "
                      "it lost cannot be bounded; keep the ops.canary schedule on "
                      "(SIGNALFACTORY_CANARY_INTERVAL_SECONDS) and back up after it ran")
    elif rpo > settings.dr_rpo_target_seconds:
        missed.append(f"RPO {rpo:.1f} s > target {settings.dr_rpo_target_seconds:g} s "
                      f"(newest canary in {point.point} was written at "
                      f"{restored_canary.isoformat() if restored_canary else '-'})")
    if rto > settings.dr_rto_target_seconds:
        missed.append(f"RTO {rto:.1f} s > target {settings.dr_rto_target_seconds:g} s")
    return DrillReport(
        ok=not missed, backend="sqlite" if settings.is_sqlite else "postgresql",
        provider=provider.name, restore_point=point.point, rows=point.rows,
        size_bytes=point.size_bytes, last_committed_canary=last_committed.isoformat(),
        newest_restored_canary=restored_canary.isoformat() if restored_canary else None,
        rpo_seconds=round(rpo, 3) if rpo is not None else None,
        rto_seconds=round(rto, 3), restore_seconds=round(point.restore_seconds, 3),
        verify_seconds=round(point.verify_seconds, 3),
        rpo_target_seconds=settings.dr_rpo_target_seconds,
        rto_target_seconds=settings.dr_rto_target_seconds, missed=missed)
