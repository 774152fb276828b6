"""PostgreSQL point-in-time recovery with pgBackRest, against a private PostgreSQL cluster.

The shared server on 5432 is never reconfigured: a module fixture runs initdb in a temporary
directory, starts it on a free loopback port with WAL archiving into a pgBackRest repository,
and removes everything afterwards. Rows are written at t1 < t2 < t3; a restore to a moment
between t2 and t3 must hold t1 and t2 but not t3. Each fault (time outside the window, wrong
key, truncated WAL segment, repository of another deployment or database) is refused with the
target data directory unchanged, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.cli import app
from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.settings import Settings
from tests.conftest import IN_CI, PG_ADMIN_URL, require_postgres
from tests.helpers import runner
from tests.integration.backup_fixtures import KEY_B64, OTHER_KEY_HEX

# One private cluster for the module, on one xdist worker (make test runs --dist loadgroup).
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120), pytest.mark.xdist_group("pitr")]

BIN = Path("/usr/lib/postgresql/15/bin")


def _missing() -> str | None:
    if not (BIN / "initdb").exists():
        return f"PostgreSQL 15 server binaries are not in {BIN}"
    if shutil.which("pgbackrest") is None:
        return "pgbackrest is not installed (make tools installs it)"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "the private cluster runs as the postgres OS user: needs root and runuser"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres OS user"
    return None


def _as_postgres(*args: str, timeout: float = 60) -> None:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args[0]} failed: {done.stdout}{done.stderr}"


def _cli(env: dict[str, str], *args: str) -> Any:
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def _restore(cluster: Cluster, when: str, target: Path | None, *extra: str,
             **env: str) -> Any:
    """`backup restore --to-time` through the CLI, with the cluster's settings."""
    args = ["backup", "restore", "--to-time", when, *extra]
    if target is not None:
        args += ["--pg-data", str(target)]
    return _cli(cluster.env(**env), *args)


def _free_port() -> int:
    from signalfactory.ops.backup.pitr_restore import free_port

    port: int = free_port()
    return port


@dataclass
class Cluster:
    base: Path
    data: Path
    port: int
    settings: Settings
    times: dict[str, datetime]
    #: WAL segment holding t2's commit
    t2_segment: str
    #: between t2's commit and t3's
    between: datetime

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def env(self, **extra: str) -> dict[str, str]:
        values = {"HOME": str(self.base / "home"), "DATABASE_URL": self.url,
                  "BACKUP_KEY": KEY_B64, "PITR_REPO": str(self.base / "repo"),
                  "PITR_PG_DATA": str(self.data), "PITR_PG_SOCKET_DIR": str(self.base / "sock"),
                  "PITR_OS_USER": "postgres", "PITR_PG_BIN_DIR": str(BIN), **extra}
        return {f"SIGNALFACTORY_{k}": v for k, v in values.items()}

    def with_(self, **changes: object) -> Settings:
        return self.settings.model_copy(update=changes)


def _settings(base: Path, data: Path, port: int, **more: object) -> Settings:
    return Settings(**more, home=base / "home",
                    database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                    backup_key=KEY_B64, pitr_repo=base / "repo", pitr_pg_data=data,
                    pitr_pg_socket_dir=base / "sock", pitr_os_user="postgres",
                    pitr_pg_bin_dir=BIN, trading_report_cron="", anomaly_scan_cron="")


def _write_row(engine: sa.Engine, label: str) -> datetime:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO pitr_rows (label) VALUES ('{label}')")
    return datetime.now(UTC)  # after the commit returned: not before the commit's time


