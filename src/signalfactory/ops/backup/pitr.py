"""PostgreSQL point-in-time recovery with pgBackRest: setup, base backups, the restorable window.

The window runs from the end of the oldest base backup (the first moment a restore can reach
a consistent state) to the newest commit found in the archived WAL. The end is read from the
WAL itself (the newest archived segments, fetched and decrypted through pgBackRest, then
``pg_waldump``), not from when a segment was pushed: a time after that commit could hide
commits that were never archived, so it is refused rather than silently restored short.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import zstandard

from signalfactory.adapters.storage.db import create_db_engine
from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.ops.backup.crypto import WrongKeyError
from signalfactory.ops.backup.pitr_config import (
    PitrConfig,
    RepositoryOwnerError,
    check_marker,
    failure_detail,
    marker_exists,
    own,
    pgbackrest,
    pitr_config,
    postgresql_conf_lines,
    write_marker,
)
from signalfactory.settings import Settings

#: archived segments searched (newest first) for the newest commit
_SEGMENTS_SEARCHED = 8
_SEGMENT = re.compile(r"^([0-9A-F]{24})-([0-9a-f]{40})(?:\.(zst|gz|lz4|bz2))?$")
_COMMIT = re.compile(r"lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: COMMIT\S* "
                     r"(?:\d+: )?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
BACKUP_TYPES = ("full", "diff", "incr")


class DamagedWalError(OperationalError):
    """A WAL segment in the repository cannot be read back as it was archived."""

    code = "damaged-wal"


@dataclass(frozen=True)
class Stanza:
    """What ``pgbackrest info`` says about this stanza, checked against the marker."""

    system_id: int
    pg_version: str
    archive_id: str
    wal_min: str | None
    wal_max: str | None
    backups: list[dict[str, Any]]


@dataclass(frozen=True)
class Window:
    """The restorable window, and how fresh the archive is."""

    start: datetime
    end: datetime
    #: the newest commit in the archived WAL (None: none in the segments searched)
    newest_commit: datetime | None
    #: where that commit record is in the WAL: a restore to "now" stops right after it
    newest_commit_lsn: str | None
    newest_wal: str | None
    newest_wal_pushed: datetime | None
    backups: int
    oldest_backup: str
    newest_backup: str

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        for name in ("start", "end", "newest_commit", "newest_wal_pushed"):
            value = data[name]
            data[name] = value.isoformat() if value else None
        now = datetime.now(UTC)
        data["newest_wal_age_seconds"] = (
            round((now - self.newest_wal_pushed).total_seconds(), 3)
            if self.newest_wal_pushed else None)
        data["end_age_seconds"] = round((now - self.end).total_seconds(), 3)
        return data


def _utc(epoch: object) -> datetime:
    if not isinstance(epoch, int | float):
        raise OperationalError(f"pgbackrest info gave a timestamp of {epoch!r}")
    return datetime.fromtimestamp(epoch, UTC)


def _json(done: subprocess.CompletedProcess[bytes], what: str) -> Any:  # noqa: ANN401 - pgBackRest JSON, read field by field
    try:
        return json.loads(done.stdout)
    except ValueError as exc:
        raise OperationalError(f"pgbackrest {what} did not answer JSON: "
                               f"{failure_detail(done)}") from exc


def read_stanza(cfg: PitrConfig) -> Stanza:
    """``pgbackrest info`` parsed; refuses a repository that is not ours or not readable."""
    check_marker(cfg, [])  # the key and the deployment, before pgBackRest decrypts anything
    answer = _json(pgbackrest(cfg, "info", "--output=json", timeout=120), "info")
    entry = next((e for e in answer if isinstance(e, dict) and e.get("name") == cfg.stanza),
                 None) if isinstance(answer, list) else None
    if entry is None:
        raise OperationalError(f"pgbackrest info does not list stanza {cfg.stanza}; run "
                               "`signalfactory backup pitr setup`")
    for repo in entry.get("repo", []):
        status = repo.get("status", {})
        if status.get("code") not in (0, 2):  # 2: stanza exists but holds no backup yet
            message = str(status.get("message", ""))
            if "unable to load info file" in message:
                raise WrongKeyError(
                    f"the PITR repository {cfg.repo} cannot be decrypted with the configured "
                    "backup key; set SIGNALFACTORY_BACKUP_KEY to the key in use when it was "
                    "set up. Nothing was restored")
            raise OperationalError(f"the PITR repository {cfg.repo} is not usable: "
                                   f"{message[:500]}")
    dbs = sorted(entry.get("db", []), key=lambda d: int(d.get("id", 0)))
    if not dbs:
        raise OperationalError(f"stanza {cfg.stanza} has no database yet; run "
                               "`signalfactory backup pitr setup`")
    check_marker(cfg, [int(d["system-id"]) for d in dbs])
    current = dbs[-1]
    archive_id = f"{current['version']}-{current['id']}"
    archive: dict[str, Any] = next(
        (a for a in entry.get("archive", []) if a.get("id") == archive_id), {})
    backups = [b for b in entry.get("backup", [])
               if b.get("database", {}).get("id") == current["id"] and not b.get("error")]
    return Stanza(system_id=int(current["system-id"]), pg_version=str(current["version"]),
                  archive_id=archive_id, wal_min=archive.get("min"), wal_max=archive.get("max"),
                  backups=backups)


def live_system_id(settings: Settings) -> int | None:
    """The configured server's system identifier, or None when it cannot be reached."""
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(
                "SELECT system_identifier FROM pg_control_system()").scalar_one())
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def check_live_server(settings: Settings, stanza: Stanza) -> None:
    """When the configured server answers, it must be the database system archived here."""
    live = live_system_id(settings)
    if live is not None and live != stanza.system_id:
        raise RepositoryOwnerError(
            f"the PITR repository holds database system {stanza.system_id}, but the "
            f"configured database is system {live}: the repository belongs to another "
            "database. Point SIGNALFACTORY_PITR_REPO at this deployment's repository")


