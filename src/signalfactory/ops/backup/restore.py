"""`backup restore`: into an empty or a named database, all or nothing.

Order of work, so that any refusal leaves the target as it was:

1. authenticate the manifest (key, MAC), refuse a version or schema mismatch unless forced,
   refuse a target holding rows unless forced;
2. write the marker ``<home>/restore-in-progress`` (``/readyz`` answers 503 while it exists);
3. decrypt every part into staging beside the target and check every hash;
4. SQLite: check the staged copy against the manifest, then swap it in by renames;
   PostgreSQL: load the dump in one transaction (committed only if it all loaded), then check;
5. remove the marker. It stays only when the target may be half-restored (a swap that could
   not be undone, or a PostgreSQL restore whose check failed), so readiness keeps failing
   until someone looks.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from signalfactory.adapters.storage.db import create_db_engine, is_sqlite_url, normalise_url
from signalfactory.domain.errors import BadInputError, ConflictError, OperationalError
from signalfactory.ops.backup import pgtools
from signalfactory.ops.backup.checks import present_tables
from signalfactory.ops.backup.fetch import Progress, fetch_parts, open_backup, placer
from signalfactory.ops.backup.manifest import Manifest
from signalfactory.ops.backup.snapshot import PG_PART, SQLITE_PART, sqlite_path
from signalfactory.ops.backup.verify import compatibility_problems, measure, require_match
from signalfactory.settings import RESTORE_MARKER, Settings


def restore_marker(home: Path) -> Path:
    """The file whose existence makes /readyz report a restore in progress (for the home
    being restored, which need not be the configured one)."""
    return home / RESTORE_MARKER


@dataclass(frozen=True)
class RestoreReport:
    backup_id: str
    database: str
    forced: bool
    replaced_existing: bool
    rows: int
    fetch_seconds: float
    restore_seconds: float
    check_seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@functools.cache
def _seeded_rows() -> dict[str, int]:
    """Rows the migrations themselves insert (a default tenant...): an empty database has them."""
    from signalfactory.adapters.storage import migrate

    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    with tempfile.TemporaryDirectory() as tmp:
        engine = sa.create_engine(f"sqlite:///{Path(tmp) / 'seed.db'}")
        try:
            alembic_log.setLevel(logging.WARNING)  # no migration chatter in --json output
            migrate.upgrade(engine)
            with engine.connect() as conn:
                return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t))
                                    .scalar_one()) for t in present_tables(conn)}
        finally:
            alembic_log.setLevel(level)
            engine.dispose()


def _rows_in(url: str) -> dict[str, int]:
    """Tables of the target holding more rows than a freshly migrated database ({}: empty)."""
    if is_sqlite_url(url):
        path = sqlite_path(url)
        if not path.exists():
            return {}
        engine = sa.create_engine(f"sqlite:///{path}")
    else:
        if not pgtools.database_exists(url):
            return {}
        engine = create_db_engine(url)
    seeded = _seeded_rows()
    try:
        with engine.connect() as conn:
            found = {}
            for table in present_tables(conn):
                limit = seeded.get(table.name, 0) + 1
                count = conn.execute(sa.select(sa.func.count()).select_from(
                    sa.select(sa.literal(1)).select_from(table).limit(limit).subquery())
                ).scalar_one()
                if count >= limit:
                    found[table.name] = int(count)
            return found
    finally:
        engine.dispose()


def _bars_root(home: Path) -> Path:
    return home / "data" / "bars"  # where Settings.data_dir puts the columnar store


def restore_backup(settings: Settings, dest: str, backup_id: str | None = None, *,
                   database_url: str | None = None, home: Path | None = None,
                   force: bool = False, progress: Progress | None = None) -> RestoreReport:
    target, key, manifest = open_backup(settings, dest, backup_id)
    url = normalise_url(database_url or settings.resolved_database_url)
    target_home = home or settings.home
    if (manifest.backend == "sqlite") != is_sqlite_url(url):
        raise BadInputError(f"backup {manifest.id} is of a {manifest.backend} database and "
                            f"cannot be restored into {make_url(url).get_backend_name()}; "
                            "name a matching database with --database-url")
    columnar = manifest.bar_store == "columnar"
    if (columnar and database_url and home is None
            and normalise_url(database_url) != normalise_url(settings.resolved_database_url)):
        raise BadInputError("this backup holds columnar bar files, which live under the home "
                            "directory: to restore into another database, also pass --home "
                            "for its files, or the live bar files would be replaced")
    problems = compatibility_problems(manifest)
    if problems and not force:
        raise OperationalError(
            f"refusing to restore backup {manifest.id}: " + "; ".join(problems)
            + ". Restore it with the release that made it and then run `signalfactory db "
            "upgrade`, or pass --force if you know the difference is harmless; the target "
            "database is unchanged")
    try:
        occupied = _rows_in(url)
    except sa.exc.DBAPIError as exc:
        if not force:
            raise ConflictError(f"the target database cannot be read ({exc.orig}); to replace "
                                "it with the backup, pass --force") from exc
        occupied = {"(unreadable)": 1}
    if occupied and not force:
        listing = ", ".join(sorted(occupied))
        raise ConflictError(f"the target database is not empty (rows in {listing}); a restore "
                            "replaces all of it: pass --force to confirm, or name an empty "
                            "database with --database-url")
    marker = restore_marker(target_home)
    target_home.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"backup_id": manifest.id, "pid": os.getpid(),
                                  "started_at": datetime.now(UTC).isoformat()}))
    keep_marker = False
    try:
        bars_root = _bars_root(target_home) if columnar else None
        if manifest.backend == "sqlite":
            report = _restore_sqlite(target, key, manifest, url, bars_root, progress)
        else:
            report, keep_marker = _restore_postgres(target, key, manifest, url, bars_root,
                                                    target_home, progress)
    except _HalfRestoredError:
        keep_marker = True
        raise
    finally:
        if not keep_marker:
            marker.unlink(missing_ok=True)
    return replace(report, forced=force, replaced_existing=bool(occupied))


class _HalfRestoredError(OperationalError):
    """The target may be in neither state; the marker stays and readiness keeps failing."""


def _aside(path: Path, backup_id: str) -> Path:
    return path.with_name(f"{path.name}.pre-restore-{backup_id}")


def _swap_in(pairs: list[tuple[Path, Path]], backup_id: str) -> None:
    """Rename each staged path onto its live path; on any failure, put the old ones back."""
    moved: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for _staged, live in pairs:
            for old in (live, live.with_name(live.name + "-wal"),
                        live.with_name(live.name + "-shm")):
                if old.exists():
                    old.rename(_aside(old, backup_id))
                    moved.append((old, _aside(old, backup_id)))
        for staged, live in pairs:
            staged.rename(live)
            placed.append(live)
    except OSError as exc:
        try:
            for live in placed:
                shutil.rmtree(live) if live.is_dir() else live.unlink()
            for old, aside in reversed(moved):
                aside.rename(old)
        except OSError as undo:
            raise _HalfRestoredError(
                f"the restore failed while swapping files in ({exc}) and the previous files "
                f"could not be put back ({undo}); they are kept as *.pre-restore-{backup_id}"
            ) from exc
        raise OperationalError(f"the restore failed while swapping files in ({exc}); the "
                               "target is unchanged") from exc
    for _old, aside in moved:
        shutil.rmtree(aside, ignore_errors=True) if aside.is_dir() else aside.unlink(
            missing_ok=True)


def _stage_dir(near: Path, prefix: str) -> Path:
    near.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=near))


def _restore_sqlite(target: object, key: object, manifest: Manifest, url: str,
                    bars_root: Path | None, progress: Progress | None) -> RestoreReport:
    db_path = sqlite_path(url).resolve()
    # Staging beside each live path: the final step is a rename on the same filesystem.
    db_stage = _stage_dir(db_path.parent, ".restore-")
    bars_stage = _stage_dir(bars_root.parent, ".restore-bars-") if bars_root else None
    try:
        staged_bars = bars_stage / "bars" if bars_stage else None
        if staged_bars is not None:
            staged_bars.mkdir()
        fetched = fetch_parts(target, manifest, key, placer(db_stage, staged_bars),  # type: ignore[arg-type]
                              progress)
        started = time.monotonic()
        staged_db = db_stage / SQLITE_PART
        tables, bars = measure(f"sqlite:///{staged_db}", staged_bars, manifest)
        require_match(manifest, tables, bars, "the decrypted copy")
        checked = time.monotonic() - started
        started = time.monotonic()
        pairs = [(staged_db, db_path)]
        if staged_bars is not None and bars_root is not None:
            pairs.append((staged_bars, bars_root))
        _swap_in(pairs, manifest.id)
        swapped = time.monotonic() - started
    finally:
        shutil.rmtree(db_stage, ignore_errors=True)
        if bars_stage is not None:
            shutil.rmtree(bars_stage, ignore_errors=True)
    return RestoreReport(
        backup_id=manifest.id, database=str(db_path), forced=False, replaced_existing=False,
        rows=sum(t.rows for t in tables.values()) + sum(b.rows for b in bars.values()),
        fetch_seconds=round(fetched.seconds, 3), restore_seconds=round(swapped, 3),
        check_seconds=round(checked, 3))


def _restore_postgres(target: object, key: object, manifest: Manifest, url: str,
                      bars_root: Path | None, home: Path,
                      progress: Progress | None) -> tuple[RestoreReport, bool]:
    stage = _stage_dir(home, ".restore-")
    bars_stage = _stage_dir(bars_root.parent, ".restore-bars-") if bars_root else None
    try:
        staged_bars = bars_stage / "bars" if bars_stage else None
        if staged_bars is not None:
            staged_bars.mkdir()
        fetched = fetch_parts(target, manifest, key, placer(stage, staged_bars),  # type: ignore[arg-type]
                              progress)
        started = time.monotonic()
        if pgtools.database_exists(url):
            # One transaction, committed only when everything loaded: unchanged on failure.
            pgtools.restore_dump(url, stage / PG_PART, replace=True)
        else:
            # The database was lost: nothing to protect, so load in parallel into a new one,
            # and drop it again if that fails (leaving things as they were: no database).
            pgtools.create_database(url)
            try:
                pgtools.load_dump_parallel(url, stage / PG_PART)
            except BaseException:
                pgtools.drop_database(url)
                raise
        if staged_bars is not None and bars_root is not None:
            _swap_in([(staged_bars, bars_root)], manifest.id)
        restored = time.monotonic() - started
        started = time.monotonic()
        tables, bars = measure(url, bars_root, manifest)
        try:
            require_match(manifest, tables, bars, "the restored database")
        except OperationalError as exc:
            raise _HalfRestoredError(f"{exc}; the restore marker stays until this is "
                                     "resolved") from exc
        checked = time.monotonic() - started
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if bars_stage is not None:
            shutil.rmtree(bars_stage, ignore_errors=True)
    report = RestoreReport(
        backup_id=manifest.id, database=make_url(url).render_as_string(hide_password=True),
        forced=False, replaced_existing=False,
        rows=sum(t.rows for t in tables.values()) + sum(b.rows for b in bars.values()),
        fetch_seconds=round(fetched.seconds, 3), restore_seconds=round(restored, 3),
        check_seconds=round(checked, 3))
    return report, False
