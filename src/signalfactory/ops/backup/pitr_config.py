"""pgBackRest for point-in-time recovery: its configuration file, how it is run, the repo marker.

The repository is encrypted by pgBackRest itself (``repo1-cipher-type=aes-256-cbc``). Its
passphrase is derived with HKDF from ``SIGNALFACTORY_BACKUP_KEY``, so the one backup key opens
both kinds of backup, and a deployment with another key cannot read this repository.

The repository is a local directory or an ``s3://bucket/prefix`` URL (see
:mod:`signalfactory.ops.backup.pitr_s3`). The marker ``signalfactory-pitr.json`` at its root
(read and written through the regular backups' S3 client on S3) says which deployment, which
database system (PostgreSQL's system identifier) and which key (its public id) the repository
belongs to, authenticated with an HMAC under the backup key. A restore refuses a repository
whose marker disagrees, before pgBackRest touches anything.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from signalfactory.adapters.storage.db import is_sqlite_url, normalise_url
from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.ops.backup.crypto import BackupKey, WrongKeyError, load_backup_key
from signalfactory.ops.backup.pitr_s3 import S3Repo, s3_repo
from signalfactory.ops.backup.targets import MissingPartError, S3Target
from signalfactory.settings import Settings

MARKER = "signalfactory-pitr.json"
#: bounds how much of a failing pgBackRest's output goes into a message
_DETAIL_CHARS = 1500


class RepositoryOwnerError(OperationalError):
    """The repository belongs to another deployment or another database system."""

    code = "foreign-repository"


def cipher_pass(key: BackupKey) -> str:
    """The repository passphrase: HKDF of the backup key, never the key itself."""
    return base64.b64encode(key.derived(b"signalfactory pitr repository v1")).decode()


@dataclass(frozen=True)
class PitrConfig:
    """Where everything is, taken from the settings once."""

    #: the repository as configured: a directory or an s3:// URL (for messages)
    repo: str
    #: the local repository directory (None on S3)
    repo_dir: Path | None
    s3: S3Repo | None
    s3_target: S3Target | None
    pg_data: Path
    stanza: str
    deployment: str
    socket_dir: Path
    pg_port: int
    pg_user: str
    os_user: str | None
    bin_dir: Path | None
    retention_days: int
    process_max: int
    recovery_timeout: float
    config_path: Path
    key: BackupKey

    @property
    def marker_path(self) -> Path:
        if self.repo_dir is None:
            raise OperationalError(f"{self.repo} is not a local directory: its {MARKER} is "
                                   "an S3 object")
        return self.repo_dir / MARKER

    @property
    def marker_where(self) -> str:
        return f"{self.repo.rstrip('/')}/{MARKER}"


def pitr_config(settings: Settings) -> PitrConfig:
    """The PITR configuration, or bad input naming the settings that are missing."""
    if settings.pitr_repo is None or settings.pitr_pg_data is None:
        raise BadInputError("point-in-time recovery is not configured: set "
                            "SIGNALFACTORY_PITR_REPO (the pgBackRest repository: a directory "
                            "or s3://bucket/prefix) and "
                            "SIGNALFACTORY_PITR_PG_DATA (the PostgreSQL data directory)")
    url = settings.resolved_database_url
    if is_sqlite_url(url):
        raise BadInputError("point-in-time recovery needs PostgreSQL; this deployment uses "
                            "SQLite (set SIGNALFACTORY_DATABASE_URL to a PostgreSQL database)")
    secret = settings.backup_key.get_secret_value() if settings.backup_key else None
    configured = str(settings.pitr_repo)
    if configured.startswith("s3://"):
        s3, target = s3_repo(configured)
        repo, repo_dir, s3_target = target.url, None, target
    else:
        if "://" in configured:
            raise BadInputError(f"SIGNALFACTORY_PITR_REPO={configured!r}: use a local "
                                "directory or s3://bucket/prefix")
        repo_dir = Path(configured).expanduser().resolve()
        repo, s3, s3_target = str(repo_dir), None, None
    return PitrConfig(
        repo=repo, repo_dir=repo_dir, s3=s3, s3_target=s3_target,
        pg_data=settings.pitr_pg_data.resolve(),
        stanza=settings.pitr_stanza, deployment=settings.pitr_deployment,
        socket_dir=settings.pitr_pg_socket_dir, pg_port=make_url(normalise_url(url)).port or 5432,
        pg_user=settings.pitr_pg_user, os_user=settings.pitr_os_user,
        bin_dir=settings.pitr_pg_bin_dir, retention_days=settings.pitr_retention_days,
        process_max=settings.pitr_process_max,
        recovery_timeout=settings.pitr_recovery_timeout_seconds,
        config_path=(settings.home / "pitr" / "pgbackrest.conf").resolve(),
        key=load_backup_key(secret))


def config_text(cfg: PitrConfig) -> str:
    """pgbackrest.conf for this deployment (holds the passphrase: written 0600)."""
    state = cfg.config_path.parent
    where = cfg.s3.config_lines() if cfg.s3 else [f"repo1-path={cfg.repo_dir}"]
    return "\n".join([
        "# Written by signalfactory (backup pitr setup); regenerated from the settings.",
        "[global]",
        *where,
        "repo1-cipher-type=aes-256-cbc",
        f"repo1-cipher-pass={cipher_pass(cfg.key)}",
        "repo1-retention-full-type=time",
        f"repo1-retention-full={cfg.retention_days}",
        "compress-type=zst",
        f"process-max={cfg.process_max}",
        # Small files are bundled: fewer repository files to write, list and expire.
        "repo1-bundle=y",
        "start-fast=y",
        f"lock-path={state / 'lock'}",
        f"spool-path={state / 'spool'}",
        "log-level-console=warn",
        "log-level-stderr=error",
        "log-level-file=off",
        "",
        f"[{cfg.stanza}]",
        f"pg1-path={cfg.pg_data}",
        f"pg1-port={cfg.pg_port}",
        f"pg1-socket-path={cfg.socket_dir}",
        f"pg1-user={cfg.pg_user}",
        "",
    ])


def archive_command(cfg: PitrConfig) -> str:
    return (f"{_pgbackrest_path()} --config={cfg.config_path} --stanza={cfg.stanza} "
            "archive-push %p")


def postgresql_conf_lines(cfg: PitrConfig) -> list[str]:
    """What the archived server's postgresql.conf needs (a restart for archive_mode)."""
    return ["wal_level = replica", "archive_mode = on",
            f"archive_command = '{archive_command(cfg)}'", "archive_timeout = 60"]


