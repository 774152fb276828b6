"""Backtests: the list, the submit form (the CLI's options), a result with its charts,
metrics and trades, and two results side by side."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from signalfactory.domain.backtest.stored import BacktestResult, EquityCurve
from signalfactory.domain.errors import BadInputError
from signalfactory.services.backtests.report import SHOWN_METRICS
from signalfactory.services.backtests.run import get_backtest, list_backtests
from signalfactory.services.jobs import registry as jobs
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import list_strategies, store_builtins_once
from signalfactory.web.charts import drawdown_chart, equity_chart
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)
BacktestId = Annotated[str, Path(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")]
OptionalId = Annotated[str, Query(max_length=64, pattern=r"^[0-9a-f]{0,64}$")]
SHOWN_TRADES = 200


def _curve(platform: Platform, result: BacktestResult) -> EquityCurve | None:
    b = result.backtest
    wanted = b.data_range.symbols[0] if b.mode == "single" else ""
    with platform.database.read() as uow:
        return uow.backtests.equity_curve(b.id, wanted) or uow.backtests.equity_curve(b.id, "")


@router.get("/backtests")
def backtests_page(request: Request, user: WebUserDep, platform: PlatformDep) -> Response:
    tenant = user.principal.tenant_id
    items = list_backtests(platform, tenant, limit=100)
    active = [j for status in ("running", "queued") for j in jobs.list_jobs(
        platform, tenant_id=tenant, status=status, kind="backtest", limit=20)]
    return render(request, "backtests.html", {"user": user, "active": "backtests",
                                              "items": items, "running": active})


@router.get("/backtests/new")
def new_backtest(request: Request, user: WebUserDep, platform: PlatformDep,
                 strategy: Annotated[str, Query(max_length=100)] = "") -> Response:
    store_builtins_once(platform)
    with platform.database.read() as uow:
        names = sorted(s.name for s in list_strategies(uow, user.principal.tenant_id))
        symbols = sorted(uow.instruments.symbols().values())[:500]
    return render(request, "backtest_new.html", {
        "user": user, "active": "backtests", "strategies": names, "chosen": strategy,
        "symbols": symbols, "first_symbol": symbols[0] if symbols else ""})


@router.get("/backtests/compare")
def compare(request: Request, user: WebUserDep, platform: PlatformDep,
            a: OptionalId = "", b: OptionalId = "") -> Response:
    tenant = user.principal.tenant_id
    results, charts, error = [], [], ""
    for backtest_id in (a, b):
        if not backtest_id:
            continue
        try:
            result = get_backtest(platform, tenant, backtest_id, trades_limit=0)
        except BadInputError as exc:
            error = str(exc)
            continue
        results.append(result)
        curve = _curve(platform, result)
        if curve is not None and len(curve.equity):
            start = float(curve.equity[0]) or 1.0
            charts.append(equity_chart(curve.ts, curve.equity / start - 1.0,
                                       label=f"{result.backtest.strategy_name} "
                                             f"{result.backtest.id[:8]}"))
    chart: dict[str, Any] | None = None
    if charts:
        chart = {"kind": "line", "intraday": charts[0]["intraday"],
                 "series": [c["series"][0] for c in charts]}
    return render(request, "backtest_compare.html", {
        "user": user, "active": "backtests", "results": results, "chart": chart,
        "metrics": SHOWN_METRICS, "error": error,
        "choices": list_backtests(platform, tenant, limit=100), "a": a, "b": b},
        status_code=404 if error else 200)


@router.get("/backtests/{backtest_id}")
def backtest_page(request: Request, user: WebUserDep, platform: PlatformDep,
                  backtest_id: BacktestId) -> Response:
    try:
        result = get_backtest(platform, user.principal.tenant_id, backtest_id,
                              trades_limit=SHOWN_TRADES)
    except BadInputError as exc:
        return render(request, "error.html", {"user": user, "active": "backtests",
                                              "message": str(exc)}, status_code=404)
    b = result.backtest
    curve = _curve(platform, result)
    equity = drawdown = None
    if curve is not None and len(curve.equity):
        cash = b.setting("cash")
        benchmark = None
        if b.mode == "single" and isinstance(cash, int | float):
            benchmark = _buy_and_hold(platform, result, curve, float(cash))
        equity = equity_chart(curve.ts, curve.equity, benchmark)
        drawdown = drawdown_chart(curve.ts, curve.equity)
    metrics = {k: b.metrics.get(k) for k in SHOWN_METRICS if k in b.metrics}
    return render(request, "backtest.html", {
        "user": user, "active": "backtests", "b": b, "trades": result.trades,
        "metrics": metrics, "equity": equity, "drawdown": drawdown,
        "shown_trades": SHOWN_TRADES})


def _buy_and_hold(platform: Platform, result: BacktestResult, curve: EquityCurve,
                  cash: float) -> np.ndarray | None:
    from signalfactory.domain.timeframes import Timeframe
    from signalfactory.domain.timestamps import ns_to_datetime
    from signalfactory.services.marketdata.bars import load_universe

    data = result.backtest.data_range
    try:
        bars = load_universe(platform, Timeframe.parse(data.timeframe),
                             symbols=[data.symbols[0]], start=ns_to_datetime(int(curve.ts[0])),
                             end=ns_to_datetime(int(curve.ts[-1])))
    except BadInputError:
        return None
    if bars.n_bars != len(curve.ts) or not np.array_equal(bars.ts, curve.ts):
        return None  # the stored bars changed since: no honest benchmark to draw
    bench: np.ndarray = cash * bars.close / bars.close[0]
    return bench
