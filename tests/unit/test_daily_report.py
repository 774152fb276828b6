"""The daily trading report on the in-memory platform: figures, text, page, storage and
delivery through a campaign, once per tenant and day."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pytest

from signalfactory.domain.backtest.metrics import curve_figures
from signalfactory.domain.daily_report import DailyReport, summary_text
from signalfactory.domain.delivery import DeliveryControls, NewEndpoint
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.streaming import NewSubscription
from signalfactory.domain.trading.bots import KillSwitch
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.jobs.execution import claim_next, run_claimed
from signalfactory.services.jobs.registry import submit
from signalfactory.services.platform import Platform
from signalfactory.services.reports import daily
from signalfactory.services.reports.tasks import DAILY_REPORT_KIND
from signalfactory.testing import FixedClock, memory_platform
from tests.trading_support import ALLOCATION, DAY, START, equity_at, seed_bot

NOW = datetime(2026, 3, 4, 0, 10, tzinfo=UTC)


@pytest.fixture
def platform() -> Platform:
    return memory_platform(clock=FixedClock(NOW))


def _tenant(platform: Platform, name: str = "acme") -> int:
    with platform.database.write() as uow:
        return accounts.create_tenant(uow, name).id


def test_figures_are_the_backtests_over_the_marks_up_to_the_end_of_the_day(
        platform: Platform) -> None:
    tenant = _tenant(platform)
    seeded = seed_bot(platform, tenant)
    report = daily.generate(platform, tenant, DAY)
    (bot,) = report.bots
    assert bot.equity == pytest.approx(equity_at(71))
    assert bot.day_pnl == pytest.approx(equity_at(71) - equity_at(47))
    assert bot.total_pnl == pytest.approx(equity_at(71) - ALLOCATION)
    assert (bot.orders_today, bot.open_positions) == (2, 1)
    equity = np.array([equity_at(h) for h in range(seeded.hours)])
    ts = np.array([int((START.timestamp() + 3600 * h) * 1e9) for h in range(seeded.hours)])
    expected = curve_figures(equity, 365.25 * 24, initial_cash=ALLOCATION, ts=ts)
    assert bot.sharpe == pytest.approx(expected.sharpe, rel=1e-12)
    assert bot.sortino == pytest.approx(expected.sortino, rel=1e-12)
    assert bot.var_95 == pytest.approx(expected.var_95, rel=1e-12)
    peak = np.maximum.accumulate(np.concatenate([[ALLOCATION], equity]))
    assert bot.max_drawdown == pytest.approx(
        float(np.max(1 - np.concatenate([[ALLOCATION], equity]) / peak)), rel=1e-12)
    assert len(bot.curve) == 72 and bot.curve[0] == (int(START.timestamp()), equity_at(0))

    earlier = daily.generate(platform, tenant, date(2026, 3, 2)).bots[0]
    assert earlier.equity == pytest.approx(equity_at(47))
    assert earlier.orders_today == 1 and len(earlier.curve) == 48


def test_text_and_page_name_the_day_the_bots_and_an_engaged_kill_switch(
        platform: Platform) -> None:
    tenant = _tenant(platform)
    seed_bot(platform, tenant, "trend")
    seed_bot(platform, tenant, "<script>alert(1)</script>", hours=0)
    with platform.database.write() as uow:
        uow.trading_states.put_kill_switch(KillSwitch(
            scope="tenant", scope_id=tenant, engaged=True, rearmed=False, changed_at=NOW,
            changed_by="cli:ops", reason="drill"))
    report = daily.generate(platform, tenant, DAY)
    text = summary_text(report)
    assert text.splitlines()[0].startswith("Trading report 2026-03-03 (acme): day PnL +")
    assert "KILL SWITCH ENGAGED: tenant" in text
    assert "- trend: day +" in text and "Full report: /api/v1/reports/daily/2026-03-03" in text
    page = daily.render_html(report)
    assert "LightweightCharts.createChart" in page and 'id="equity-' in page
    assert "<script>alert(1)</script>" not in page  # names are escaped
    assert "Kill switch engaged: tenant" in page and "No equity marks yet." in page
    again = DailyReport.from_json(json.loads(json.dumps(report.to_json())))
    assert daily.render_html(again) == page  # a stored report renders the same page


def test_stored_once_per_day_and_delivered_through_a_campaign(platform: Platform) -> None:
    tenant = _tenant(platform)
    seed_bot(platform, tenant)
    with platform.database.write() as uow:
        sub = uow.subscriptions.add(NewSubscription(tenant_id=tenant, name="ops", strategies=(),
                                                    symbols=(), min_score=None))
        endpoint = uow.endpoints.add(NewEndpoint(tenant_id=tenant, name="hook", kind="webhook",
                                                 target_sealed=b"sealed",
                                                 target_hint="https://…"))
        uow.endpoints.set_controls(sub.id, DeliveryControls(endpoint_ids=(endpoint.id,)))
    job = submit(platform, DAILY_REPORT_KIND, {}, tenant_id=1)
    for _ in range(10):  # the report job, then the campaign's fan-out and chunk jobs
        claimed = claim_next(platform, "unit")
        if claimed is None:
            break
        assert run_claimed(platform, claimed, "unit").status == "succeeded"
    with platform.database.read() as uow:
        finished = uow.jobs.get(job.id)
        stored = uow.daily_reports.get(tenant, DAY)
        rows = uow.deliveries.find(tenant)
    assert finished is not None
    assert finished.result == {"day": "2026-03-03", "made": 1, "existing": 0}
    assert stored is not None and stored.campaign_id is not None
    assert [r.endpoint_id for r in rows] == [endpoint.id]
    assert rows[0].payload["body"] == stored.text
    assert rows[0].payload["subject"] == "Trading report 2026-03-03"

    again, made = daily.store_and_deliver(platform, tenant, DAY)
    assert not made and again.id == stored.id
    with platform.database.read() as uow:
        assert len(uow.campaigns.for_tenant(tenant)) == 1
    assert daily.stored(platform, tenant, DAY).bots[0].name == "trend"


def test_bad_days_and_missing_reports(platform: Platform) -> None:
    assert daily.parse_day(None, NOW) == date(2026, 3, 3)
    with pytest.raises(BadInputError):
        daily.parse_day("2026-13-01", NOW)
    with pytest.raises(NotFoundError):
        daily.stored(platform, 1, DAY)
