"""Probes: /livez says the process runs; /readyz says it can serve (DB up, schema at head)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from signalfactory.adapters.storage import migrate
from signalfactory.api.deps import PlatformDep
from signalfactory.observability.metrics import DB_CONNECTIONS_IN_USE, DB_CONNECTIONS_MAX, READY

router = APIRouter(tags=["health"])


@router.get("/livez", summary="Liveness: the process is up (no dependency checks)")
def livez() -> dict[str, str]:
    return {"status": "ok"}


def readiness_checks(platform: Any) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with platform.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        return checks
    try:
        current, head = migrate.current_revision(platform.engine), migrate.head_revision()
        checks["migrations"] = "ok" if current == head else (
            f"at {current or 'none'}, head is {head}; run `signalfactory db upgrade`")
    except Exception as exc:
        checks["migrations"] = f"unknown: {type(exc).__name__}"
    marker = platform.settings.home / "restore-in-progress"
    if marker.exists():
        checks["restore"] = "a restore is in progress; wait for it to finish"
    for name, probe in platform.extras.get("readiness_probes", {}).items():
        checks[name] = probe()
    return checks


@router.get("/readyz", summary="Readiness: database reachable and migrations at head",
            responses={503: {"description": "A check failed; the body names it"}})
def readyz(platform: PlatformDep) -> JSONResponse:
    checks = readiness_checks(platform)
    # "degraded: ..." (a read replica or the cache down) is reported but still ready: the
    # process serves every request, from the primary database.
    failing = sorted(k for k, v in checks.items() if v != "ok" and not v.startswith("degraded"))
    READY.set(0 if failing else 1)
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing, "checks": checks},
                            status_code=503)
    degraded = sorted(k for k, v in checks.items() if v != "ok")
    if degraded:
        return JSONResponse({"status": "degraded", "degraded": degraded, "checks": checks})
    return JSONResponse({"status": "ok", "checks": checks})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics(platform: PlatformDep) -> Response:
    refresh_gauges(platform)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def refresh_gauges(platform: Any) -> None:
    """Gauges read at scrape time: pool usage and data freshness."""
    pool = platform.engine.pool
    if hasattr(pool, "checkedout"):
        DB_CONNECTIONS_IN_USE.set(pool.checkedout())
        DB_CONNECTIONS_MAX.set(pool.size() + max(pool._max_overflow, 0))
    for hook in platform.extras.get("metrics_hooks", []):
        hook()
