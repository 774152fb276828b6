"""Jobs of the calling tenant: list, read (status, progress, result, error) and cancel.

Jobs are created by the endpoints that start work (scans, backtests, collection); these
endpoints follow them. Another tenant's job answers 404, exactly like a missing one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem
from signalfactory.domain.jobs import Job as JobRecord
from signalfactory.services.jobs import registry as job_service

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=AUTH_RESPONSES)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "dead"]
# uuid4 text; anything else cannot name a job, so it is refused before any lookup
JOB_ID = Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$",
              examples=["6f1c2b9e-4d7a-4e0b-9a53-2f3c8d1e5b7a"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such job in this tenant"}}


class Job(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "6f1c2b9e-4d7a-4e0b-9a53-2f3c8d1e5b7a", "kind": "collect", "status": "running",
        "progress": 0.4, "payload": {"symbols": ["AAPL"], "timeframe": "1d"}, "result": None,
        "error": None, "attempts": 1, "max_attempts": 5, "priority": 0,
        "cancel_requested": False, "created_at": "2026-11-28T09:00:00Z",
        "started_at": "2026-11-28T09:00:01Z", "finished_at": None}]})

    id: str
    kind: str
    status: JobStatus
    progress: float = Field(ge=0, le=1)
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    priority: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: JobRecord) -> Job:
        return cls(**{name: getattr(job, name) for name in cls.model_fields})


class JobList(BaseModel):
    items: list[Job]
    count: int


@router.get("/jobs", response_model=JobList, summary="List this tenant's jobs, newest first")
def list_jobs(principal: PrincipalDep, platform: PlatformDep,
              status: Annotated[JobStatus | None, Query()] = None,
              kind: Annotated[str | None, Query(min_length=1, max_length=64,
                                                pattern=r"^[A-Za-z0-9_.:-]+$",
                                                examples=["backtest"])] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> JobList:
    items = job_service.list_jobs(platform, tenant_id=principal.tenant_id, status=status,
                                  kind=kind, limit=limit, offset=offset)
    return JobList(items=[Job.of(j) for j in items], count=len(items))


@router.get("/jobs/{job_id}", response_model=Job, responses=NOT_FOUND,
            summary="One job: status, progress, result or error")
def get_job(principal: PrincipalDep, platform: PlatformDep, job_id: str = JOB_ID) -> Job:
    return Job.of(job_service.get_job(platform, job_id, tenant_id=principal.tenant_id))


@router.post("/jobs/{job_id}/cancel", response_model=Job,
             responses={**NOT_FOUND, 409: {"model": Problem,
                                           "description": "The job already succeeded or failed"}},
             summary="Cancel a job (trader): queued stops now, running stops at its next check")
def cancel_job(principal: TraderDep, platform: PlatformDep, job_id: str = JOB_ID) -> Job:
    return Job.of(job_service.cancel_job(platform, job_id, tenant_id=principal.tenant_id))


@router.post("/jobs/{job_id}/retry", response_model=Job,
             responses={**NOT_FOUND, 409: {"model": Problem,
                                           "description": "Only dead, failed or cancelled "
                                                          "jobs can be retried"}},
             summary="Queue a dead, failed or cancelled job again (trader)")
def retry_job(principal: TraderDep, platform: PlatformDep, job_id: str = JOB_ID) -> Job:
    return Job.of(job_service.retry_job(platform, job_id, tenant_id=principal.tenant_id))
