"""`backup restore --to-time`: restore PostgreSQL to a moment, into a data directory.

Order of work, so that any refusal leaves the target directory as it was:

1. the repository must be this deployment's and readable with this key (marker, stanza info,
   the live server's system identifier when it answers), and the time inside the window;
2. pgBackRest restores into a staging directory beside the target;
3. a private server (loopback, a free port, archiving off) replays the WAL up to the target
   and promotes; its log must show the target reached, and no WAL segment that failed to
   come back (a truncated or corrupted segment ends recovery early: refused, not accepted);
4. only then is the server stopped and the staging directory renamed onto the target.

:func:`restored_latest` does steps 1-3 for the newest restorable moment and leaves the
server running while the caller (the DR drill) looks at it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from signalfactory.adapters.storage.db import normalise_url
from signalfactory.domain.errors import BadInputError, ConflictError, OperationalError
from signalfactory.ops.backup.pitr import (
    DamagedWalError,
    Stanza,
    Window,
    bin_dir,
    check_live_server,
    read_stanza,
    window_of,
)
from signalfactory.ops.backup.pitr_config import (
    PitrConfig,
    as_os_user,
    failure_detail,
    own,
    pgbackrest,
    pitr_config,
)
from signalfactory.settings import Settings

_STOPPED_BEFORE = re.compile(r"recovery stopping before \S+ of transaction \d+, time (.+)$",
                             re.MULTILINE)
_STOPPED_AFTER = re.compile(r"recovery stopping after WAL location \(LSN\)", re.MULTILINE)
_LAST_XACT = re.compile(r"last completed transaction was at log time (.+)$", re.MULTILINE)
_FATAL = re.compile(r"(?:FATAL|PANIC):\s+(.+)$", re.MULTILINE)
_GET_FAILED = re.compile(r"unable to get ([0-9A-F]{24}):\s*\n\s*repo\d+: (\S+) \[(\w+)\] (.+)$",
                         re.MULTILINE)


def parse_to_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC. Bad input names the expected form."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(f"--to-time {text!r} is not a time; give ISO 8601, e.g. "
                            "2026-12-04T19:25:03Z (no zone means UTC)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class PitrRestoreReport:
    target: str
    to_time: str
    #: "time" (stopped before the first commit after to_time) or "lsn" (stopped right after
    #: the newest archived commit, when to_time is at or past it)
    recovery: str
    backup_set: str
    last_transaction: str | None
    restore_seconds: float
    recovery_seconds: float
    total_seconds: float
    replaced_existing: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RestoredServer:
    """A restored copy running on loopback (see :func:`restored_latest`)."""

    url: str
    port: int
    data_dir: Path
    #: the newest commit the copy holds (None: none in the replayed WAL)
    restored_to: datetime | None
    #: the point asked for: the window's end when the restore started
    target: datetime
    restore_seconds: float


# -- the private server -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Server:
    cfg: PitrConfig
    bins: Path
    data: Path
    run_dir: Path
    port: int

    @property
    def log(self) -> Path:
        return self.run_dir / "postgres.log"

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(  # noqa: S603
            as_os_user(self.cfg, [str(self.bins / "pg_ctl"), "-D", str(self.data), *args]),
            capture_output=True, timeout=timeout, check=False)

    def start(self) -> None:
        # Archiving off: a restored copy must never push its WAL into the repository.
        options = " ".join([
            f"-c port={self.port}", "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.run_dir}", "-c archive_mode=off",
            "-c logging_collector=off", "-c log_timezone=UTC", "-c hot_standby=on"])
        self._pg_ctl("-l", str(self.log), "-o", options, "-w", "-t",
                     str(int(self.cfg.recovery_timeout)), "start",
                     timeout=self.cfg.recovery_timeout + 30)

    def running(self) -> bool:
        return self._pg_ctl("status", timeout=30).returncode == 0

    def promoted(self) -> bool:
        done = subprocess.run(  # noqa: S603
            as_os_user(self.cfg, [str(self.bins / "pg_controldata"), str(self.data)]),
            capture_output=True, timeout=30, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
            check=False)
        return b"cluster state:               in production" in done.stdout

    def wait_promoted(self) -> None:
        deadline = time.monotonic() + self.cfg.recovery_timeout
        while time.monotonic() < deadline:
            if self.promoted() and self.running():
                return
            if not self.running():
                raise self.failure()
            time.sleep(0.1)
        raise OperationalError(f"the restored server did not finish recovery within "
                               f"{self.cfg.recovery_timeout:.0f} s "
                               "(SIGNALFACTORY_PITR_RECOVERY_TIMEOUT_SECONDS)")

    def stop(self) -> None:
        if self.running():
            self._pg_ctl("-m", "fast", "-w", "-t", "120", "stop", timeout=150)

    def failure(self) -> OperationalError:
        """Why recovery failed, from the server's log, as the error to raise."""
        text = self.log_text()
        failed = _GET_FAILED.search(text)
        if failed:
            segment, _file, kind, detail = failed.groups()
            return DamagedWalError(
                f"WAL segment {segment} in the repository cannot be read ([{kind}] "
                f"{detail.strip()[:200]}): it is truncated or corrupted, so recovery cannot "
                "pass it. Restore to a time before that segment was written, or take a new "
                "full backup so later times do not need it")
        fatal = _FATAL.findall(text)
        reason = fatal[-1].strip() if fatal else text.strip()[-500:] or "no log written"
        return OperationalError(f"the restored server failed to recover: {reason}")


