"""Backup gauges on the default Prometheus registry (no labels: one series each)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Gauge

if TYPE_CHECKING:
    from signalfactory.ops.backup.manifest import Manifest

BACKUP_LAST_SUCCESS = Gauge(
    "backup_last_success_timestamp_seconds",
    "Unix time at which the newest successful backup's snapshot was taken (0: never)")
BACKUP_SIZE = Gauge("signalfactory_backup_size_bytes",
                    "Stored size of the newest successful backup, all parts")
BACKUP_RPO = Gauge("signalfactory_backup_rpo_seconds",
                   "Configured recovery point objective: the interval between backups")


def record_success(manifest: Manifest) -> None:
    BACKUP_LAST_SUCCESS.set(manifest.created.timestamp())
    BACKUP_SIZE.set(manifest.size)