def os_ids(cfg: PitrConfig) -> tuple[int, int] | None:
    """uid and gid of the OS user files must belong to, when that is not us."""
    if cfg.os_user is None:
        return None
    try:
        entry = pwd.getpwnam(cfg.os_user)
    except KeyError:
        raise BadInputError(f"SIGNALFACTORY_PITR_OS_USER names {cfg.os_user!r}, which is not "
                            "a user on this machine") from None
    if entry.pw_uid == os.geteuid():
        return None
    return entry.pw_uid, entry.pw_gid


def own(cfg: PitrConfig, *paths: Path) -> None:
    """Give paths we created to the OS user the server runs as."""
    ids = os_ids(cfg)
    if ids is not None:
        for path in paths:
            os.chown(path, *ids)


def as_os_user(cfg: PitrConfig, args: list[str]) -> list[str]:
    """``args`` run as the data directory's owner: through runuser when we are root."""
    if os_ids(cfg) is None:
        return args
    if os.geteuid() != 0:
        raise OperationalError(f"PITR commands run as {cfg.os_user} (SIGNALFACTORY_PITR_OS_USER)"
                               f"; run signalfactory as root or as {cfg.os_user}")
    runuser = shutil.which("runuser")
    if runuser is None:
        raise OperationalError("`runuser` (util-linux) is needed to run pgBackRest as "
                               f"{cfg.os_user}")
    return [runuser, "-u", str(cfg.os_user), "--", *args]


def _pgbackrest_path() -> str:
    path = shutil.which("pgbackrest")
    if path is None:
        raise OperationalError("`pgbackrest` is not installed; point-in-time recovery needs "
                               "it (Debian: apt-get install pgbackrest)")
    return path


def write_config(cfg: PitrConfig) -> Path:
    state = cfg.config_path.parent
    for sub in (state, state / "lock", state / "spool"):
        sub.mkdir(parents=True, exist_ok=True)
        sub.chmod(0o700)
        own(cfg, sub)
    tmp = cfg.config_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config_text(cfg))
    own(cfg, tmp)
    tmp.replace(cfg.config_path)
    return cfg.config_path


