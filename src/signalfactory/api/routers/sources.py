"""Market-data sources over HTTP: the collectors that keep the bar store fresh.

Sources are installation-wide (market data is shared by every tenant), so only an admin of
the installation's own tenant may see or change them: a tenant's admin of a hosted
installation answers 403 (a source's URL can reach the host's network, and pausing one
stales everyone's data). Bad input answers 422 and stores nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from signalfactory.api.auth import AdminDep, Principal
from signalfactory.api.deps import PlatformDep
from signalfactory.api.problems import ApiProblem
from signalfactory.api.routers.jobs import Job
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.sources import MAX_SYMBOLS, SOURCE_KINDS, Source
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.sources import records

router = APIRouter(prefix="/api/v1", tags=["sources"], responses=AUTH_RESPONSES)

SOURCE_NAME = Path(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such source"}}


def require_operator(principal: AdminDep) -> Principal:
    if principal.tenant_id != DEFAULT_TENANT_ID:
        raise ApiProblem(403, "market-data sources belong to the installation: this needs an "
                              "admin key of the installation's own tenant", code="forbidden",
                         required_role="admin")
    return principal


OperatorDep = Annotated[Principal, Depends(require_operator)]


class SourceIn(RequestModel):
    name: str = Field(min_length=1, max_length=32, examples=["binance-1m"])
    kind: str = Field(description=f"One of {', '.join(SOURCE_KINDS)}", examples=["ccxt"])
    symbols: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_SYMBOLS, examples=[["BTC/USDT", "ETH/USDT"]])
    timeframe: str = Field(default="1d", max_length=8, examples=["1m"])
    cron: str | None = Field(default=None, max_length=100, examples=["*/5 * * * *"],
                             description="When to collect; null: only on request")
    params: dict[str, Any] = Field(
        default_factory=dict, examples=[{"exchange": "binance"}],
        description="The adapter's parameters and the collector's options")
    paused: bool = False


class LastRun(BaseModel):
    at: datetime | None
    outcome: str | None
    error: str | None
    job_id: str | None
    rows: int | None
    last_success_at: datetime | None


class Breaker(BaseModel):
    state: str = Field(description="closed, open or half-open")
    failures: int
    opened_at: datetime | None


class SourceOut(BaseModel):
    name: str
    kind: str
    symbols: list[str]
    timeframe: str
    cron: str | None
    paused: bool
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_run: LastRun
    breaker: Breaker

    @classmethod
    def of(cls, s: Source) -> SourceOut:
        return cls(name=s.name, kind=s.kind, symbols=list(s.symbols), timeframe=s.timeframe,
                   cron=s.cron, paused=s.paused, params=s.params, created_at=s.created_at,
                   updated_at=s.updated_at,
                   last_run=LastRun(at=s.run.last_run_at, outcome=s.run.last_outcome,
                                    error=s.run.last_error, job_id=s.run.last_job_id,
                                    rows=s.run.last_rows,
                                    last_success_at=s.run.last_success_at),
                   breaker=Breaker(state=s.breaker.state, failures=s.breaker.failures,
                                   opened_at=s.breaker.opened_at))


class SourceList(BaseModel):
    items: list[SourceOut]


@router.post("/sources", response_model=SourceOut, status_code=201,
             summary="Add a market-data source (installation admin)",
             responses={409: {"model": Problem, "description": "That name is taken"},
                        422: {"model": Problem, "description": "A wrong kind, symbol, "
                                                               "timeframe, cron or parameter; "
                                                               "nothing was stored"}})
def post_source(body: SourceIn, _principal: OperatorDep, platform: PlatformDep) -> SourceOut:
    return SourceOut.of(records.add_source(platform, body.name, body.kind, body.params,
                                           body.symbols, body.timeframe, body.cron,
                                           paused=body.paused))


@router.get("/sources", response_model=SourceList, summary="Every market-data source")
def get_sources(_principal: OperatorDep, platform: PlatformDep) -> SourceList:
    return SourceList(items=[SourceOut.of(s) for s in records.list_sources(platform)])


@router.get("/sources/{name}", response_model=SourceOut, responses=NOT_FOUND,
            summary="One market-data source with its last run and breaker")
def get_source(_principal: OperatorDep, platform: PlatformDep,
               name: str = SOURCE_NAME) -> SourceOut:
    return SourceOut.of(records.get_source(platform, name))


@router.post("/sources/{name}/pause", response_model=SourceOut, responses=NOT_FOUND,
             summary="Stop scheduled runs (a run on request still works)")
def pause_source(_principal: OperatorDep, platform: PlatformDep,
                 name: str = SOURCE_NAME) -> SourceOut:
    return SourceOut.of(records.set_paused(platform, name, True))


@router.post("/sources/{name}/resume", response_model=SourceOut, responses=NOT_FOUND,
             summary="Schedule a paused source again")
def resume_source(_principal: OperatorDep, platform: PlatformDep,
                  name: str = SOURCE_NAME) -> SourceOut:
    return SourceOut.of(records.set_paused(platform, name, False))


@router.delete("/sources/{name}", status_code=204, responses=NOT_FOUND,
               summary="Forget a source (its bars stay)")
def delete_source(_principal: OperatorDep, platform: PlatformDep,
                  name: str = SOURCE_NAME) -> Response:
    records.remove_source(platform, name)
    return Response(status_code=204)


@router.post("/sources/{name}/run", response_model=Job, status_code=202,
             responses={**NOT_FOUND,
                        202: {"description": "Accepted; follow the job at Location"}},
             summary="Collect now: a job of kind collect_source")
def run_source(_principal: OperatorDep, platform: PlatformDep, response: Response,
               name: str = SOURCE_NAME) -> Job:
    job = records.submit_run(platform, name)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return Job.of(job_service.get_job(platform, job.id))