def bin_dir(cfg: PitrConfig, pg_version: str) -> Path:
    found = cfg.bin_dir or Path(f"/usr/lib/postgresql/{pg_version}/bin")
    if not (found / "pg_ctl").exists():
        raise OperationalError(f"no PostgreSQL {pg_version} server binaries in {found}; install "
                               f"postgresql-{pg_version} or set SIGNALFACTORY_PITR_PG_BIN_DIR")
    return found


# -- the archived WAL ---------------------------------------------------------------------


def _archive_listing(cfg: PitrConfig, stanza: Stanza, prefix: str) -> dict[str, object]:
    done = pgbackrest(cfg, "repo-ls", "--output=json",
                      f"archive/{cfg.stanza}/{stanza.archive_id}/{prefix}", timeout=60)
    listing = _json(done, "repo-ls")
    return listing if isinstance(listing, dict) else {}


def archived_segments(cfg: PitrConfig, stanza: Stanza) -> list[tuple[str, str, datetime]]:
    """The newest archived segments (name, repository file, push time), newest first."""
    if stanza.wal_max is None:
        return []
    found: list[tuple[str, str, datetime]] = []
    prefix = stanza.wal_max[:16]
    floor = (stanza.wal_min or stanza.wal_max)[:16]
    while len(found) < _SEGMENTS_SEARCHED:
        listing = _archive_listing(cfg, stanza, prefix)
        files = []
        for name, meta in listing.items():
            match = _SEGMENT.match(name)
            if match and isinstance(meta, dict):
                files.append((match.group(1), name, _utc(meta.get("time"))))
        found.extend(sorted(files, reverse=True))
        if prefix <= floor:
            break
        prefix = f"{int(prefix, 16) - 1:016X}"
    return found[:_SEGMENTS_SEARCHED]


def fetch_segment(cfg: PitrConfig, stanza: Stanza, repo_file: str, into: Path) -> Path:
    """Decrypt, decompress and checksum one archived segment into ``into``."""
    match = _SEGMENT.match(repo_file)
    if match is None:
        raise OperationalError(f"{repo_file} is not a WAL segment name")
    segment, checksum, compression = match.groups()
    path = f"archive/{cfg.stanza}/{stanza.archive_id}/{segment[:16]}/{repo_file}"
    done = pgbackrest(cfg, "repo-get", path, timeout=300, check=False)
    fix = ("restore to a time before this segment, or take a new full backup "
           "(`signalfactory backup pitr backup --type full`) so later times do not need it")
    if done.returncode != 0:
        raise DamagedWalError(f"WAL segment {segment} in the repository cannot be read "
                              f"({failure_detail(done)[:300]}): it is truncated or corrupted; "
                              f"{fix}")
    data = done.stdout
    try:
        if compression == "zst":
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        elif compression == "gz":
            data = gzip.decompress(data)
        elif compression:
            raise OperationalError(f"segment {segment} uses {compression}, which this reader "
                                   "does not decompress")
    except (zstandard.ZstdError, OSError, EOFError) as exc:
        raise DamagedWalError(f"WAL segment {segment} in the repository does not decompress "
                              f"({exc}): it is truncated or corrupted; {fix}") from exc
    if hashlib.sha1(data).hexdigest() != checksum:  # noqa: S324 - pgBackRest names files by SHA-1
        raise DamagedWalError(f"WAL segment {segment} in the repository does not match its "
                              f"checksum: it is truncated or corrupted; {fix}")
    target = into / segment
    target.write_bytes(data)
    return target


def last_commit(bins: Path, segment: Path) -> tuple[datetime, str] | None:
    """The newest commit record's time and LSN in one WAL segment (None: it holds none)."""
    done = subprocess.run(  # noqa: S603
        [str(bins / "pg_waldump"), str(segment)], capture_output=True, timeout=120,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}, check=False)
    # pg_waldump stops with an error where the segment's records end: that is expected.
    stamps = _COMMIT.findall(done.stdout.decode(errors="replace"))
    if not stamps:
        return None
    lsn, when = stamps[-1]
    return datetime.fromisoformat(when).replace(tzinfo=UTC), lsn