def pgbackrest(cfg: PitrConfig, command: str, *options: str, timeout: float | None = None,
               check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run one pgBackRest command of this stanza (config rewritten first: settings win);
    options not starting with ``--`` are its arguments."""
    write_config(cfg)
    flags = [o for o in options if o.startswith("--")]
    positional = [o for o in options if not o.startswith("--")]
    args = as_os_user(cfg, [_pgbackrest_path(), f"--config={cfg.config_path}",
                            f"--stanza={cfg.stanza}", *flags, command, *positional])
    try:
        done = subprocess.run(args, capture_output=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise OperationalError(f"pgbackrest {command} did not finish within {timeout} s") from exc
    if check and done.returncode != 0:
        raise OperationalError(f"pgbackrest {command} failed (exit {done.returncode}): "
                               f"{failure_detail(done)}")
    return done


def failure_detail(done: subprocess.CompletedProcess[bytes]) -> str:
    text = (done.stderr or done.stdout).decode(errors="replace").strip()
    return text[:_DETAIL_CHARS]


# -- the marker ---------------------------------------------------------------------------


def write_marker(cfg: PitrConfig, system_id: int) -> None:
    body = {"deployment": cfg.deployment, "stanza": cfg.stanza, "system_id": system_id,
            "key_id": cfg.key.key_id, "created_at": datetime.now(UTC).isoformat()}
    payload = json.dumps(body, sort_keys=True).encode()
    document = {**body, "mac": cfg.key.mac(payload)}
    write_marker_bytes(cfg, (json.dumps(document, indent=2) + "\n").encode())


def write_marker_bytes(cfg: PitrConfig, data: bytes) -> None:
    if cfg.s3_target is not None:
        cfg.s3_target.write_object("", MARKER, [data])
        return
    tmp = cfg.marker_path.with_suffix(".tmp")
    tmp.write_bytes(data)
    own(cfg, tmp)
    tmp.replace(cfg.marker_path)


def read_marker_bytes(cfg: PitrConfig) -> bytes:
    """The marker as stored; FileNotFoundError when the repository has none."""
    if cfg.s3_target is None:
        return cfg.marker_path.read_bytes()
    try:
        with cfg.s3_target.open_object("", MARKER) as body:
            return bytes(body.read())
    except MissingPartError:
        raise FileNotFoundError(cfg.marker_where) from None


def marker_exists(cfg: PitrConfig) -> bool:
    try:
        read_marker_bytes(cfg)
    except FileNotFoundError:
        return False
    return True


def check_marker(cfg: PitrConfig, system_ids: list[int]) -> dict[str, object]:
    """Refuse a repository that is not this deployment's, or not readable with this key.

    ``system_ids`` are the database systems the stanza has held (pgBackRest's ``db`` list).
    """
    fix = ("point SIGNALFACTORY_PITR_REPO at this deployment's repository, or run "
           "`signalfactory backup pitr setup` to start a new one")
    try:
        document = json.loads(read_marker_bytes(cfg).decode("utf-8"))
    except FileNotFoundError:
        raise RepositoryOwnerError(f"{cfg.repo} has no {MARKER}: it was not set up by "
                                   f"Signal Factory; {fix}") from None
    except (OSError, ValueError) as exc:
        raise RepositoryOwnerError(f"{cfg.marker_where} cannot be read ({exc}); {fix}") from exc
    if not isinstance(document, dict):
        raise RepositoryOwnerError(f"{cfg.marker_where} is not a Signal Factory marker; {fix}")
    if document.get("key_id") != cfg.key.key_id:
        raise WrongKeyError(
            f"the PITR repository {cfg.repo} was encrypted with another backup key (key id "
            f"{document.get('key_id')}, the configured key has id {cfg.key.key_id}); set "
            "SIGNALFACTORY_BACKUP_KEY or SIGNALFACTORY_BACKUP_KEY_FILE to the key in use when "
            "it was set up. Nothing was restored")
    mac = document.pop("mac", None)
    if mac != cfg.key.mac(json.dumps(document, sort_keys=True).encode()):
        raise RepositoryOwnerError(f"{cfg.marker_where} fails authentication: it was modified; "
                                   f"{fix}")
    if document.get("deployment") != cfg.deployment or document.get("stanza") != cfg.stanza:
        raise RepositoryOwnerError(
            f"the PITR repository {cfg.repo} belongs to deployment "
            f"{document.get('deployment')!r} (stanza {document.get('stanza')!r}), not to "
            f"{cfg.deployment!r} (stanza {cfg.stanza!r}); {fix}. Nothing was restored")
    if system_ids and document.get("system_id") not in system_ids:
        raise RepositoryOwnerError(
            f"the PITR repository {cfg.repo} holds backups of database system "
            f"{', '.join(map(str, system_ids))}, but it was set up for system "
            f"{document.get('system_id')}: another database archives into it; {fix}")
    return document