def _wait_archived(engine: sa.Engine, segment: str, timeout: float = 20) -> datetime:
    """When ``segment`` was archived (archive_timeout switches it out on its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done, at = conn.exec_driver_sql(
                "SELECT last_archived_wal, last_archived_time FROM pg_stat_archiver").one()
        if done is not None and done >= segment:
            return at.astimezone(UTC)  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"segment {segment} was not archived within {timeout} s")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    problem = _missing()
    if problem:
        if IN_CI:
            pytest.fail(problem + "; CI=true requires it")
        pytest.skip(problem)
    from signalfactory.ops.backup.pitr import run_base_backup, setup_pitr
    from signalfactory.ops.backup.pitr_config import pitr_config, postgresql_conf_lines

    # Not under pytest's tmp_path: that is 0700 root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="sf-pitr-test-", dir="/tmp"))
    base.chmod(0o711)
    data, port = base / "data", _free_port()
    for sub in ("home", "sock", "repo"):
        (base / sub).mkdir(mode=0o711)
    data.mkdir(mode=0o700)
    for owned in (base / "sock", data):
        shutil.chown(owned, "postgres")
    settings = _settings(base, data, port)
    engine: sa.Engine | None = None
    try:
        _as_postgres(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                     "--no-sync")
        conf = [line for line in postgresql_conf_lines(pitr_config(settings))
                if not line.startswith("archive_timeout")]
        conf += [f"port = {port}", "listen_addresses = '127.0.0.1'",
                 f"unix_socket_directories = '{base / 'sock'}'", "archive_timeout = 1",
                 "fsync = off", "max_wal_senders = 2"]
        with (data / "postgresql.conf").open("a") as fh:
            fh.write("\n".join(conf) + "\n")
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "sock" / "server.log"),
                     "-w", "start")
        setup_pitr(settings)
        engine = sa.create_engine(settings.resolved_database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE pitr_rows (label text PRIMARY KEY, "
                                 "at timestamptz DEFAULT clock_timestamp())")
        run_base_backup(settings, "full")
        time.sleep(1.1)  # the window starts the second after the backup's (whole-second) end
        times = {"t1": _write_row(engine, "t1")}
        time.sleep(0.3)
        times["t2"] = _write_row(engine, "t2")
        with engine.connect() as conn:
            t2_segment = conn.exec_driver_sql(
                "SELECT pg_walfile_name(pg_current_wal_lsn())").scalar_one()
            # t3 goes into a later segment: damaging t2's must only hurt the replay.
            conn.exec_driver_sql("SELECT pg_switch_wal()")
        time.sleep(0.6)
        between = times["t2"] + timedelta(seconds=0.3)
        times["t3"] = _write_row(engine, "t3")
        with engine.connect() as conn:
            last = conn.exec_driver_sql("SELECT pg_walfile_name(pg_current_wal_lsn())"
                                        ).scalar_one()
        times["archived"] = _wait_archived(engine, last)
        yield Cluster(base=base, data=data, port=port, settings=settings, times=times,
                      t2_segment=t2_segment, between=between)
    finally:
        if engine is not None:
            engine.dispose()
        if (data / "postmaster.pid").exists():
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def dir_fingerprint(path: Path) -> dict[str, str]:
    """Every file under ``path`` (and the listing of its parent) with its SHA-256."""
    found = {f"../{p.name}": "" for p in path.parent.iterdir()}
    for item in sorted(path.rglob("*")):
        found[str(item.relative_to(path))] = (hashlib.sha256(item.read_bytes()).hexdigest()
                                              if item.is_file() else "dir")
    return found


@pytest.fixture
def occupied_target(cluster: Cluster) -> Iterator[Path]:
    """A data directory already holding something, for the restore to leave alone."""
    parent = Path(tempfile.mkdtemp(prefix="target-", dir=cluster.base))
    parent.chmod(0o755)
    target = parent / "pgdata"
    target.mkdir(mode=0o700)
    (target / "PG_VERSION").write_text("15\n")
    (target / "precious").write_bytes(os.urandom(4096))
    shutil.chown(target, "postgres")
    try:
        yield target
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _labels_in(cluster: Cluster, data: Path) -> list[str]:
    return labels_in(cluster.base, data)


def labels_in(base: Path, data: Path) -> list[str]:
    """Start the restored directory on a free port, read the rows (``base/sock`` holds the
    socket and the log), stop it."""
    port = _free_port()
    log = base / "sock" / "check.log"
    _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(log),
                 "-o", f"-c port={port} -c listen_addresses=127.0.0.1 -c archive_mode=off "
                 f"-c unix_socket_directories={base / 'sock'}", "-w", "start")
    try:
        engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
        try:
            with engine.connect() as conn:
                return [r[0] for r in conn.exec_driver_sql(
                    "SELECT label FROM pitr_rows ORDER BY label")]
        finally:
            engine.dispose()
    finally:
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")


def test_window_covers_the_rows_and_reports_archive_freshness(cluster: Cluster) -> None:
    from signalfactory.ops.backup.pitr import newest_restorable_time, restorable_window

    window = restorable_window(cluster.settings)
    assert window.start <= cluster.times["t1"]
    # The newest archived commit is t3's (its commit returned just before times["t3"]).
    assert window.newest_commit is not None
    assert cluster.times["t3"] - timedelta(seconds=1) < window.end <= cluster.times["t3"]
    assert newest_restorable_time(cluster.settings) == window.end
    lag = (cluster.times["archived"] - window.end).total_seconds()
    print(f"\nWAL lag: t3's commit was archived (in {window.newest_wal}) {lag:.3f} s after "
          "it committed (archive_timeout = 1)")
    result = _cli(cluster.env(), "backup", "pitr", "status", "--json")
    assert result.exit_code == 0, result.output
    assert '"newest_wal_age_seconds"' in result.stdout


def test_restore_to_a_time_between_t2_and_t3_holds_t1_and_t2_only(
        cluster: Cluster, occupied_target: Path) -> None:
    # Through the CLI, replacing an occupied (stopped) data directory with --force.
    result = _restore(cluster, cluster.between.isoformat(), occupied_target, "--force",
                      "--json")
    assert result.exit_code == 0, result.output
    assert not (occupied_target / "precious").exists()
    assert _labels_in(cluster, occupied_target) == ["t1", "t2"]
    leftovers = [p.name for p in occupied_target.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    print(f"\nPITR restore (RTO-like): {result.stdout.strip()}")


def test_restore_to_the_newest_archived_commit_holds_every_row(cluster: Cluster) -> None:
    from signalfactory.ops.backup.pitr import restorable_window
    from signalfactory.ops.backup.pitr_restore import restore_to_time

    end = restorable_window(cluster.settings).end
    target = cluster.base / "at-end"
    report = restore_to_time(cluster.settings, end, target)  # a new directory: no --force
    try:
        assert report.recovery == "lsn" and not report.replaced_existing
        assert _labels_in(cluster, target) == ["t1", "t2", "t3"]
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_restored_latest_runs_the_newest_point_and_cleans_up(cluster: Cluster) -> None:
    from signalfactory.ops.backup.pitr_restore import restored_latest

    scratch = cluster.base / "drill-scratch"
    started = time.monotonic()
    with restored_latest(cluster.settings, scratch) as server:
        engine = sa.create_engine(server.url)
        try:
            with engine.connect() as conn:
                labels = [r[0] for r in conn.exec_driver_sql(
                    "SELECT label FROM pitr_rows ORDER BY label")]
        finally:
            engine.dispose()
        assert labels == ["t1", "t2", "t3"]
        assert server.restored_to is not None
        assert server.restored_to == server.target
    assert not scratch.exists()
    print(f"\nrestored_latest: ready in {server.restore_seconds} s, "
          f"{time.monotonic() - started:.2f} s with teardown")


def test_a_time_outside_the_window_is_bad_input_and_changes_nothing(
        cluster: Cluster, occupied_target: Path) -> None:
    before = dir_fingerprint(occupied_target)
    for when in (cluster.times["t3"] + timedelta(hours=1), datetime(2001, 1, 1, tzinfo=UTC)):
        result = _restore(cluster, when.isoformat(), occupied_target, "--force")
        assert result.exit_code == 2, result.output
        assert "outside the restorable window" in result.output
    assert _restore(cluster, "yesterday", None).exit_code == 2
    # Without --force an occupied directory is refused too (exit 2).
    result = _restore(cluster, cluster.between.isoformat(), occupied_target)
    assert result.exit_code == 2 and "not empty" in result.output
    assert dir_fingerprint(occupied_target) == before


def test_a_wrong_key_is_refused_and_changes_nothing(cluster: Cluster,
                                                    occupied_target: Path) -> None:
    before = dir_fingerprint(occupied_target)
    result = _restore(cluster, cluster.between.isoformat(), occupied_target, "--force",
                      BACKUP_KEY=OTHER_KEY_HEX)
    assert result.exit_code == 1, result.output
    assert "another backup key" in result.output
    assert dir_fingerprint(occupied_target) == before


def test_a_repository_of_another_deployment_or_database_is_refused(
        cluster: Cluster, occupied_target: Path) -> None:
    from signalfactory.ops.backup.pitr_config import RepositoryOwnerError
    from signalfactory.ops.backup.pitr_restore import restore_to_time

    before = dir_fingerprint(occupied_target)
    result = _restore(cluster, cluster.between.isoformat(), occupied_target, "--force",
                      PITR_DEPLOYMENT="staging")
    assert result.exit_code == 1, result.output
    assert "belongs to deployment 'signalfactory'" in result.output
    # The marker was written for another database system than the stanza holds.
    from signalfactory.ops.backup.pitr import read_stanza
    from signalfactory.ops.backup.pitr_config import pitr_config, write_marker

    cfg = pitr_config(cluster.settings)
    marker = cfg.marker_path.read_bytes()
    write_marker(cfg, 12345)
    try:
        with pytest.raises(RepositoryOwnerError, match="set up for system 12345"):
            read_stanza(cfg)
    finally:
        cfg.marker_path.write_bytes(marker)
    # The configured database is another system than the one archived here.
    require_postgres()
    with pytest.raises(RepositoryOwnerError, match="another database"):
        restore_to_time(cluster.with_(database_url=PG_ADMIN_URL), cluster.between,
                        occupied_target, force=True)
    assert dir_fingerprint(occupied_target) == before


def test_a_truncated_wal_segment_is_refused_and_changes_nothing(
        cluster: Cluster, occupied_target: Path) -> None:
    from signalfactory.ops.backup.pitr import DamagedWalError
    from signalfactory.ops.backup.pitr_restore import restore_to_time

    damaged = cluster.base / "repo-damaged"
    subprocess.run(["cp", "-a", str(cluster.base / "repo"), str(damaged)], check=True)
    try:
        segment = next(damaged.rglob(f"{cluster.t2_segment}-*"))
        segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
        before = dir_fingerprint(occupied_target)
        with pytest.raises(DamagedWalError, match=f"{cluster.t2_segment}.*truncated.*cannot "
                                                  "pass it"):  # refused by the replay
            restore_to_time(cluster.with_(pitr_repo=damaged), cluster.between,
                            occupied_target, force=True)
        # The newest segment damaged too: refused already while reading the window.
        newest = max(damaged.rglob("0000000*-*.zst"))
        newest.write_bytes(newest.read_bytes()[:40])
        with pytest.raises(DamagedWalError, match=f"{newest.name[:24]}.*truncated"):
            restore_to_time(cluster.with_(pitr_repo=damaged), cluster.between,
                            occupied_target, force=True)
        assert dir_fingerprint(occupied_target) == before
    finally:
        shutil.rmtree(damaged, ignore_errors=True)


def test_pitr_settings_add_base_backup_schedules_and_errors_are_classified() -> None:
    bare = Settings(trading_report_cron="", anomaly_scan_cron="", retention_cron="")
    assert bare.schedules == []
    on = Settings(pitr_repo=Path("/r"), pitr_pg_data=Path("/d"),
                  trading_report_cron="", anomaly_scan_cron="", retention_cron="")
    assert {(e.name, e.kind, e.payload["type"]) for e in on.schedules} == {
        ("pitr-full", "backup.pitr", "full"), ("pitr-incr", "backup.pitr", "incr")}
    from signalfactory.ops.backup.pitr_config import pitr_config

    with pytest.raises(BadInputError, match="SIGNALFACTORY_PITR_REPO"):
        pitr_config(bare)
    with pytest.raises(BadInputError, match="needs PostgreSQL"):
        pitr_config(on)
    assert issubclass(
        __import__("signalfactory.ops.backup.pitr", fromlist=["DamagedWalError"])
        .DamagedWalError, OperationalError)


def test_the_window_decides_between_a_time_target_and_the_end_of_the_archive() -> None:
    from signalfactory.ops.backup.pitr import Window
    from signalfactory.ops.backup.pitr_restore import _recovery_for, parse_to_time

    start = datetime(2026, 12, 1, tzinfo=UTC)
    commit = start + timedelta(days=2)
    window = Window(start=start, end=commit, newest_commit=commit,
                    newest_commit_lsn="0/7000070", newest_wal=None,
                    newest_wal_pushed=None, backups=1, oldest_backup="a", newest_backup="a")
    assert _recovery_for(start, window) == "time"
    assert _recovery_for(commit - timedelta(seconds=1), window) == "time"
    assert _recovery_for(commit, window) == "lsn"  # no commit after it: stop right after it
    for outside in (start - timedelta(seconds=1), commit + timedelta(microseconds=1)):
        with pytest.raises(BadInputError, match="outside the restorable window"):
            _recovery_for(outside, window)
    assert parse_to_time("2026-12-04 19:25:03") == datetime(2026, 12, 4, 19, 25, 3, tzinfo=UTC)
    assert parse_to_time("2026-12-05T04:25:03+09:00") == datetime(2026, 12, 4, 19, 25, 3,
                                                                  tzinfo=UTC)
    with pytest.raises(BadInputError, match="ISO 8601"):
        parse_to_time("last tuesday")


def test_the_scheduled_incremental_base_backup_runs_as_a_job(cluster: Cluster) -> None:
    """Last in this file: a new base backup moves the window's end past t3."""
    from signalfactory.bootstrap import build_platform
    from signalfactory.ops.backup.pitr import read_stanza
    from signalfactory.ops.backup.pitr_config import pitr_config
    from signalfactory.services.jobs.execution import execute_by_id, new_owner
    from signalfactory.services.jobs.registry import ensure_tasks_loaded
    from signalfactory.workers.scheduler import Scheduler

    settings = _settings(cluster.base, cluster.data, cluster.port, retention_cron="")
    platform = build_platform(settings, migrate_db=True)
    try:
        ensure_tasks_loaded(platform.settings.task_module_names)
        scheduler = Scheduler(platform)
        assert scheduler.tick(datetime(2026, 11, 29, 5, 40, tzinfo=UTC)) == []
        fired = scheduler.tick(datetime(2026, 11, 29, 5, 47, 30, tzinfo=UTC))
        assert [(j.kind, j.payload) for j in fired] == [("backup.pitr", {"type": "incr"})]
        assert execute_by_id(platform, fired[0].id, new_owner("test")).status == "succeeded"
    finally:
        platform.close()
    types = [b["type"] for b in read_stanza(pitr_config(cluster.settings)).backups]
    assert types == ["full", "incr"]


def test_the_drill_restores_the_newest_archived_point_and_measures_the_canary_gap(
        cluster: Cluster) -> None:
    """`dr drill` on PostgreSQL with PITR: no regular backup anywhere, the restore comes from
    the WAL archive, and the RPO is the canary gap (a second or two with archive_timeout=1)."""
    from signalfactory.bootstrap import build_platform
    from signalfactory.ops.backup.drill import run_drill, write_canary

    platform = build_platform(_settings(cluster.base, cluster.data, cluster.port,
                                        retention_cron=""), migrate_db=True)
    try:
        scheduled = write_canary(platform, "schedule")  # what the ops.canary job writes
        time.sleep(1.5)  # archive_timeout=1 ships it
        report = run_drill(platform, None)
    finally:
        platform.close()
    print(f"\nPITR drill: RPO {report.rpo_seconds} s, RTO {report.rto_seconds} s "
          f"(restore {report.restore_seconds} s, verify {report.verify_seconds} s)")
    assert report.ok and report.provider == "pitr", report
    assert report.newest_restored_canary is not None
    assert report.newest_restored_canary >= scheduled.isoformat()
    assert report.rpo_seconds is not None and 0 <= report.rpo_seconds <= 5
