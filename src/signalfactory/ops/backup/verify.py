"""`backup verify`: decrypt, check every hash, restore into a scratch database, compare.

The scratch database is a temporary SQLite file, or a new PostgreSQL database created on the
configured server (or ``scratch_url``'s) and dropped afterwards. Nothing live is touched.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

import signalfactory
from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.db import create_db_engine, is_sqlite_url
from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.ops.backup import pgtools
from signalfactory.ops.backup.checks import bar_checks, differences, table_checks
from signalfactory.ops.backup.fetch import Progress, fetch_parts, open_backup, placer
from signalfactory.ops.backup.manifest import Manifest, TableCheck
from signalfactory.ops.backup.snapshot import PG_PART, SQLITE_PART, sqlite_path
from signalfactory.settings import Settings


class RestoreMismatchError(OperationalError):
    code = "restore-mismatch"


def compatibility_problems(manifest: Manifest) -> list[str]:
    """Why this build should not run on the backup's data (version or schema differs)."""
    problems = []
    if manifest.app_version != signalfactory.__version__:
        problems.append(f"it was made by Signal Factory {manifest.app_version}, this is "
                        f"{signalfactory.__version__}")
    head = migrate.head_revision()
    if manifest.schema_revision != head:
        problems.append(f"its schema revision is {manifest.schema_revision or 'none'}, this "
                        f"release expects {head}")
    return problems


def measure(url: str, bars_root: Path | None, manifest: Manifest,
            ) -> tuple[dict[str, TableCheck], dict[str, TableCheck]]:
    """Row counts and checksums of a restored database (and its bar files), computed the way
    the manifest's were."""
    engine = (sa.create_engine(f"sqlite:///{sqlite_path(url)}") if is_sqlite_url(url)
              else create_db_engine(url))
    methods = {name: check.method for name, check in manifest.tables.items()}
    try:
        with engine.begin() as conn:
            return table_checks(conn, methods), bar_checks(conn, bars_root)
    finally:
        engine.dispose()


def require_match(manifest: Manifest, tables: dict[str, TableCheck],
                  bars: dict[str, TableCheck], what: str) -> None:
    problems = differences(manifest, tables, bars)
    if problems:
        raise RestoreMismatchError(f"{what} does not match backup {manifest.id}: "
                                   + "; ".join(problems))


@dataclass(frozen=True)
class VerifyReport:
    backup_id: str
    ok: bool
    parts: int
    tables: int
    rows: int
    size_bytes: int
    fetch_seconds: float
    restore_seconds: float
    check_seconds: float

    @property
    def seconds(self) -> float:
        return self.fetch_seconds + self.restore_seconds + self.check_seconds

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class ScratchCopy:
    """A backup restored into scratch and checked against its manifest."""

    manifest: Manifest
    url: str
    tables: dict[str, TableCheck]
    bars: dict[str, TableCheck]
    fetch_seconds: float
    restore_seconds: float
    check_seconds: float


@contextmanager
def scratch_restore(settings: Settings, dest: str, backup_id: str | None = None, *,
                    scratch_url: str | None = None,
                    progress: Progress | None = None) -> Iterator[ScratchCopy]:
    """Restore a backup into a scratch database, check it, and drop it after the block."""
    target, key, manifest = open_backup(settings, dest, backup_id)
    columnar = manifest.bar_store == "columnar"
    server = scratch_url or settings.resolved_database_url
    if manifest.backend == "postgresql" and is_sqlite_url(server):
        raise BadInputError(f"backup {manifest.id} is a PostgreSQL dump: its scratch restore "
                            "needs a PostgreSQL server; pass --scratch-url postgresql://... or "
                            "set SIGNALFACTORY_DATABASE_URL")
    settings.home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".verify-", dir=settings.home))
    try:
        bars_root = scratch / "bars" if columnar else None
        fetched = fetch_parts(target, manifest, key, placer(scratch, bars_root), progress)
        started = time.monotonic()
        if manifest.backend == "sqlite":
            restore_seconds = 0.0  # the decrypted file IS the restored database
            url = f"sqlite:///{scratch / SQLITE_PART}"
            tables, bars = measure(url, bars_root, manifest)
            require_match(manifest, tables, bars, "the scratch restore")
            yield ScratchCopy(manifest, url, tables, bars, fetched.seconds, restore_seconds,
                              time.monotonic() - started)
            return
        with pgtools.scratch_database(server) as url:
            pgtools.load_dump_parallel(url, scratch / PG_PART)
            restore_seconds = time.monotonic() - started
            checked = time.monotonic()
            tables, bars = measure(url, bars_root, manifest)
            require_match(manifest, tables, bars, "the scratch restore")
            yield ScratchCopy(manifest, url, tables, bars, fetched.seconds, restore_seconds,
                              time.monotonic() - checked)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def verify_backup(settings: Settings, dest: str, backup_id: str | None = None, *,
                  scratch_url: str | None = None,
                  progress: Progress | None = None) -> VerifyReport:
    with scratch_restore(settings, dest, backup_id, scratch_url=scratch_url,
                         progress=progress) as copy:
        tables, bars, manifest = copy.tables, copy.bars, copy.manifest
        return VerifyReport(
            backup_id=manifest.id, ok=True, parts=len(manifest.parts), tables=len(tables),
            rows=sum(t.rows for t in tables.values()) + sum(b.rows for b in bars.values()),
            size_bytes=manifest.size, fetch_seconds=round(copy.fetch_seconds, 3),
            restore_seconds=round(copy.restore_seconds, 3),
            check_seconds=round(copy.check_seconds, 3))
