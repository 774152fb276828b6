"""Signals: the newest ones with filters, fed live by the SSE stream, and a symbol's chart."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.signals import SignalQuery, StoredSignal
from signalfactory.services.strategies.catalog import list_strategies
from signalfactory.services.strategies.preview import expression_values, symbol_bars
from signalfactory.web.charts import price_chart
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)
SIDES = ("long", "short", "exit")
PAGE_ROWS = 50
CHART_BARS = 500
MAX_CHART_BARS = 5000
MAX_MARKERS = 5000
DEFAULT_OVERLAYS = ("sma(close, 20)", "sma(close, 50)")

Text = Annotated[str, Query(max_length=100)]


@router.get("/signals")
def signals_page(request: Request, user: WebUserDep, platform: PlatformDep,
                 strategy: Text = "", symbol: Text = "", side: Text = "",
                 min_score: Annotated[str, Query(max_length=32)] = "") -> Response:
    error = ""
    score: float | None = None
    if min_score.strip():
        try:
            score = float(min_score)
        except ValueError:
            error = "min score must be a number, e.g. 0.5"
    side = side if side in SIDES else ""
    tenant = user.principal.tenant_id
    with platform.database.read() as uow:
        rows: list[StoredSignal] = [] if error else uow.signals.page(SignalQuery(
            tenant_id=tenant, symbol=symbol.strip() or None, strategy=strategy.strip() or None,
            side=side or None, min_score=score, limit=PAGE_ROWS, newest_first=True))
        names = sorted({s.name for s in list_strategies(uow, tenant)})
    stream = {"strategies": strategy.strip(), "symbols": symbol.strip(),
              "min_score": "" if score is None else str(score)}
    stream_url = "/api/v1/stream/sse?" + urlencode({k: v for k, v in stream.items() if v})
    return render(request, "signals.html", {
        "user": user, "active": "signals", "rows": rows, "strategies": names,
        "filters": {"strategy": strategy, "symbol": symbol, "side": side,
                    "min_score": min_score},
        "error": error, "sides": SIDES, "stream_url": stream_url,
        "last_id": max((r.id for r in rows), default=None)})


@router.get("/symbols/{symbol:path}")  # crypto symbols have a slash: BTC/USDT
def symbol_page(request: Request, user: WebUserDep, platform: PlatformDep, symbol: str,
                timeframe: Annotated[str, Query(max_length=8)] = "1d",
                overlay: Annotated[list[str] | None, Query(max_length=5)] = None,
                bars: Annotated[int, Query(ge=10, le=MAX_CHART_BARS)] = CHART_BARS
                ) -> Response:
    overlays = [o.strip() for o in (overlay if overlay is not None else DEFAULT_OVERLAYS)
                if o.strip()]
    chart, error, status = None, "", 200
    with platform.database.read() as uow:
        timeframes = uow.bars.timeframes()
        marks = uow.signals.page(SignalQuery(tenant_id=user.principal.tenant_id,
                                             symbol=symbol, limit=MAX_MARKERS,
                                             newest_first=True))
    try:
        window = symbol_bars(platform, symbol, timeframe, bars)
        values = expression_values(overlays, window)
        chart = price_chart(window, values, (
            (int(s.bar_ts.timestamp()), s.side) for s in marks if s.timeframe == timeframe))
    except BadInputError as exc:
        error, status = str(exc), 404 if exc.code == "not-found" else 422
    return render(request, "symbol.html", {
        "user": user, "active": "signals", "symbol": symbol, "timeframe": timeframe,
        "timeframes": timeframes, "overlays": overlays, "chart": chart, "error": error,
        "signals": marks[:50], "bars": bars}, status_code=status)
