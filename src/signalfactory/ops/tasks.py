"""Job kinds of operations: backups at the RPO, retention, daily archives.

They run under the embedded runner or Celery like any job, and the scheduler submits the
backup, backup prune, archive and retention ones from settings (``SIGNALFACTORY_BACKUP_DEST``
with ``SIGNALFACTORY_BACKUP_RPO_SECONDS`` and ``SIGNALFACTORY_BACKUP_PRUNE_CRON``;
``SIGNALFACTORY_ARCHIVE_CRON`` once an archive signing key is set;
``SIGNALFACTORY_RETENTION_CRON``; the PITR base backups once ``SIGNALFACTORY_PITR_REPO`` and
``SIGNALFACTORY_PITR_PG_DATA`` are set). A run that ends dead counts in
``signalfactory_jobs_total{status="dead"}``, which the alert SignalFactoryScheduledOpsFailed
watches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import JOBS_TOTAL
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import FinalFailure, TaskContext, register_task

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform
    from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.ops.tasks")


class BackupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dest: str | None = Field(default=None, description="Local path or s3://bucket/prefix; "
                                                       "default SIGNALFACTORY_BACKUP_DEST")


def backup_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.domain.errors import BadInputError
    from signalfactory.ops.backup.create import run_scheduled_backup

    args = parse_payload(BackupPayload, payload, "backup")
    settings = ctx.platform.settings
    dest = args.dest or settings.backup_dest
    if not dest:
        raise BadInputError("backup job needs a destination: set SIGNALFACTORY_BACKUP_DEST or "
                            "pass {\"dest\": ...}")
    manifest = run_scheduled_backup(ctx.platform, dest, settings.backup_rpo_seconds)
    # The snapshot time and size let any serving process export the backup gauges from the
    # job's stored result (ops/backup/metrics.py), whichever worker ran it.
    return {"backup_id": manifest.id, "dest": dest, "created_at": manifest.created_at,
            "size": manifest.size}


class BackupPrunePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dest: str | None = Field(default=None, description="default SIGNALFACTORY_BACKUP_DEST")


def backup_prune_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """``backup prune`` with the policy of the settings (7 daily, 4 weekly, 12 monthly)."""
    from signalfactory.domain.errors import BadInputError
    from signalfactory.ops.backup.prune import Policy, prune_backups

    args = parse_payload(BackupPrunePayload, payload, "backup.prune")
    settings = ctx.platform.settings
    dest = args.dest or settings.backup_dest
    if not dest:
        raise BadInputError("backup.prune job needs a destination: set "
                            "SIGNALFACTORY_BACKUP_DEST or pass {\"dest\": ...}")
    policy = Policy(keep_last=settings.backup_keep_last, daily=settings.backup_keep_daily,
                    weekly=settings.backup_keep_weekly, monthly=settings.backup_keep_monthly)
    result = prune_backups(dest, policy)
    return {"dest": dest, "kept": sorted(result.keep), "deleted": sorted(result.delete),
            "incomplete_removed": sorted(result.incomplete)}


class PitrBackupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(default="incr", pattern="^(full|diff|incr)$",
                      description="pgBackRest backup type")


def pitr_backup_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """A PITR base backup (``pitr-full`` weekly, ``pitr-incr`` hourly by default)."""
    from signalfactory.ops.backup.pitr import run_base_backup

    args = parse_payload(PitrBackupPayload, payload, "backup.pitr")
    return run_base_backup(ctx.platform.settings, args.type).to_dict()


def retention_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.ops.retention import run_scheduled_retention

    report = run_scheduled_retention(ctx.platform)
    return {"report": str(report)}


class ArchivePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: str | None = Field(default=None, description="YYYY-MM-DD; default: yesterday (UTC)")
    dest: str | None = None


def archive_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.ops.archive import parse_day, snapshot

    args = parse_payload(ArchivePayload, payload, "archive")
    day = parse_day(args.date) if args.date else (datetime.now(UTC) - timedelta(days=1)).date()
    report = snapshot(ctx.platform, day, Path(args.dest) if args.dest else None)
    return {"date": day.isoformat(), "report": str(report)}


def anomaly_scan_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Score the last hour of the key figures against their seasonal baseline (hourly)."""
    from signalfactory.ops.anomaly import anomaly_scan_task as run

    return run(ctx, payload)


def canary_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Write one canary row: the newest one a restore brings back measures its data loss."""
    from signalfactory.ops.backup.drill import write_canary

    parse_payload(CanaryPayload, payload, "ops.canary")
    stamp = write_canary(ctx.platform, "schedule")
    return {"written_at": stamp.isoformat()}


class CanaryPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


def notify_operators(platform: Platform, uow: UnitOfWork, failure: FinalFailure) -> None:
    """A scheduled operation failed for good: besides the alert, a notice to the subscribers
    of ``SIGNALFACTORY_OPS_NOTICE_TENANT`` through their delivery endpoints, written with the
    job's outcome. A missing tenant is logged, never allowed to undo the outcome."""
    from signalfactory.domain.errors import NotFoundError
    from signalfactory.services.delivery.notices import queue_notice

    tenant = platform.settings.ops_notice_tenant
    if tenant is None:
        return
    subject = f"Signal Factory: scheduled {failure.kind} {failure.status}"
    body = (f"The scheduled operation {failure.kind} (job {failure.job_id}) ended "
            f"{failure.status}: {failure.error}\n\nSee `signalfactory jobs show "
            f"{failure.job_id}` and the runbook section SignalFactoryScheduledOpsFailed.")
    try:
        queue_notice(platform, uow, tenant, subject, body,
                     dedupe_key=f"ops-notice:{failure.job_id}")
    except NotFoundError as exc:
        log.error("operator notice not sent", error=str(exc), job_id=failure.job_id)


register_task("backup", backup_task, max_attempts=3, on_final_failure=notify_operators)
register_task("ops.canary", canary_task, max_attempts=1)
register_task("backup.prune", backup_prune_task, max_attempts=3,
              on_final_failure=notify_operators)
register_task("backup.pitr", pitr_backup_task, max_attempts=2,
              on_final_failure=notify_operators)
register_task("retention", retention_task, max_attempts=3, on_final_failure=notify_operators)
register_task("archive", archive_task, max_attempts=3, on_final_failure=notify_operators)
register_task("ops.anomaly_scan", anomaly_scan_task, max_attempts=2,
              on_final_failure=notify_operators)

#: the scheduled operations SignalFactoryScheduledOpsFailed watches
SCHEDULED_OPS_KINDS = ("backup", "backup.prune", "backup.pitr", "archive", "retention")
# Series that exist at 0 from start: Prometheus' increase() cannot see the first failure of a
# series that appears with the value 1.
for _kind in SCHEDULED_OPS_KINDS:
    for _status in ("failed", "dead"):
        JOBS_TOTAL.labels(_kind, _status)
