"""Probes: /livez says the process runs; /readyz says it can serve (DB up, schema at head)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from signalfactory.api.deps import PlatformDep
from signalfactory.observability.metrics import READY
from signalfactory.services.health import readiness_checks, refresh_gauges

__all__ = ["readiness_checks", "refresh_gauges", "router"]

router = APIRouter(tags=["health"])


@router.get("/livez", summary="Liveness: the process is up (no dependency checks)")
def livez() -> dict[str, str]:
    return {"status": "ok"}


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
