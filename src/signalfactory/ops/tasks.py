"""Job kinds of operations: backups at the RPO, retention, daily archives.

They run under the embedded runner or Celery like any job, and the scheduler submits the
backup and retention ones from settings (``SIGNALFACTORY_BACKUP_DEST`` with
``SIGNALFACTORY_BACKUP_RPO_SECONDS``; ``SIGNALFACTORY_RETENTION_CRON``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import TaskContext, register_task


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


register_task("backup", backup_task, max_attempts=3)
register_task("retention", retention_task, max_attempts=3)
register_task("archive", archive_task, max_attempts=3)
