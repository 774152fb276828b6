"""Scans over HTTP: run one (stored with its ranking), read one back."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from signalfactory.api.auth import CredentialsDep, TraderDep, authenticate_scope
from signalfactory.api.cached import cached_response
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel, Time, alternatives
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.scans import StoredScan
from signalfactory.services.accounts.quotas import enforce_quota
from signalfactory.services.scans.scan import ScanRequest, check_request, get_scan, run_scan
from signalfactory.services.strategies.catalog import store_builtins_once

router = APIRouter(prefix="/api/v1", responses=AUTH_RESPONSES)

# Row ids are 32-bit integers in the database: larger ids name nothing and are refused (422)
# instead of overflowing the driver.
ROW_ID = Path(ge=1, le=2**31 - 1)


class ScanIn(RequestModel):
    # exactly one of strategy and rule (the server checks it; the document says it)
    model_config = ConfigDict(json_schema_extra=alternatives(("strategy", "rule")))

    strategy: str | None = Field(default=None, max_length=100, examples=["sma_cross"])
    rule: str | None = Field(default=None, max_length=20_000)
    universe: str | None = Field(default=None, max_length=128, examples=["sector=technology"])
    as_of: Time | None = Field(default=None, examples=["2024-06-28"])
    top: int | None = Field(default=None, ge=1, le=10_000, examples=[20])
    timeframe: str | None = Field(default=None, max_length=8, examples=["1d"])
    parameters: dict[str, float | int] | None = Field(
        default=None, description="Overrides for a built-in strategy's parameters",
        examples=[{"fast": 5, "slow": 20}])


class ScanResult(BaseModel):
    rank: int
    symbol: str
    side: str
    score: float | None
    price: float
    bar_ts: str
    values: dict[str, float]


class ScanOut(BaseModel):
    id: int
    status: str
    error: str | None
    strategy_version_id: int | None
    rule_text: str | None
    universe: str | None
    timeframe: str
    as_of: str | None
    top: int | None
    instruments: int
    matches: int
    created_at: str | None
    finished_at: str | None
    results: list[ScanResult]

    @classmethod
    def of(cls, scan: StoredScan) -> ScanOut:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return cls(id=scan.id, status=scan.status, error=scan.error,
                   strategy_version_id=scan.strategy_version_id, rule_text=scan.rule_text,
                   universe=scan.universe, timeframe=scan.timeframe, as_of=iso(scan.as_of),
                   top=scan.top, instruments=scan.instruments, matches=scan.matches,
                   created_at=iso(scan.created_at), finished_at=iso(scan.finished_at),
                   results=[ScanResult(rank=r.rank, symbol=r.symbol, side=r.side,
                                          score=r.score, price=r.price,
                                          bar_ts=r.bar_ts.isoformat(), values=dict(r.values))
                            for r in scan.results])


@router.post("/scans", response_model=ScanOut, status_code=201, tags=["scans"],
             summary="Scan a universe with a strategy or rule and store the ranking",
             responses={404: {"model": Problem, "description": "No such strategy, or no "
                                                               "instruments with bars"}})
def create_scan(body: ScanIn, principal: TraderDep, platform: PlatformDep) -> ScanOut:
    if (body.strategy is None) == (body.rule is None):
        raise BadInputError("give exactly one of 'strategy' or 'rule'")
    request = ScanRequest(tenant_id=principal.tenant_id, strategy=body.strategy,
                          rule=body.rule, universe=body.universe, as_of=body.as_of,
                          top=body.top, timeframe=body.timeframe, parameters=body.parameters)
    check_request(request)
    store_builtins_once(platform)
    # The day's quota is taken in the transaction that stores the scan: a scan refused on
    # its data (no bars, too little history) takes none.
    return ScanOut.of(run_scan(platform, request,
                               on_store=lambda uow: enforce_quota(uow, principal, "scans")))


@router.get("/scans/{scan_id}", response_model=ScanOut, tags=["scans"],
            summary="A stored scan and its ranked results",
            responses={404: {"model": Problem, "description": "No such scan in this tenant"}})
async def read_scan(request: Request, _key: CredentialsDep, platform: PlatformDep,
                    scan_id: int = ROW_ID) -> Response:
    def serve() -> Response:
        # One worker-thread hop for the key lookup and the cache read together (a sync
        # dependency would add a hop of its own). A stored scan never changes, so its entry
        # needs no invalidation; misses (404) are not cached.
        principal = authenticate_scope(platform, request.scope)
        return cached_response(
            platform, "scans", ("one", scan_id),
            lambda: ScanOut.of(get_scan(platform, principal.tenant_id, scan_id)),
            tenant_id=principal.tenant_id)

    return await run_in_threadpool(serve)
