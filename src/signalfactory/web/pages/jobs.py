"""Jobs: the tenant's jobs with their progress, one job with its result or error, cancel and
retry (through ``POST /api/v1/jobs/{id}/cancel`` and ``/retry``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from signalfactory.domain.errors import NotFoundError
from signalfactory.domain.jobs import STATUSES
from signalfactory.services.jobs import registry as jobs
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)
JobId = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
ACTIVE = ("queued", "running")


@router.get("/jobs")
def jobs_page(request: Request, user: WebUserDep, platform: PlatformDep,
              status: Annotated[str, Query(max_length=16)] = "",
              kind: Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")] = ""
              ) -> Response:
    status = status if status in STATUSES else ""
    items = jobs.list_jobs(platform, tenant_id=user.principal.tenant_id,
                           status=status or None, kind=kind or None, limit=100)
    return render(request, "jobs.html", {
        "user": user, "active": "jobs", "items": items, "statuses": STATUSES,
        "status": status, "kind": kind, "kinds": jobs.registered_kinds(),
        "polling": any(j.status in ACTIVE for j in items)})


@router.get("/jobs/{job_id}")
def job_page(request: Request, user: WebUserDep, platform: PlatformDep,
             job_id: JobId) -> Response:
    try:
        job = jobs.get_job(platform, job_id, tenant_id=user.principal.tenant_id)
    except NotFoundError as exc:
        return render(request, "error.html", {"user": user, "active": "jobs",
                                              "message": str(exc)}, status_code=404)
    result = job.result if isinstance(job.result, dict) else {}
    return render(request, "job.html", {
        "user": user, "active": "jobs", "job": job, "result": result,
        "backtest_id": result.get("backtest_id"), "scan_id": result.get("scan_id"),
        "polling": job.status in ACTIVE})
