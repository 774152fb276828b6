"""Scans: run one on a universe (``POST /api/v1/scans``), its ranking with sparklines, and the
history of stored scans."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform
from signalfactory.services.scans.scan import get_scan
from signalfactory.services.strategies.catalog import list_strategies, store_builtins_once
from signalfactory.web.charts import sparkline
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)
SPARK_BARS = 40
SPARK_ROWS = 50


def sparklines(platform: Platform, symbols: list[str], timeframe: str) -> dict[str, str]:
    """The last closes of each symbol as SVG polyline points."""
    if not symbols:
        return {}
    try:
        bars = load_universe(platform, Timeframe.parse(timeframe), symbols=symbols)
    except BadInputError:
        return {}
    return {s.symbol: sparkline(s.close[-SPARK_BARS:].tolist()) for s in bars}


@router.get("/scans")
def scans_page(request: Request, user: WebUserDep, platform: PlatformDep) -> Response:
    store_builtins_once(platform)
    tenant = user.principal.tenant_id
    with platform.database.read() as uow:
        history = uow.scans.recent(tenant, 50)
        names = sorted(s.name for s in list_strategies(uow, tenant))
    return render(request, "scans.html", {"user": user, "active": "scans",
                                          "history": history, "strategies": names})


@router.get("/scans/{scan_id}")
def scan_page(request: Request, user: WebUserDep, platform: PlatformDep,
              scan_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    try:
        scan = get_scan(platform, user.principal.tenant_id, scan_id)
    except BadInputError as exc:
        return render(request, "error.html", {"user": user, "active": "scans",
                                              "message": str(exc)}, status_code=404)
    shown = list(scan.results[:SPARK_ROWS])
    lines = sparklines(platform, sorted({r.symbol for r in shown}), scan.timeframe)
    return render(request, "scan.html", {"user": user, "active": "scans", "scan": scan,
                                         "results": scan.results, "lines": lines})
