"""A consistent snapshot of the database and of the bar files kept beside it.

SQLite: the online backup API copies the database into a staging file while writers go on
(it restarts by itself if a page changes under it). PostgreSQL: one REPEATABLE READ
transaction exports its snapshot; ``pg_dump --snapshot`` dumps exactly that state and the
checksums are computed inside the same transaction, so they describe the dump to the row.

Columnar bar segments are immutable files; the snapshot's ``bar_segments`` rows say which ones
belong to it. They are hard-linked into the staging folder (instant, no extra space, and the
content survives a compaction deleting the original); a segment that vanished between the
database snapshot and the link means a compaction won the race, and the snapshot is retaken.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from signalfactory.adapters.storage.audit import newest_entry
from signalfactory.adapters.storage.columnar import ColumnarBarStore
from signalfactory.adapters.storage.tables import bar_segments
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.ops.backup import pgtools
from signalfactory.ops.backup.checks import bar_checks, table_checks
from signalfactory.ops.backup.manifest import TableCheck
from signalfactory.services.platform import Platform

SQLITE_PART = "database.sqlite"
PG_PART = "database.pgdump"
_RETRIES = 5


@dataclass(frozen=True)
class PartSource:
    name: str    # where it is restored: SQLITE_PART, PG_PART or "bars/<tf>/<file>.arrow"
    kind: str    # "sqlite", "pg_dump" or "bar_segment"
    open: Callable[[], AbstractContextManager[IO[bytes]]]


@dataclass(frozen=True)
class Snapshot:
    backend: str
    bar_store: str
    schema_revision: str | None
    tables: dict[str, TableCheck]
    bars: dict[str, TableCheck]
    parts: tuple[PartSource, ...]
    #: the newest audit entry in this snapshot, ``SEQ:HASH`` (None: empty or no audit log)
    audit_head: str | None = None


def _file_opener(path: Path) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: path.open("rb")


def _revision(conn: Connection) -> str | None:
    # Read alembic's table directly: MigrationContext logs at info level into --json output.
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _audit_head(conn: Connection) -> str | None:
    head = newest_entry(conn)
    return f"{head.seq}:{head.hash}" if head is not None else None


def _has_segments_table(conn: Connection) -> bool:
    return sa.inspect(conn).has_table(bar_segments.name)


def _link_segments(conn: Connection, live_root: Path, staged_root: Path) -> list[str] | None:
    """Hard-link (or copy) the snapshot's segment files; None when one has vanished."""
    if not _has_segments_table(conn):
        return []
    rels = sorted(r[0] for r in conn.execute(sa.select(bar_segments.c.path)))
    for rel in rels:
        src, dst = live_root / rel, staged_root / rel
        if not dst.resolve().is_relative_to(staged_root.resolve()):
            raise OperationalError(f"bar_segments lists {rel!r}, outside the bar store")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            try:
                shutil.copyfile(src, dst)
            except FileNotFoundError:
                return None
    return rels


def _segment_parts(staged_root: Path, rels: list[str]) -> list[PartSource]:
    return [PartSource(f"bars/{rel}", "bar_segment", _file_opener(staged_root / rel))
            for rel in rels]


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BadInputError(f"{url} is not a SQLite file; backups need a file database")
    return Path(database)


def copy_sqlite(source: Path, dest: Path) -> None:
    """Online backup of a live SQLite database into a standalone file (no WAL beside it)."""
    if not source.exists():
        raise BadInputError(f"there is no database at {source} to back up; run "
                            "`signalfactory init` first")
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst, pages=16384)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def _columnar_root(platform: Platform) -> Path | None:
    store = sql_database(platform.database).bar_store
    return store.root if isinstance(store, ColumnarBarStore) else None


@contextmanager
def _sqlite_snapshot(platform: Platform, staging: Path) -> Iterator[Snapshot]:
    live_db = sqlite_path(platform.settings.resolved_database_url)
    live_bars = _columnar_root(platform)
    for _attempt in range(_RETRIES):
        for stale in staging.iterdir():
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        staged_db = staging / SQLITE_PART
        copy_sqlite(live_db, staged_db)
        engine = sa.create_engine(f"sqlite:///{staged_db}")
        try:
            with engine.connect() as conn:
                rels = (_link_segments(conn, live_bars, staging / "bars")
                        if live_bars is not None else [])
                if rels is None:
                    continue
                snap = Snapshot(
                    backend="sqlite", bar_store=platform.settings.resolved_bar_store,
                    schema_revision=_revision(conn), tables=table_checks(conn),
                    audit_head=_audit_head(conn),
                    bars=bar_checks(conn, staging / "bars" if live_bars is not None else None),
                    parts=(PartSource(SQLITE_PART, "sqlite", _file_opener(staged_db)),
                           *_segment_parts(staging / "bars", rels)))
        finally:
            engine.dispose()
        yield snap
        return
    raise OperationalError("the bar store kept changing during the snapshot (compactions); "
                           "try again when ingests are quieter")


@contextmanager
def _postgres_snapshot(platform: Platform, staging: Path) -> Iterator[Snapshot]:
    live_bars = _columnar_root(platform)
    url = platform.settings.resolved_database_url
    for _attempt in range(_RETRIES):
        with sql_database(platform.database).engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
            with conn.begin():
                snapshot_id = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                rels = (_link_segments(conn, live_bars, staging / "bars")
                        if live_bars is not None else [])
                if rels is None:
                    shutil.rmtree(staging / "bars", ignore_errors=True)
                    continue
                snap = Snapshot(
                    backend="postgresql", bar_store=platform.settings.resolved_bar_store,
                    schema_revision=_revision(conn), tables=table_checks(conn),
                    audit_head=_audit_head(conn),
                    bars=bar_checks(conn, staging / "bars" if live_bars is not None else None),
                    parts=(PartSource(PG_PART, "pg_dump",
                                      partial(pgtools.pg_dump_stream, url, snapshot_id)),
                           *_segment_parts(staging / "bars", rels)))
                # The exporting transaction stays open until the dump is done: pg_dump
                # imports the snapshot when it starts, and it must still exist then.
                yield snap
                return
    raise OperationalError("the bar store kept changing during the snapshot (compactions); "
                           "try again when ingests are quieter")


def take_snapshot(platform: Platform, staging: Path) -> AbstractContextManager[Snapshot]:
    """Use the parts inside the ``with`` block: on PostgreSQL they need the open snapshot."""
    if platform.settings.is_sqlite:
        return _sqlite_snapshot(platform, staging)
    return _postgres_snapshot(platform, staging)
