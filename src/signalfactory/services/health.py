"""Readiness checks and scrape-time gauges, shared by ``/readyz``, ``/metrics`` and the
dashboard's overview."""

from __future__ import annotations

from signalfactory.observability.metrics import DB_CONNECTIONS_IN_USE, DB_CONNECTIONS_MAX
from signalfactory.services.platform import Platform


def readiness_checks(platform: Platform) -> dict[str, str]:
    checks = platform.database.health()
    if checks.get("database") != "ok":
        return checks
    if platform.settings.restore_marker.exists():
        checks["restore"] = "a restore is in progress; wait for it to finish"
    for name, probe in platform.probes.items():
        checks[name] = probe()
    return checks


def refresh_gauges(platform: Platform) -> None:
    """Gauges read at scrape time: pool usage, and every refresher bootstrap wired."""
    usage = platform.database.pool_usage()
    if usage is not None:
        DB_CONNECTIONS_IN_USE.set(usage[0])
        DB_CONNECTIONS_MAX.set(usage[1])
    for refresh in platform.metrics_refreshers:
        refresh(platform)
