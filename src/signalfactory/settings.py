"""One settings object for the whole platform (pydantic-settings, ``SIGNALFACTORY_`` prefix).

Secrets are read from the environment or from ``SIGNALFACTORY_<NAME>_FILE``; a secret found in a
config file is refused, because config files get committed, copied into images and mailed around.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timeframes import Timeframe

SECRET_FIELDS: tuple[str, ...] = (
    "backup_key",
    "archive_signing_key",
    "database_password",
    "delivery_key",
)


#: Retention limits in days by table, then by timeframe (``"*"``: any other); None keeps forever.
RetentionLimits = dict[str, dict[str, int | None]]

#: The file under ``home`` whose existence means a restore is running (``/readyz`` fails).
RESTORE_MARKER = "restore-in-progress"
READ_ONLY_FLAG = "read-only"


def parse_retention(value: object) -> RetentionLimits:
    """``SIGNALFACTORY_RETENTION`` (JSON text, or a table from the config file) checked for
    shape, timeframes and day counts. Whether each table exists is checked where the schema
    is known (``ops.retention``)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"SIGNALFACTORY_RETENTION is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadInputError('SIGNALFACTORY_RETENTION must be an object like '
                            '{"bars": {"1m": 30}, "signals": {"*": 365}}')
    limits: RetentionLimits = {}
    for table, rules in value.items():
        if not isinstance(rules, dict):
            raise BadInputError(f"SIGNALFACTORY_RETENTION[{table!r}] must map timeframes "
                                'to days, e.g. {"1m": 30, "*": 365}')
        for tf, days in rules.items():
            if tf != "*":
                Timeframe.parse(tf)
            if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                                     or days < 1):
                raise BadInputError(f"SIGNALFACTORY_RETENTION[{table!r}][{tf!r}] must be a "
                                    f"whole number of days >= 1, or null to keep forever; "
                                    f"got {days!r}")
        limits[str(table)] = dict(rules)
    return limits


def rpo_cron(rpo_seconds: int) -> str:
    """A cron expression that fires at least once every ``rpo_seconds``."""
    minutes = max(1, rpo_seconds // 60)
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = minutes // 60
    return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


def parse_queue_classes(text: str) -> list[str]:
    """A comma-separated list of Celery queue classes (realtime, default, bulk), in order."""
    classes = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in classes if c not in ("realtime", "default", "bulk")]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise BadInputError(f"queue classes {text!r} are not valid: give one or more of "
                            "realtime, default, bulk, comma-separated, each once")
    return classes


