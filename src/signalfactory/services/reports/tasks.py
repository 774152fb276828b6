"""Job kind of the daily trading reports (scheduled by ``trading_report_cron``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import TaskContext, register_task

DAILY_REPORT_KIND = "trading.daily_report"


class DailyReportPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day: str | None = Field(default=None, description="YYYY-MM-DD; default: yesterday (UTC)")


def daily_report_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.services.reports.daily import parse_day, run_daily

    args = parse_payload(DailyReportPayload, payload, DAILY_REPORT_KIND)
    day = parse_day(args.day, ctx.platform.clock.now())
    counts = run_daily(ctx.platform, day)
    return {"day": day.isoformat(), **counts}


register_task(DAILY_REPORT_KIND, daily_report_task, max_attempts=3)
