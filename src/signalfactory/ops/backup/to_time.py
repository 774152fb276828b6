"""`backup restore --to-time T`: the state of the database as of time T.

From regular backups (SQLite's incremental ones, taken every ``backup_rpo_seconds``), that is
the newest complete backup taken at or before T: what a restore to T can honestly bring back.
The restore window is what the destination holds: from its oldest complete backup (older ones
were pruned by the retention policy) up to now. A T before it, or in the future, is refused
before anything is touched (exit 2).

Backends dispatch here: :func:`restore_to_time` picks the restore for the target database's
backend; PostgreSQL point-in-time recovery (WAL archiving) plugs in as its own entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from signalfactory.adapters.storage.db import is_sqlite_url, normalise_url
from signalfactory.domain.errors import BadInputError
from signalfactory.ops.backup.fetch import Progress, backup_key, load_manifest
from signalfactory.ops.backup.manifest import Manifest
from signalfactory.ops.backup.prune import created_at
from signalfactory.ops.backup.restore import RestoreReport, restore_backup
from signalfactory.ops.backup.targets import open_target
from signalfactory.settings import Settings


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with its zone (``2026-12-04T12:00:00Z``); refused without one."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInputError(f"--to-time {text!r} is not an ISO 8601 time; write it like "
                            "2026-12-04T12:00:00Z") from exc
    if when.tzinfo is None:
        raise BadInputError(f"--to-time {text!r} has no time zone; add one, e.g. "
                            f"{text.strip()}Z for UTC")
    return when.astimezone(UTC)


@dataclass(frozen=True)
class ToTimeReport:
    to_time: str
    #: how far before T the restored state is (T minus the backup's snapshot time)
    gap_seconds: float
    restore: RestoreReport

    def to_dict(self) -> dict[str, object]:
        return {"to_time": self.to_time, "gap_seconds": self.gap_seconds,
                **asdict(self.restore)}


def backup_at(settings: Settings, dest: str, when: datetime,
              now: datetime | None = None) -> Manifest:
    """The newest complete backup taken at or before ``when``, refusing a ``when`` outside
    the window the destination covers."""
    now = now or datetime.now(UTC)
    target = open_target(dest)
    ids = target.list_ids()
    if when > now:
        raise BadInputError(f"--to-time {when.isoformat()} is in the future (now is "
                            f"{now.isoformat(timespec='seconds')}); nothing was restored")
    if not ids:
        raise BadInputError(f"there is no complete backup in {target.url} to restore to "
                            f"{when.isoformat()}; nothing was restored")
    oldest = min(created_at(i) for i in ids)
    if when < oldest:
        raise BadInputError(
            f"--to-time {when.isoformat()} is before the restore window of {target.url}, "
            f"which starts at its oldest backup kept by the retention policy "
            f"({oldest.isoformat()}); nothing was restored. See `signalfactory backup list`")
    # ids sort by time at second precision; the manifest's own time decides at the edge.
    key = backup_key(settings)
    for backup_id in sorted(ids, key=created_at, reverse=True):
        if created_at(backup_id) > when:
            continue
        manifest = load_manifest(target, key, backup_id)
        if manifest.created <= when:
            return manifest
    raise BadInputError(f"no backup in {target.url} was taken at or before "
                        f"{when.isoformat()}; nothing was restored")


def restore_to_time(settings: Settings, dest: str, when: datetime, *,
                    database_url: str | None = None, home: Path | None = None,
                    force: bool = False, progress: Progress | None = None) -> ToTimeReport:
    url = normalise_url(database_url or settings.resolved_database_url)
    backend = "sqlite" if is_sqlite_url(url) else "postgresql"
    return RESTORES_TO_TIME[backend](settings, dest, when, database_url, home, force, progress)


def from_backups(settings: Settings, dest: str, when: datetime, database_url: str | None,
                  home: Path | None, force: bool, progress: Progress | None) -> ToTimeReport:
    manifest = backup_at(settings, dest, when)
    report = restore_backup(settings, dest, manifest.id, database_url=database_url,
                            home=home, force=force, progress=progress)
    return ToTimeReport(to_time=when.isoformat(),
                        gap_seconds=round((when - manifest.created).total_seconds(), 3),
                        restore=report)


ToTimeRestore = Callable[[Settings, str, datetime, str | None, Path | None, bool,
                          Progress | None], ToTimeReport]

#: backend -> how it restores to a time. PostgreSQL without point-in-time recovery uses its
#: regular (pg_dump) backups the same way as SQLite; WAL-based recovery replaces its entry.
RESTORES_TO_TIME: dict[str, ToTimeRestore] = {"sqlite": from_backups,
                                              "postgresql": from_backups}