def restorable_window(settings: Settings, cfg: PitrConfig | None = None) -> Window:
    cfg = cfg or pitr_config(settings)
    stanza = read_stanza(cfg)
    return window_of(cfg, stanza)


def window_of(cfg: PitrConfig, stanza: Stanza) -> Window:
    if not stanza.backups:
        raise OperationalError(f"the PITR repository {cfg.repo} holds no base backup yet; run "
                               "`signalfactory backup pitr backup --type full`")
    ordered = sorted(stanza.backups, key=lambda b: _utc(b["timestamp"]["stop"]))
    # pgBackRest records whole seconds: the next one is surely past the consistent point.
    start = _utc(ordered[0]["timestamp"]["stop"] + 1)
    newest_stop = _utc(ordered[-1]["timestamp"]["stop"])
    segments = archived_segments(cfg, stanza)
    bins = bin_dir(cfg, stanza.pg_version)
    found: tuple[datetime, str] | None = None
    with tempfile.TemporaryDirectory(prefix="sf-pitr-wal-") as tmp:
        for _name, repo_file, _pushed in segments:
            path = fetch_segment(cfg, stanza, repo_file, Path(tmp))
            found = last_commit(bins, path)
            path.unlink()
            if found is not None:
                break
    commit = found[0] if found else None
    end = max(t for t in (commit, newest_stop) if t is not None)
    return Window(start=start, end=end, newest_commit=commit,
                  newest_commit_lsn=found[1] if found else None,
                  newest_wal=segments[0][0] if segments else None,
                  newest_wal_pushed=segments[0][2] if segments else None,
                  backups=len(ordered), oldest_backup=str(ordered[0]["label"]),
                  newest_backup=str(ordered[-1]["label"]))


def newest_restorable_time(settings: Settings) -> datetime:
    """The newest moment a PITR restore can reach now: the newest archived commit."""
    return restorable_window(settings).end


# -- setup and base backups ---------------------------------------------------------------


@dataclass(frozen=True)
class SetupReport:
    config_path: str
    repo: str
    stanza: str
    system_id: int
    postgresql_conf: list[str]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def setup_pitr(settings: Settings) -> SetupReport:
    """Write the config, create the stanza and the marker (idempotent); refuses a repository
    that belongs to someone else instead of taking it over."""
    cfg = pitr_config(settings)
    if cfg.repo_dir is not None:
        cfg.repo_dir.mkdir(parents=True, exist_ok=True)
        own(cfg, cfg.repo_dir)
    had_marker = marker_exists(cfg)
    if had_marker:
        check_marker(cfg, [])
    pgbackrest(cfg, "stanza-create", timeout=300)
    answer = _json(pgbackrest(cfg, "info", "--output=json", timeout=120), "info")
    entry = next(e for e in answer if e.get("name") == cfg.stanza)
    system_id = int(sorted(entry["db"], key=lambda d: int(d["id"]))[-1]["system-id"])
    if had_marker:
        check_marker(cfg, [system_id])
    else:
        write_marker(cfg, system_id)
    return SetupReport(config_path=str(cfg.config_path), repo=str(cfg.repo),
                       stanza=cfg.stanza, system_id=system_id,
                       postgresql_conf=postgresql_conf_lines(cfg))


def check_archiving(settings: Settings) -> None:
    """``pgbackrest check``: the server archives into this repository right now."""
    cfg = pitr_config(settings)
    read_stanza(cfg)
    pgbackrest(cfg, "check", timeout=300)


@dataclass(frozen=True)
class BaseBackupReport:
    label: str
    type: str
    started_at: str
    stopped_at: str
    size: int
    repo_size: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_base_backup(settings: Settings, backup_type: str = "incr") -> BaseBackupReport:
    """One base backup (full, diff or incr), then pgBackRest's time-based expiry."""
    if backup_type not in BACKUP_TYPES:
        raise BadInputError(f"backup type {backup_type!r}: use one of {', '.join(BACKUP_TYPES)}")
    cfg = pitr_config(settings)
    stanza = read_stanza(cfg)
    check_live_server(settings, stanza)
    # The first backup of a stanza is full whatever was asked: incremental needs a base.
    pgbackrest(cfg, "backup", f"--type={backup_type}", timeout=24 * 3600)
    newest = max(read_stanza(cfg).backups, key=lambda b: b["timestamp"]["stop"])
    info = newest.get("info", {})
    repository = info.get("repository", {}) if isinstance(info, dict) else {}
    return BaseBackupReport(
        label=str(newest["label"]), type=str(newest["type"]),
        started_at=_utc(newest["timestamp"]["start"]).isoformat(),
        stopped_at=_utc(newest["timestamp"]["stop"]).isoformat(),
        size=int(info.get("size", 0)) if isinstance(info, dict) else 0,
        repo_size=int(repository.get("size", 0)) if isinstance(repository, dict) else 0)
