"""Overview: is the platform working, and what did it do today."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from signalfactory.domain.delivery import DEAD, DELIVERED
from signalfactory.domain.jobs import DEAD as JOB_DEAD
from signalfactory.domain.jobs import FAILED, QUEUED, RUNNING
from signalfactory.observability.metrics import (
    BACKUP_LAST_SUCCESS,
    MARKET_DATA_LAST_BAR,
    MARKET_DATA_MAX_STALENESS,
)
from signalfactory.services.delivery import records
from signalfactory.services.health import readiness_checks, refresh_gauges
from signalfactory.services.jobs import registry as jobs
from signalfactory.web.pages.trading import trading_summary
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)
#: counts on the overview stop here ("1,000+"): a page never scans a whole table
COUNT_CAP = 1000


@dataclass(frozen=True)
class Freshness:
    source: str
    timeframe: str
    newest: datetime
    age_seconds: float
    stale: bool


def _gauge_samples(metric: object, name: str) -> list[tuple[dict[str, str], float]]:
    out: list[tuple[dict[str, str], float]] = []
    for family in metric.collect():  # type: ignore[attr-defined]
        out.extend((dict(s.labels), float(s.value)) for s in family.samples if s.name == name)
    return out


def freshness() -> list[Freshness]:
    """The newest bar per source kind and timeframe, as ``/metrics`` reports it."""
    allowed = {(lb["source"], lb["timeframe"]): v for lb, v in _gauge_samples(
        MARKET_DATA_MAX_STALENESS, "signalfactory_market_data_max_staleness_seconds")}
    now = time.time()
    rows = []
    for labels, stamp in _gauge_samples(MARKET_DATA_LAST_BAR,
                                        "signalfactory_market_data_last_bar_timestamp_seconds"):
        key = (labels["source"], labels["timeframe"])
        age = now - stamp
        rows.append(Freshness(key[0], key[1], datetime.fromtimestamp(stamp, UTC), age,
                              age > allowed.get(key, float("inf"))))
    return sorted(rows, key=lambda f: (f.source, f.timeframe))


def _count(items: list[object]) -> str:
    return f"{COUNT_CAP:,}+" if len(items) >= COUNT_CAP else f"{len(items):,}"


@router.get("/")
def overview(request: Request, user: WebUserDep, platform: PlatformDep) -> Response:
    tenant = user.principal.tenant_id
    checks = readiness_checks(platform)
    refresh_gauges(platform)  # the same refreshers /metrics runs: freshness, backups
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with platform.database.read() as uow:
        signals_today = uow.signals.count_created_since(tenant, midnight)
        delivered = records.find_deliveries(uow, tenant, status=DELIVERED, limit=COUNT_CAP)
        dead = records.find_deliveries(uow, tenant, status=DEAD, limit=COUNT_CAP)
    job_counts = {status: jobs.list_jobs(platform, tenant_id=tenant, status=status,
                                         limit=COUNT_CAP)
                  for status in (RUNNING, QUEUED, FAILED, JOB_DEAD)}
    finished = len(delivered) + len(dead)
    backup_stamp = next((v for _, v in _gauge_samples(
        BACKUP_LAST_SUCCESS, "backup_last_success_timestamp_seconds")), 0.0)
    backup = datetime.fromtimestamp(backup_stamp, UTC) if backup_stamp > 0 else None
    return render(request, "overview.html", {
        "user": user, "active": "overview", "checks": checks,
        "healthy": all(v == "ok" or v.startswith("degraded") for v in checks.values()),
        "freshness": freshness(), "signals_today": signals_today,
        "jobs": {k: _count(list(v)) for k, v in job_counts.items()},
        "delivery_rate": (len(delivered) / finished) if finished else None,
        "delivered": _count(list(delivered)), "dlq": _count(list(dead)),
        "backup": backup,
        "backup_age_hours": (time.time() - backup_stamp) / 3600 if backup else None,
        "backup_configured": bool(platform.settings.backup_dest),
        "trading": trading_summary(platform, user),
    })
