"""The daily trading report: per-bot equity and PnL of one UTC day, with Sharpe, Sortino, max
drawdown and VaR 95 by the backtests' definitions (the trading core's
``domain.trading.portfolio.figures``, over each bot's equity marks up to the end of the day,
annualised by the marks' spacing).

Delivery: a stored report goes out as a campaign of the tenant (``services.delivery``), so
every endpoint a subscription of the tenant links (webhook, Telegram, Slack, e-mail...) gets
the short text, at bulk priority, with the delivery pipeline's retries and dead letters. The
report, its campaign and the campaign's fan-out job are written in ONE transaction and a
tenant has one report per day, so the scheduled job can be re-run (after a crash, by hand)
without sending anything twice. The full page is rendered from the stored report when it is
opened (``GET /api/v1/reports/daily/{day}``, ``signalfactory report daily``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from signalfactory.adapters.reports.trading_html import render_daily_report
from signalfactory.domain.daily_report import (
    MAX_POINTS,
    BotDay,
    DailyReport,
    StoredReport,
    summary_text,
)
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.bots import BOT, GLOBAL, TENANT, Bot
from signalfactory.domain.trading.portfolio import EquityCurve, figures
from signalfactory.domain.trading.records import GLOBAL_SCOPE_ID
from signalfactory.observability.logging import get_logger
from signalfactory.services.delivery.notices import queue_notice
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.reports")

_SECONDS_PER_YEAR = 365.25 * 86_400  # crypto markets trade every day of the year
_MARK_PAGE = 100_000


def report_link(day: date) -> str:
    return f"/api/v1/reports/daily/{day.isoformat()}"


def parse_day(text: str | None, now: datetime) -> date:
    """``YYYY-MM-DD``; None: yesterday (UTC), the last whole day."""
    if text is None:
        return (now.astimezone(UTC) - timedelta(days=1)).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadInputError(f"day {text!r} is not a date; use YYYY-MM-DD",
                            rule="day") from None


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _curve(ts: Sequence[datetime], equity: np.ndarray) -> tuple[tuple[int, float], ...]:
    """(epoch second, equity), the last mark of each second, thinned to MAX_POINTS."""
    by_second: dict[int, float] = {}
    for when, value in zip(ts, equity, strict=True):
        by_second[int(when.timestamp())] = float(value)
    points = sorted(by_second.items())
    if len(points) > MAX_POINTS:
        step = math.ceil(len(points) / MAX_POINTS)
        points = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
    return tuple(points)


def bot_day(uow: UnitOfWork, bot: Bot, day: date) -> BotDay:
    """One bot's line of the report of ``day``."""
    start, end = _bounds(day)
    marks = [m for m in uow.bot_marks.series(bot.id, until=end) if m.ts < end]
    before = [m for m in marks if m.ts < start]
    last = marks[-1] if marks else None
    equity = np.array([m.equity for m in marks], dtype=np.float64)
    sharpe = sortino = max_dd = var_95 = None
    if len(marks) >= 2:
        ts_ns = np.array([datetime_to_ns(m.ts) for m in marks], dtype=np.int64)
        spacing = float(np.median(np.diff(ts_ns))) / 1e9
        initial = bot.allocation if bot.allocation > 0 else float(equity[0])
        if spacing > 0 and initial > 0:
            shown = figures(EquityCurve(ts_ns, equity, initial), _SECONDS_PER_YEAR / spacing)
            sharpe, sortino = _finite(shown.sharpe), _finite(shown.sortino)
            max_dd, var_95 = _finite(shown.max_drawdown), _finite(shown.var_95)
    opening = before[-1].equity if before else bot.allocation
    in_day = last is not None and last.ts >= start
    return BotDay(
        bot_id=bot.id, name=bot.name, status=bot.status, state=bot.state,
        symbols=tuple(bot.symbols), allocation=bot.allocation,
        equity=last.equity if last else None,
        day_pnl=(last.equity - opening) if last and in_day else (0.0 if last else None),
        total_pnl=(last.equity - bot.allocation) if last else None,
        realised_pnl=last.realised_pnl if last else None,
        unrealised_pnl=last.unrealised_pnl if last else None,
        exposure=last.exposure if last else None,
        sharpe=sharpe, sortino=sortino, max_drawdown=max_dd, var_95=var_95,
        orders_today=uow.orders.count_since(bot.id, start) - uow.orders.count_since(bot.id, end),
        open_positions=len(uow.positions.find(bot_id=bot.id, open_only=True)),
        curve=_curve([m.ts for m in marks], equity))