def _last_transaction(text: str) -> datetime | None:
    found = _LAST_XACT.findall(text)
    return datetime.fromisoformat(found[-1].strip()).astimezone(UTC) if found else None


def _check_recovery(server: _Server, recovery: str, window: Window) -> datetime | None:
    """The newest commit the copy holds, once the log shows it reached what was asked."""
    text = server.log_text()
    if _GET_FAILED.search(text):
        raise server.failure()
    last = _last_transaction(text)
    reached = {"time": _STOPPED_BEFORE, "lsn": _STOPPED_AFTER}.get(recovery)
    if reached is not None:
        if not reached.search(text):
            raise OperationalError("the restored server ended recovery without reaching the "
                                   f"target; its log says: {text.strip()[-500:]}")
        return last
    if window.newest_commit is not None and (last is None or last < window.newest_commit):
        raise DamagedWalError(
            f"recovery stopped at {last.isoformat() if last else 'the base backup'}, before "
            f"the newest archived commit ({window.newest_commit.isoformat()}): WAL between "
            "them is missing or damaged in the repository")
    return last


# -- staging ------------------------------------------------------------------------------


def _make_dir(cfg: PitrConfig, path: Path) -> Path:
    path.mkdir(mode=0o700, parents=False, exist_ok=False)
    path.chmod(0o700)
    own(cfg, path)
    return path


