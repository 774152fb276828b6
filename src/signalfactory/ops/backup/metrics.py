"""Backup gauges on the default Prometheus registry (no labels: one series each).

The process that makes a backup sets them at once. A scheduled backup usually runs in a
worker (a Celery child, a ``signalfactory worker`` process) that Prometheus does not scrape,
so serving processes also set them at scrape time from the newest succeeded ``backup`` job
in the database; without that, the backup-age alert would see no series at all.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING

from signalfactory.observability.metrics import (
    BACKUP_LAST_SUCCESS,
    BACKUP_RPO,
    BACKUP_SIZE,
)

if TYPE_CHECKING:
    from signalfactory.ops.backup.manifest import Manifest
    from signalfactory.services.platform import Platform

_lock = threading.Lock()
_newest = 0.0  # snapshot time of the newest success this process knows of


def _record(created: float, size: int) -> None:
    global _newest
    with _lock:
        if created > _newest:  # an older job result never hides a newer local backup
            _newest = created
            BACKUP_LAST_SUCCESS.set(created)
            BACKUP_SIZE.set(size)


def record_success(manifest: Manifest) -> None:
    _record(manifest.created.timestamp(), manifest.size)


def refresh_from_jobs(platform: Platform) -> None:
    """Scrape-time hook: the newest succeeded backup job's snapshot time and size, and the
    configured RPO when scheduled backups are on."""
    from signalfactory.domain.jobs import SUCCEEDED

    settings = platform.settings
    if settings.backup_dest:
        BACKUP_RPO.set(settings.backup_rpo_seconds)
    with platform.database.read(primary=True) as uow:
        job = uow.jobs.newest("backup", SUCCEEDED)
    if job is None:
        return
    result = job.result if isinstance(job.result, dict) else {}
    try:
        created = datetime.fromisoformat(str(result["created_at"])).timestamp()
    except (KeyError, ValueError):  # a result from before the snapshot time was stored
        if job.finished_at is None:
            return
        created = job.finished_at.timestamp()
    size = result.get("size")
    _record(created, int(size) if isinstance(size, int | float) else 0)
