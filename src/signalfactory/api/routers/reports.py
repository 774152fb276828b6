"""Daily trading reports over HTTP: the days stored, and one day's page (HTML with charts),
text or JSON. Any role of the tenant may read its own reports."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from signalfactory.api.auth import PrincipalDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem
from signalfactory.domain.daily_report import summary_text
from signalfactory.services.reports import daily

router = APIRouter(prefix="/api/v1", tags=["reports"], responses=AUTH_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No report stored for that day"}}


class ReportDays(BaseModel):
    days: list[date]


@router.get("/reports/daily", response_model=ReportDays,
            summary="Days with a stored daily trading report, newest first")
def list_daily(principal: PrincipalDep, platform: PlatformDep,
               limit: int = Query(100, ge=1, le=1000)) -> ReportDays:
    with platform.database.read() as uow:
        return ReportDays(days=uow.daily_reports.days(principal.tenant_id, limit))


@router.get("/reports/daily/{day}", responses={
                **NOT_FOUND, 200: {"content": {"text/html": {}, "text/plain": {},
                                               "application/json": {}},
                                   "description": "The report (format: html, text or json)"}},
            summary="One day's stored trading report", response_class=HTMLResponse)
def get_daily(principal: PrincipalDep, platform: PlatformDep,
              day: date = Path(examples=["2026-03-03"]),
              fmt: Literal["html", "text", "json"] = Query("html", alias="format")) -> Response:
    report = daily.stored(platform, principal.tenant_id, day)
    if fmt == "json":
        return JSONResponse(report.to_json())
    if fmt == "text":
        return PlainTextResponse(summary_text(report))
    return HTMLResponse(daily.render_html(report))