def _server_running(data: Path) -> bool:
    pid_file = data / "postmaster.pid"
    try:
        pid = int(pid_file.read_text(encoding="utf-8").splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_target(target: Path, force: bool) -> bool:
    """Whether the target holds something (replaced only with ``force``)."""
    if target.exists() and not target.is_dir():
        raise BadInputError(f"{target} exists and is not a directory; name a data directory")
    if not target.parent.is_dir():
        raise BadInputError(f"{target.parent} does not exist; create it or name another "
                            "target directory")
    occupied = target.is_dir() and any(target.iterdir())
    if occupied and _server_running(target):
        raise ConflictError(f"a PostgreSQL server is running on {target}; stop it first "
                            "(pg_ctl stop), then restore")
    if occupied and not force:
        raise ConflictError(f"{target} is not empty; a restore replaces all of it: pass --force "
                            "to confirm, or name an empty directory with --pg-data")
    return occupied


def _recovery_for(when: datetime, window: Window) -> str:
    if when < window.start or when > window.end:
        raise BadInputError(
            f"{when.isoformat()} is outside the restorable window {window.start.isoformat()} "
            f".. {window.end.isoformat()} (oldest base backup's end .. newest archived "
            "commit); pick a time inside it")
    # With no commit after `when` in the archive, a time target cannot be reached (PostgreSQL
    # stops at the first commit past it): stopping right after the newest archived commit
    # gives that state, and stays right if more WAL is archived meanwhile.
    if window.newest_commit is not None and when >= window.newest_commit:
        return "lsn"
    return "time"


def _restore_into(cfg: PitrConfig, stanza: Stanza, staging: Path, recovery: str,
                  when: datetime, window: Window) -> str:
    """pgbackrest restore into ``staging``; the backup set it chose."""
    options = [f"--pg1-path={staging}", "--log-level-console=info"]
    if recovery == "time":
        options += ["--type=time", f"--target={when.isoformat(sep=' ')}",
                    "--target-action=promote"]
    elif recovery == "lsn":
        options += ["--type=lsn", f"--target={window.newest_commit_lsn}",
                    "--target-action=promote"]
    else:
        options.append("--type=default")
    done = pgbackrest(cfg, "restore", *options, timeout=24 * 3600, check=False)
    if done.returncode != 0:
        raise OperationalError(f"pgbackrest restore failed (exit {done.returncode}): "
                               f"{failure_detail(done)}")
    match = re.search(rb"restore backup set (\S+)", done.stdout + done.stderr)
    return match.group(1).decode().rstrip(",") if match else ""


@contextmanager
def _recovered(cfg: PitrConfig, stanza: Stanza, window: Window, staging: Path,
               recovery: str, when: datetime) -> Iterator[tuple[_Server, str, datetime | None,
                                                            float, float]]:
    """Restore into staging and run recovery there; the server runs inside the block."""
    bins = bin_dir(cfg, stanza.pg_version)
    run_dir = Path(tempfile.mkdtemp(prefix="sf-pitr-run-"))
    own(cfg, run_dir)
    server = _Server(cfg, bins, staging, run_dir, free_port())
    try:
        started = time.monotonic()
        backup_set = _restore_into(cfg, stanza, staging, recovery, when, window)
        restored = time.monotonic() - started
        started = time.monotonic()
        server.start()
        server.wait_promoted()
        last = _check_recovery(server, recovery, window)
        recovered = time.monotonic() - started
        yield server, backup_set, last, restored, recovered
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


def _prepare(settings: Settings) -> tuple[PitrConfig, Stanza, Window]:
    cfg = pitr_config(settings)
    stanza = read_stanza(cfg)
    check_live_server(settings, stanza)
    return cfg, stanza, window_of(cfg, stanza)


def restore_to_time(settings: Settings, when: datetime, target: Path | None = None, *,
                    force: bool = False) -> PitrRestoreReport:
    """Restore to ``when`` into ``target`` (default: SIGNALFACTORY_PITR_PG_DATA), stopped,
    promoted and ready to start; on any refusal the target is unchanged."""
    began = time.monotonic()
    cfg, stanza, window = _prepare(settings)
    target = (target or cfg.pg_data).absolute()
    occupied = _check_target(target, force)
    recovery = _recovery_for(when, window)
    staging = _make_dir(cfg, target.parent / f".{target.name}.pitr-{uuid.uuid4().hex[:8]}")
    aside = target.parent / f".{target.name}.pre-pitr-{uuid.uuid4().hex[:8]}"
    try:
        with _recovered(cfg, stanza, window, staging, recovery, when) as (
                _server, backup_set, last, restored, recovered):
            pass  # leaving the block stops the server cleanly before the swap
        if target.exists():
            target.rename(aside)
        try:
            staging.rename(target)
        except OSError:
            if aside.exists():
                aside.rename(target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PitrRestoreReport(
        target=str(target), to_time=when.isoformat(), recovery=recovery,
        backup_set=backup_set, last_transaction=last.isoformat() if last else None,
        restore_seconds=round(restored, 3), recovery_seconds=round(recovered, 3),
        total_seconds=round(time.monotonic() - began, 3), replaced_existing=occupied)


@contextmanager
def restored_latest(settings: Settings, scratch_dir: Path) -> Iterator[RestoredServer]:
    """Restore the newest restorable moment into ``scratch_dir`` (created; removed on exit)
    and run it on a free loopback port while the block runs.

    The URL is the configured database's with host and port replaced: same database name,
    same role (the restored copy has the live server's roles and pg_hba.conf).
    """
    began = time.monotonic()
    cfg, stanza, window = _prepare(settings)
    scratch_dir = scratch_dir.absolute()
    if scratch_dir.exists():
        raise BadInputError(f"{scratch_dir} already exists; name a new scratch directory")
    if not scratch_dir.parent.is_dir():
        raise BadInputError(f"{scratch_dir.parent} does not exist")
    _make_dir(cfg, scratch_dir)
    try:
        with _recovered(cfg, stanza, window, scratch_dir, "end", window.end) as (
                server, _set, last, _restored, _recovered_s):
            url = make_url(normalise_url(settings.resolved_database_url)).set(
                host="127.0.0.1", port=server.port)
            yield RestoredServer(url=url.render_as_string(hide_password=False),
                                 port=server.port, data_dir=scratch_dir, restored_to=last,
                                 target=window.end,
                                 restore_seconds=round(time.monotonic() - began, 3))
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