def _tenant_name(uow: UnitOfWork, tenant_id: int) -> str:
    found = next((t.name for t in uow.accounts.list_tenants() if t.id == tenant_id), None)
    if found is None:
        raise NotFoundError(f"tenant {tenant_id} does not exist")
    return found


def build_report(uow: UnitOfWork, tenant_id: int, day: date, now: datetime) -> DailyReport:
    bots = uow.bots.find(tenant_id=tenant_id)
    scopes = [(GLOBAL, GLOBAL_SCOPE_ID), (TENANT, tenant_id), *((BOT, b.id) for b in bots)]
    names = {b.id: b.name for b in bots}
    engaged = [
        "global" if s.scope == GLOBAL else "tenant" if s.scope == TENANT
        else f"bot {names.get(s.scope_id, s.scope_id)}"
        for s in uow.trading_states.kill_switches(scopes) if s.engaged]
    return DailyReport(tenant_id=tenant_id, tenant_name=_tenant_name(uow, tenant_id), day=day,
                       generated_at=now.astimezone(UTC),
                       bots=tuple(bot_day(uow, b, day) for b in bots),
                       kill_switches=tuple(engaged), link=report_link(day))


def render_html(report: DailyReport) -> str:
    return render_daily_report(report)


def generate(platform: Platform, tenant_id: int, day: date) -> DailyReport:
    """The report of ``day`` computed now from the stored marks (nothing is written)."""
    with platform.database.read(primary=True) as uow:
        return build_report(uow, tenant_id, day, platform.clock.now())


def stored(platform: Platform, tenant_id: int, day: date) -> DailyReport:
    """The report stored for ``day`` (NotFoundError when none was made)."""
    with platform.database.read() as uow:
        found = uow.daily_reports.get(tenant_id, day)
    if found is None:
        raise NotFoundError(f"no daily report for {day.isoformat()}; reports are made for "
                            "each day after it ends (or `signalfactory report daily --store`)")
    return DailyReport.from_json(found.report)


def store_and_deliver(platform: Platform, tenant_id: int, day: date) -> tuple[StoredReport,
                                                                               bool]:
    """Compute, store and send the tenant's report of ``day`` in one transaction; returns
    the stored report and whether it was made now (False: it existed, nothing was sent)."""
    with platform.database.write() as uow:
        existing = uow.daily_reports.get(tenant_id, day)
        if existing is not None:
            return existing, False
        report = build_report(uow, tenant_id, day, platform.clock.now())
        text = summary_text(report)
        body = report.to_json()
        report_id = uow.daily_reports.add(tenant_id, day, body, text)
        if report_id is None:  # pragma: no cover - the write lock makes this unreachable
            raise BadInputError(f"a report for {day.isoformat()} exists")
        campaign = queue_notice(platform, uow, tenant_id, f"Trading report {day.isoformat()}",
                                text, dedupe_key=f"daily-report:{report_id}")
        uow.daily_reports.set_campaign(report_id, campaign.id)
        made = StoredReport(report_id, tenant_id, day, body, text, campaign.id)
    log.info("daily report stored and sent", tenant_id=tenant_id, day=day.isoformat(),
             bots=len(report.bots), campaign_id=campaign.id)
    return made, True


def tenants_with_bots(platform: Platform) -> list[int]:
    with platform.database.read(primary=True) as uow:
        return sorted({b.tenant_id for b in uow.bots.find()})


def run_daily(platform: Platform, day: date) -> dict[str, int]:
    """The scheduled job's work: every tenant with a bot gets its report of ``day``, each in
    its own transaction (a re-run finishes the tenants a crash left out)."""
    made = existing = 0
    for tenant_id in tenants_with_bots(platform):
        _, new = store_and_deliver(platform, tenant_id, day)
        made += new
        existing += not new
    return {"made": made, "existing": existing}