class ScheduleEntry(BaseModel):
    """One scheduled job: a cron expression (minute hour day month weekday) and what to submit."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    cron: str = Field(examples=["0 22 * * 1-5"])
    kind: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)
    tenant_id: int = 1
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        value = " ".join(value.split())
        if value in _VALID_CRONS:
            return value
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a 5-field cron expression "
                             "(minute hour day-of-month month day-of-week), e.g. '0 22 * * 1-5'")
        _VALID_CRONS.add(value)
        return value


#: Cron expressions known to be valid: each one croniter accepted in this process, and the
#: defaults of Settings' ``*_cron`` fields (``tests/unit/test_settings.py`` checks them with
#: croniter). Every settings load turns the defaults into schedules; checking them again
#: imported croniter into every command.
_VALID_CRONS: set[str] = set()


class Settings(BaseSettings):
    """Platform settings. Everything has a working default for the embedded setup."""

    model_config = SettingsConfigDict(env_prefix="SIGNALFACTORY_", extra="ignore")

    home: Path = Field(default=Path(".signalfactory"),
                       description="Directory holding the embedded database and data files.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; defaults to a SQLite file under home.")
    database_read_url: str | None = Field(
        default=None, description="Optional read replica for read-only queries.")
    database_size_limit_bytes: int | None = Field(
        default=None, gt=0, description="Size the database must stay under (its volume or "
                                        "quota); exported so SignalFactoryDatabaseFullSoon "
                                        "can predict when it is reached.")
    database_pool_size: int = Field(
        default=5, ge=1, le=1000,
        description="Connections each process keeps open to the primary (PostgreSQL). The "
                    "sizing reference for a production API process is 30.")
    database_max_overflow: int = Field(
        default=5, ge=0, le=1000,
        description="Extra primary connections a process may open under a burst, closed "
                    "when returned.")
    database_read_pool_size: int = Field(
        default=5, ge=1, le=1000,
        description="Connections each process keeps open to the read replica "
                    "(SIGNALFACTORY_DATABASE_READ_URL). The production reference is 50.")
    database_read_max_overflow: int = Field(
        default=5, ge=0, le=1000,
        description="Extra replica connections a process may open under a burst.")
    read_only_probe_seconds: float = Field(
        default=2.0, gt=0, le=60,
        description="While the primary is unreachable (read-only mode), how often a write "
                    "checks whether it answers again; the mode ends by itself when it does.")
    bar_store: str = Field(
        default="auto",
        description="'columnar' (Arrow files beside the database), 'sql' (bars table), or "
                    "'auto': columnar on SQLite, sql on PostgreSQL.")
    config_file: Path | None = Field(
        default=None, description="Optional TOML file with non-secret settings.")
    log_format: str = Field(default="auto", description="'json', 'console' or 'auto'.")
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    cache_ttl_seconds: float = Field(
        default=10.0, ge=0, le=86_400,
        description="How long a hot read (instruments, strategies, scans, signal pages) stays "
                    "cached; writes "
                    "invalidate at once, the TTL bounds what they cannot reach (other processes "
                    "with the in-memory cache, replica lag). 0 turns the cache off.")
    web_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30,
        description="How long a dashboard sign-in lasts before the browser must sign in again.")
    web_link_minutes: float = Field(
        default=15.0, gt=0, le=24 * 60,
        description="How long a one-time dashboard sign-in link (`signalfactory up`, "
                    "`signalfactory web link`) stays valid.")
    web_secure_cookies: bool | None = Field(
        default=None,
        description="Mark the dashboard's cookies Secure (sent over HTTPS only). Unset: when "
                    "the request came over HTTPS (behind a proxy, pass --proxy-headers).")
    api_threads: int | None = Field(
        default=None, ge=1, le=1024,
        description="Threads serving the API's blocking work (database reads) in one server "
                    "process; unset: 4 per CPU, at most 40. More threads than the CPUs can "
                    "keep busy only contend for the GIL and make an overload worse.")
    api_max_in_flight: int = Field(
        default=200, ge=1, le=100_000,
        description="HTTP requests one server process works on at once; the next one is "
                    "answered 503 with Retry-After at once instead of queueing until it times "
                    "out. Health probes, /metrics and the live stream are not counted.")
    broker_url: str | None = Field(
        default=None, description="Celery broker (redis:// or amqp://); unset runs jobs in the "
                                  "embedded database-backed runner.")

    # -- jobs (embedded runner and Celery share these) --
    job_max_attempts: int = Field(default=5, ge=1, le=100,
                                  description="Attempts before a job moves to the dead letter.")
    job_max_losses: int = Field(
        default=10, ge=1, le=1000,
        description="Runs a job may lose with its worker (killed, out of memory) before it "
                    "moves to the dead letter; counted apart from max_attempts, which bounds "
                    "the task's own failures.")
    job_lease_seconds: float = Field(
        default=30.0, gt=0, description="A running job's lease; renewed every third of it. A "
                                        "worker silent for longer is presumed dead.")
    split: str = Field(
        default="auto", pattern="^(auto|always|never)$",
        description="Split universe backtest jobs into chunk jobs run by any worker: auto "
                    "when the job backend is Celery (SIGNALFACTORY_BROKER_URL is set), "
                    "always, or never. A universe smaller than two chunks runs whole.")
    split_chunk_seconds: float = Field(
        default=2.0, ge=1.0, le=3600.0,
        description="Seconds of work a chunk of a split job has at least (at the speed the "
                    "split job measures, or SIGNALFACTORY_SPLIT_BARS_PER_SECOND); at least 1 "
                    "so that a chunk's fixed cost (messages, loading its bars, storing its "
                    "result) stays small.")
    split_bars_per_second: float | None = Field(
        default=None, gt=0,
        description="Bars one worker process backtests per second, to size chunks (bars of "
                    "history x parameter sets). Unset (the default): the split job measures "
                    "it, simulating the universe's first instruments before it cuts. Set: "
                    "taken as said (above the real speed, chunks run longer than aimed at; "
                    "below it, shorter).")
    split_poll_seconds: float = Field(
        default=2.0, gt=0, le=60.0,
        description="How often a split job waiting for its chunks checks its counter row "
                    "(progress, a failed chunk); the chunk that completes the split wakes it "
                    "at once. Each look takes a worker slot for a moment.")
    job_poll_seconds: float = Field(default=1.0, gt=0,
                                    description="How often an idle embedded worker looks for work.")
    job_concurrency: int = Field(default=2, ge=1, le=64,
                                 description="Jobs one worker process runs at once.")
    job_backoff_seconds: float = Field(default=2.0, ge=0,
                                       description="First retry delay; doubles per attempt.")
    job_backoff_max_seconds: float = Field(default=300.0, ge=0)
    job_stop_grace_seconds: float = Field(
        default=30.0, ge=0, description="On shutdown, how long running jobs may finish before "
                                        "they are handed back to the queue.")
    job_redispatch_seconds: float = Field(
        default=1800.0, gt=0, description="Celery: a queued job whose message is older than "
                                          "this is published again by the sweep.")
    job_sweep_seconds: float = Field(default=30.0, gt=0,
                                     description="Celery beat: how often the sweep runs.")
    task_modules: str = Field(
        default="", description="Comma-separated modules imported at start that register "
                                "extra job kinds (e.g. 'tests.jobs_tasks').")
    celery_queue: str = Field(
        default="signalfactory", description="Base name of the Celery queues: default work "
                                             "uses it, real-time and bulk work append "
                                             "'.realtime' and '.bulk'.")
    celery_routes: dict[str, str] = Field(
        default_factory=dict, description='Job kind -> queue class (realtime, default, bulk) '
                                          'over the table in domain/job_routes.py, as '
                                          'JSON, e.g. {"scan": "default"}.')
    celery_worker_queues: str = Field(
        default="realtime,default,bulk", description="Queue classes a Celery worker consumes, "
                                                     "first preferred (worker --queues).")
    celery_time_limit_realtime_seconds: int = Field(
        default=300, gt=0, description="Celery: a real-time job's pool process is killed "
                                       "after this long (the job is retried by its lease).")
    celery_time_limit_default_seconds: int = Field(
        default=1800, gt=0, description="Celery: the same for default work.")
    celery_time_limit_bulk_seconds: int = Field(
        default=7000, gt=0, description="Celery: the same for bulk work; keep it below "
                                        "celery_visibility_timeout.")
    celery_visibility_timeout: int = Field(
        default=7200, gt=0, description="Redis broker: seconds before an unacknowledged "
                                        "message is redelivered. Keep it above the longest job.")
    celery_restore_interval: int = Field(
        default=10, gt=0, description="Redis broker: seconds between sweeps for messages whose "
                                      "visibility timeout passed.")
    backup_dest: str | None = Field(
        default=None, description="Where scheduled backups go (path or s3://bucket/prefix); "
                                  "set it to back up at least every backup_rpo_seconds.")
    backup_rpo_seconds: int = Field(
        default=300, ge=60, description="Recovery point objective of scheduled backups: "
                                        "they run at least this often, and the alert "
                                        "SignalFactoryBackupTooOld fires past it.")
    canary_interval_seconds: int = Field(
        default=60, ge=0, description="How often the ops.canary job writes a canary row while "
                                      "backup_dest is set (rounded to whole minutes); 0 "
                                      "disables it. `dr drill` measures its RPO with them.")
    dr_rpo_target_seconds: float = Field(
        default=300, gt=0, description="`dr drill` fails when the newest restorable point "
                                       "lost more than this (last committed canary minus "
                                       "newest restored canary).")
    dr_rto_target_seconds: float = Field(
        default=900, gt=0, description="`dr drill` fails when restoring and verifying the "
                                       "newest restorable point took longer than this.")
    backup_prune_cron: str | None = Field(
        default="47 3 * * *", description="When `backup prune` runs on backup_dest (cron); "
                                          "empty disables it.")
    backup_keep_last: int = Field(default=3, ge=0,
                                  description="backup prune: newest backups always kept.")
    backup_keep_daily: int = Field(default=7, ge=0,
                                   description="backup prune: days with one backup kept.")
    backup_keep_weekly: int = Field(default=4, ge=0,
                                    description="backup prune: weeks with one backup kept.")
    backup_keep_monthly: int = Field(default=12, ge=0,
                                     description="backup prune: months with one backup kept.")
    pitr_repo: Path | str | None = Field(
        default=None, description="PostgreSQL point-in-time recovery: the pgBackRest "
                                  "repository (WAL archive and base backups), a directory "
                                  "or s3://bucket/prefix reached like an s3:// backup_dest, "
                                  "encrypted with a key derived from backup_key). Set it "
                                  "with pitr_pg_data to turn PITR and its schedules on.")
    pitr_pg_data: Path | None = Field(
        default=None, description="PITR: data directory of the PostgreSQL server whose WAL "
                                  "is archived (pgBackRest's pg1-path).")
    pitr_stanza: str = Field(default="signalfactory", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                             description="PITR: pgBackRest stanza name of this database.")
    pitr_deployment: str = Field(
        default="signalfactory", min_length=1, max_length=200,
        description="PITR: name of this deployment, written into the repository's marker; "
                    "a repository whose marker names another deployment is refused.")
    pitr_pg_socket_dir: Path = Field(
        default=Path("/var/run/postgresql"), description="PITR: the server's Unix socket "
                                                         "directory (pgBackRest connects "
                                                         "through it).")
    pitr_pg_user: str = Field(default="postgres", min_length=1,
                              description="PITR: database superuser pgBackRest connects as.")
    pitr_os_user: str | None = Field(
        default=None, description="PITR: OS user owning the data directory; pgBackRest and "
                                  "restored servers run as it (via runuser when this "
                                  "process is root).")
    pitr_pg_bin_dir: Path | None = Field(
        default=None, description="PITR: PostgreSQL server binaries (pg_ctl, pg_waldump); "
                                  "default /usr/lib/postgresql/<stanza's version>/bin.")
    pitr_retention_days: int = Field(
        default=7, ge=1, le=3650, description="PITR: days of point-in-time recovery kept "
                                              "(pgBackRest time-based full retention).")
    pitr_process_max: int = Field(
        default=4, ge=1, le=64, description="PITR: pgBackRest processes for backup and "
                                            "restore (a restore is bound by per-file fsync: "
                                            "parallel is several times faster).")
    pitr_full_cron: str | None = Field(
        default="17 1 * * 0", description="When the full PITR base backup runs (cron); empty "
                                          "disables it.")
    pitr_incr_cron: str | None = Field(
        default="47 * * * *", description="When the incremental PITR base backup runs "
                                          "(cron); empty disables it.")
    pitr_recovery_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="PITR: longest a restored server may take to replay "
                                          "WAL up to the target before the restore is "
                                          "abandoned.")
    archive_cron: str | None = Field(
        default="27 0 * * *", description="When yesterday's signed archive snapshot is made "
                                          "(cron); runs when archive_signing_key is set; "
                                          "empty disables it.")
    retention_cron: str | None = Field(
        default="17 3 * * *", description="When retention runs (cron); empty disables it.")
    ops_notice_tenant: int | None = Field(
        default=None, gt=0, description="Tenant id whose subscribers get a notice (a campaign "
                                        "through their delivery endpoints) when a scheduled "
                                        "operation (backup, prune, archive, retention, anomaly "
                                        "scan) fails for good; unset: alert and log only.")
    anomaly_scan_cron: str | None = Field(
        default="5 * * * *", description="When the anomaly scan of the key figures runs "
                                         "(cron, hourly: it scores the last complete hour); "
                                         "empty disables it.")
    trading_report_cron: str | None = Field(
        default="10 0 * * *", description="When the daily trading reports of the day before are "
                                          "made and sent (cron, schedule_timezone); empty "
                                          "disables them.")
    retention: Annotated[RetentionLimits, NoDecode] = Field(
        default_factory=dict,
        description='Retention in days merged over the defaults, by table then timeframe ("*": '
                    'any other; null keeps forever), as JSON, e.g. {"bars": {"1m": 30}, '
                    '"signals": {"*": 365}}.')
    schedules: list[ScheduleEntry] = Field(
        default_factory=list,
        description='Cron entries as JSON, e.g. [{"name": "collect-daily", "cron": '
                    '"0 22 * * 1-5", "kind": "collect", "payload": {}}]; run by `beat` or `up`.')
    schedule_timezone: str = Field(default="UTC",
                                   description="Time zone the cron expressions are read in.")

    live_overlap: bool = Field(
        default=False, description="Evaluate live strategies on the in-memory window while "
                                   "the bar write commits (a second thread). Off by default: "
                                   "with CPython's GIL on a busy machine the two threads "
                                   "slowed each other more than they overlapped "
                                   "(benchmarks/api.py prints both).")

    delivery_allow_private_targets: bool = Field(
        default=False, description="Let webhook endpoints point at loopback or private "
                                   "addresses (refused by default: SSRF). Tests turn it on.")
    delivery_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="How long one delivery attempt may take.")
    delivery_lease_seconds: float = Field(
        default=60.0, gt=0, description="How long a worker holds an outbox row it sends; a "
                                        "row whose worker died is sent again after this.")
    delivery_batch: int = Field(default=100, ge=1, le=10_000,
                                description="Outbox rows a delivery worker leases at once.")

    # -- trading --
    trading_lease_seconds: float = Field(
        default=15.0, gt=0, description="How long a worker holds a bot between ticks; a bot "
                                        "whose worker died is taken over after this.")
    trading_tick_seconds: float = Field(
        default=60.0, gt=0, description="How often a running bot ticks without new bars "
                                        "(reconciliation when due, equity marks, resume).")
    trading_reconcile_seconds: float = Field(
        default=60.0, gt=0, description="How often a running bot reconciles its orders, "
                                        "fills and balances with the exchange.")
    trading_resend_seconds: float = Field(
        default=60.0, ge=0, description="A pending order the exchange certainly does not have "
                                        "is sent again only while younger than this; older "
                                        "ones expire (the decision is stale).")
    trading_tenant_max_exposure: float | None = Field(
        default=None, gt=0, description="Most a tenant may hold at cost plus reserve across "
                                        "its bots (quote currency); unset: no limit.")
    trading_worker_id: str | None = Field(
        default=None, description="Stable id of this trading worker: a restarted worker "
                                  "takes its bots back at once. Unique per worker; unset: "
                                  "host, pid and a random tag.")
    trading_probe_seconds: float = Field(
        default=1.0, gt=0, le=5, description="How often a trading worker checks that the "
                                             "database answers (read-only within 5 s).")
    # -- the strategy sandbox (uploaded Python strategies; see adapters/sandbox) --
    sandbox_cpu_seconds: float = Field(
        default=10.0, gt=0, le=3600,
        description="CPU seconds one sandboxed strategy call may use (RLIMIT_CPU, counted "
                    "in whole seconds); past it the worker is killed and the run fails naming "
                    "the limit.")
    sandbox_memory_mb: int = Field(
        default=1024, ge=64, le=1_048_576,
        description="Address space a sandboxed strategy may add on top of its worker's own "
                    "(numpy, pandas and TA-Lib preloaded; RLIMIT_AS). The bars it is given "
                    "count against it.")
    sandbox_wall_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="Wall-clock seconds the server waits for one sandboxed call (bars sent, "
                    "evaluated, answered) before it kills the worker.")
    sandbox_pool_size: int = Field(
        default=2, ge=1, le=256,
        description="Sandbox worker processes per server process. Each runs one strategy "
                    "version and stays warm for its next call.")

    backup_key: SecretStr | None = None
    archive_signing_key: SecretStr | None = None
    database_password: SecretStr | None = None
    #: key of the secret box sealing endpoint targets and secrets (32 bytes, base64)
    delivery_key: SecretStr | None = None

    secret_fields: ClassVar[tuple[str, ...]] = SECRET_FIELDS

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: object) -> object:
        """Fill ``<name>`` from ``SIGNALFACTORY_<NAME>_FILE`` when the value itself is unset."""
        if not isinstance(data, dict):
            return data
        for name in SECRET_FIELDS:
            if data.get(name):
                continue
            path = os.environ.get(f"SIGNALFACTORY_{name.upper()}_FILE")
            if path:
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise BadInputError(
                        f"SIGNALFACTORY_{name.upper()}_FILE points at {path!r}, which cannot be "
                        f"read ({exc.strerror}); fix the path or its permissions") from exc
        return data

    @field_validator("retention", mode="before")
    @classmethod
    def _retention_limits(cls, value: object) -> RetentionLimits:
        return parse_retention(value)

    @field_validator("celery_routes")
    @classmethod
    def _known_queue_classes(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = ("realtime", "default", "bulk")
        for kind, queue_class in value.items():
            if queue_class not in allowed:
                raise ValueError(f"SIGNALFACTORY_CELERY_ROUTES[{kind!r}] is {queue_class!r}; "
                                 f"use one of {', '.join(allowed)}")
        return value

    @property
    def celery_worker_queue_classes(self) -> list[str]:
        """``celery_worker_queues`` checked: known classes, at least one, no repeats."""
        return parse_queue_classes(self.celery_worker_queues)

    @field_validator("schedule_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as "
                             "'UTC' or 'Asia/Seoul'") from exc
        return value

    @model_validator(mode="after")
    def _jobs_consistent(self) -> Settings:
        names = [entry.name for entry in self.schedules]
        if len(names) != len(set(names)):
            raise ValueError("SIGNALFACTORY_SCHEDULES has two entries with the same name; "
                             "names identify schedules and must be unique")
        if self.celery_visibility_timeout <= self.job_lease_seconds:
            raise ValueError("SIGNALFACTORY_CELERY_VISIBILITY_TIMEOUT must be longer than "
                             "SIGNALFACTORY_JOB_LEASE_SECONDS (and than the longest job)")
        # Operations the settings ask for become schedules like any other, so `beat`, `up`
        # and Celery beat all run them; an explicit entry of the same name wins.
        taken = set(names)
        if self.backup_dest and "backup" not in taken:
            self.schedules.append(ScheduleEntry(name="backup", kind="backup",
                                                cron=rpo_cron(self.backup_rpo_seconds)))
        if self.backup_dest and self.canary_interval_seconds and "canary" not in taken:
            self.schedules.append(ScheduleEntry(name="canary", kind="ops.canary",
                                                cron=rpo_cron(self.canary_interval_seconds)))
        if self.backup_dest and self.backup_prune_cron and "backup-prune" not in taken:
            self.schedules.append(ScheduleEntry(name="backup-prune", kind="backup.prune",
                                                cron=self.backup_prune_cron))
        if self.pitr_repo and self.pitr_pg_data:
            for name, kind_type, cron in (("pitr-full", "full", self.pitr_full_cron),
                                          ("pitr-incr", "incr", self.pitr_incr_cron)):
                if cron and name not in taken:
                    self.schedules.append(ScheduleEntry(name=name, kind="backup.pitr",
                                                        cron=cron,
                                                        payload={"type": kind_type}))
        if (self.archive_signing_key is not None and self.archive_cron
                and "archive" not in taken):
            self.schedules.append(ScheduleEntry(name="archive", kind="archive",
                                                cron=self.archive_cron))
        if self.retention_cron and "retention" not in taken:
            self.schedules.append(ScheduleEntry(name="retention", kind="retention",
                                                cron=self.retention_cron))
        if self.anomaly_scan_cron and "anomaly-scan" not in taken:
            self.schedules.append(ScheduleEntry(name="anomaly-scan", kind="ops.anomaly_scan",
                                                cron=self.anomaly_scan_cron))
        if self.trading_report_cron and "trading-report" not in taken:
            self.schedules.append(ScheduleEntry(name="trading-report",
                                                kind="trading.daily_report",
                                                cron=self.trading_report_cron))
        return self

    @property
    def task_module_names(self) -> list[str]:
        return [m.strip() for m in self.task_modules.split(",") if m.strip()]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'signalfactory.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_bar_store(self) -> str:
        if self.bar_store in ("columnar", "sql"):
            return self.bar_store
        if self.bar_store != "auto":
            raise BadInputError(
                f"SIGNALFACTORY_BAR_STORE={self.bar_store!r} is not valid; use auto, columnar "
                "or sql")
        return "columnar" if self.is_sqlite else "sql"

    @cached_property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def restore_marker(self) -> Path:
        return self.home / RESTORE_MARKER

    @property
    def read_only_flag(self) -> Path:
        """The operator's read-only switch (`signalfactory ops read-only on`): a file under
        home, so every process sharing the home sees it even when the database is down."""
        return self.home / READ_ONLY_FLAG


_VALID_CRONS.update(f.default for name, f in Settings.model_fields.items()
                    if name.endswith("_cron") and isinstance(f.default, str))


def _load_config_file(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadInputError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"config file {path} is not valid TOML: {exc}") from exc
    section = raw.get("signalfactory", raw)
    leaked = sorted(k for k in section if k.lower() in SECRET_FIELDS)
    if leaked:
        names = ", ".join(leaked)
        envs = ", ".join(f"SIGNALFACTORY_{k.upper()} or SIGNALFACTORY_{k.upper()}_FILE"
                         for k in leaked)
        raise BadInputError(
            f"config file {path} contains the secret(s) {names}; secrets never belong in a "
            f"config file: remove them and set {envs} instead")
    return dict(section)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, an optional TOML config file, then explicit overrides."""
    env_file = os.environ.get("SIGNALFACTORY_CONFIG_FILE")
    given = overrides.get("config_file") or env_file
    if given is not None and not isinstance(given, str | Path):
        raise BadInputError(f"config_file must be a path, not {type(given).__name__}")
    file_values: dict[str, Any] = _load_config_file(Path(given)) if given else {}
    # The environment wins over the file: pydantic-settings gives init kwargs priority, so only
    # pass file values that the environment does not set.
    for key in list(file_values):
        if f"SIGNALFACTORY_{key.upper()}" in os.environ:
            del file_values[key]
    return Settings(**{**file_values, **overrides})
