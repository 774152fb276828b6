"""Backtests over HTTP: submitted as jobs, read back by their deterministic id.

``POST /api/v1/backtests`` checks the request at once (a wrong option, rule, strategy or
symbol is a 4xx and nothing is stored or counted), takes one unit of the tenant's daily
``backtests`` quota and records a job of kind ``backtest`` in the same transaction, and answers
202 with the job; ``Location`` points at the job, whose result names the backtest when it has
run. Another tenant's backtest answers 404, exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.routers.jobs import Job
from signalfactory.api.schemas import (
    AUTH_RESPONSES,
    Problem,
    RequestModel,
    Symbol,
    alternatives,
)
from signalfactory.domain.backtest.stored import (
    BacktestResult,
    Scalar,
    TradeRecord,
    iso,
)
from signalfactory.domain.backtest.stored import BacktestSummary as SummaryRecord
from signalfactory.services.accounts.quotas import enforce_quota
from signalfactory.services.backtests.options import BacktestRequest
from signalfactory.services.backtests.report import render_report
from signalfactory.services.backtests.run import check_data, get_backtest, prepare
from signalfactory.services.backtests.run import list_backtests as stored_backtests
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.strategies.catalog import store_builtins_once

router = APIRouter(prefix="/api/v1", tags=["backtests"], responses=AUTH_RESPONSES)

BACKTEST_ID = Path(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$",
                   examples=["8f2d5c0b6a3e4f1d9c7b5a3e1f0d2c4b6a8e0f2d4c6b8a0e2f4d6c8b0a2e4f6d"])
# NUL cannot reach PostgreSQL text columns: refused as a 422 like any other bad character
TEXT = r"^[^\x00]*$"
ParamName = Annotated[str, Field(max_length=64, pattern=TEXT)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such backtest in this tenant"}}


class BacktestIn(RequestModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra={**alternatives(("strategy", "rule"),
                                                                ("symbols", "universe")),
                                                 "examples": [
                                  {"strategy": "sma_cross", "symbols": ["SAAA"],
                                   "from": "2015-03-01", "fees": 0.001, "size": "all"},
                                  {"rule": "entry: close > sma(close, 50)\n"
                                           "exit: close < sma(close, 50)",
                                   "universe": "sector=technology", "max_positions": 5,
                                   "size": "0.2", "fill": "next_open", "slippage": 5}]})

    strategy: str | None = Field(default=None, max_length=100, examples=["sma_cross"],
                                 pattern=r"^[A-Za-z0-9_.\- ]+$",
                                 description="A stored strategy (give this or `rule`)")
    rule: str | None = Field(default=None, max_length=20_000, pattern=TEXT,
                             description="An ad-hoc rule text (give this or `strategy`)")
    symbols: list[Symbol] | None = Field(
        default=None, min_length=1, max_length=10_000, examples=[["SAAA"]])
    universe: str | None = Field(default=None, max_length=128, pattern=TEXT,
                                 examples=["sector=technology"],
                                 description="Instrument tag (give this or `symbols`)")
    start: str | None = Field(default=None, alias="from", max_length=40, pattern=TEXT,
                              examples=["2015-03-01"], description="First date traded")
    end: str | None = Field(default=None, alias="to", max_length=40, pattern=TEXT,
                            examples=["2015-12-31"],
                            description="Last date (inclusive)")
    timeframe: str | None = Field(default=None, max_length=8, pattern=TEXT, examples=["1d"])
    fill: Literal["close", "next_open"] = "close"
    fees: float = Field(default=0.0, ge=0, lt=0.1, examples=[0.001],
                        description="Per order, fraction of traded value")
    fee_fixed: float = Field(default=0.0, ge=0, le=1e9, description="Per order, in cash")
    slippage: float = Field(default=0.0, ge=0, lt=1000, description="Basis points")
    cash: float = Field(default=10_000.0, gt=0, le=1e15)
    size: str = Field(default="all", min_length=1, max_length=40, pattern=TEXT,
                      examples=["all", "0.5", "25%", "cash:2500", "units:10", "risk:1%"])
    units: Literal["whole", "fractional"] = "whole"
    direction: Literal["long", "short", "both"] = "long"
    stop_loss: float | None = Field(default=None, gt=0, lt=1, examples=[0.05])
    take_profit: float | None = Field(default=None, gt=0, le=100, examples=[0.1])
    trailing_stop: float | None = Field(default=None, gt=0, lt=1)
    max_positions: int | None = Field(default=None, ge=1, le=100_000,
                                      description="Portfolio mode: shared cash, at most N "
                                                  "positions")
    atr_period: int = Field(default=14, ge=1, le=10_000)
    atr_multiple: float = Field(default=1.0, gt=0, le=1000)
    close_at_end: StrictBool = False
    calendar: Literal["stock", "crypto"] | None = None
    parameters: dict[ParamName, float | int] | None = Field(
        default=None, description="Overrides for a built-in strategy's parameters",
        examples=[{"fast": 5, "slow": 20}])

    def to_request(self, tenant_id: int) -> BacktestRequest:
        data = self.model_dump(exclude={"symbols"})
        return BacktestRequest(tenant_id=tenant_id, symbols=tuple(self.symbols or ()), **data)


class Trade(BaseModel):
    symbol: str
    entry_ts: str
    exit_ts: str
    size: float
    entry_price: float
    exit_price: float
    pnl: float
    return_: float = Field(alias="return")
    fees: float
    exit_reason: str

    @classmethod
    def of(cls, trade: TradeRecord) -> Trade:
        return cls.model_validate({
            "symbol": trade.symbol, "entry_ts": iso(trade.entry_ts),
            "exit_ts": iso(trade.exit_ts), "size": trade.size,
            "entry_price": trade.entry_price, "exit_price": trade.exit_price, "pnl": trade.pnl,
            "return": trade.return_, "fees": trade.fees, "exit_reason": trade.exit_reason})


class StrategyRef(BaseModel):
    name: str
    version: int | None
    code_hash: str


class DataRangeOut(BaseModel):
    timeframe: str
    universe: str | None
    symbols: list[str]
    skipped: list[str]
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    bars: int
    history_bars: int
    calendar: str
    bars_per_year: float
    sha256: str


class BacktestOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    status: str
    mode: Literal["single", "universe", "portfolio"]
    strategy: StrategyRef
    config: dict[str, Scalar]
    data_range: DataRangeOut
    metrics: dict[str, float | int | None] = Field(
        description="Non-finite values (an undefined ratio, a profit factor without losing "
                    "trades) are null")
    final_equity: float
    n_trades: int
    trades: list[Trade]
    per_symbol: list[dict[str, Scalar]]
    created_at: str | None
    duration_seconds: float
    error: str | None

    @classmethod
    def of(cls, result: BacktestResult) -> BacktestOut:
        b, d = result.backtest, result.backtest.data_range
        return cls(
            id=b.id, status=b.status, mode=b.mode,  # type: ignore[arg-type]  # stored modes
            strategy=StrategyRef(name=b.strategy_name, version=b.strategy_version,
                                 code_hash=b.code_hash),
            config=dict(b.config),
            data_range=DataRangeOut.model_validate(d.to_json()),
            metrics={k: v for k, v in b.metrics.items() if not isinstance(v, str)},
            final_equity=b.final_equity, n_trades=b.n_trades,
            trades=[Trade.of(t) for t in result.trades],
            per_symbol=[dict(s) for s in b.per_symbol],
            created_at=b.created_at.isoformat(), duration_seconds=b.duration_seconds,
            error=b.error)


class StrategyName(BaseModel):
    name: str
    version: int | None


class BacktestSummary(BaseModel):
    id: str
    mode: str
    strategy: StrategyName
    timeframe: str | None
    symbols: int
    start: str | None = Field(alias="from")
    end: str | None = Field(alias="to")
    final_equity: float
    n_trades: int
    total_return: float | None
    created_at: str | None

    @classmethod
    def of(cls, item: SummaryRecord) -> BacktestSummary:
        return cls.model_validate({
            "id": item.id, "mode": item.mode,
            "strategy": StrategyName(name=item.strategy_name, version=item.strategy_version),
            "timeframe": item.timeframe, "symbols": item.n_symbols, "from": item.start,
            "to": item.end, "final_equity": item.final_equity, "n_trades": item.n_trades,
            "total_return": item.total_return, "created_at": item.created_at.isoformat()})


class BacktestList(BaseModel):
    items: list[BacktestSummary]
    count: int


@router.post("/backtests", status_code=202, response_model=Job,
             summary="Submit a backtest (trader): runs as a job; 202 with the job",
             responses={202: {"description": "Accepted; follow the job at Location",
                              "headers": {"Location": {"schema": {"type": "string"},
                                                       "description": "/api/v1/jobs/{id}"}}},
                        404: {"model": Problem, "description": "Unknown strategy"},
                        422: {"model": Problem, "description": "A wrong option, rule or "
                                                               "symbol; nothing was stored"}})
def submit_backtest(body: BacktestIn, principal: TraderDep, platform: PlatformDep,
                    response: Response) -> Job:
    request = body.to_request(principal.tenant_id)
    store_builtins_once(platform)
    # bad input, about the request or the data it needs, answers now: before quota or job
    check_data(platform, prepare(platform, request))
    with platform.database.write() as uow:
        enforce_quota(uow, principal, "backtests")
        job = job_service.submit(platform, "backtest", request.to_payload(),
                                 tenant_id=principal.tenant_id, uow=uow)
    job_service.dispatch(platform, job.id)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return Job.of(job)


@router.get("/backtests", response_model=BacktestList, response_model_by_alias=True,
            summary="This tenant's stored backtests, newest first")
def list_backtests(principal: PrincipalDep, platform: PlatformDep,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> BacktestList:
    items = stored_backtests(platform, principal.tenant_id, limit=limit, offset=offset)
    return BacktestList(items=[BacktestSummary.of(i) for i in items], count=len(items))


@router.get("/backtests/{backtest_id}", response_model=BacktestOut,
            response_model_by_alias=True, responses=NOT_FOUND,
            summary="A stored backtest: metrics, final equity, trades, per-symbol results")
def read_backtest(principal: PrincipalDep, platform: PlatformDep,
                  backtest_id: str = BACKTEST_ID,
                  trades_limit: Annotated[int, Query(ge=0, le=1_000_000,
                                                     description="At most this many trades "
                                                                 "(n_trades counts all)")]
                  = 10_000) -> BacktestOut:
    return BacktestOut.of(get_backtest(platform, principal.tenant_id, backtest_id,
                                       trades_limit=trades_limit))


@router.get("/backtests/{backtest_id}/report", response_class=HTMLResponse,
            responses={**NOT_FOUND, 200: {"content": {"text/html": {}},
                                          "description": "A self-contained HTML page"}},
            summary="The backtest's HTML report (charts, metrics, trades)")
def backtest_report(principal: PrincipalDep, platform: PlatformDep,
                    backtest_id: str = BACKTEST_ID) -> HTMLResponse:
    return HTMLResponse(render_report(platform, principal.tenant_id, backtest_id))
