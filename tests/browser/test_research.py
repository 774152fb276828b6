"""The strategy editor and backtests in the browser: a broken rule shows where it breaks, a
valid one previews its signals on a chart, a backtest is submitted, watched and read."""

from __future__ import annotations

import uuid
from typing import Any

from signalfactory.services.jobs import registry as jobs
from signalfactory.services.strategies.catalog import list_strategies
from tests.browser.conftest import Dashboard, chart_report, csp_violations


def _own_strategies(dashboard: Dashboard) -> list[str]:
    with dashboard.platform.database.read() as uow:
        return sorted(s.name for s in list_strategies(uow, dashboard.tenant_id)
                      if not s.builtin)


def test_a_broken_rule_shows_its_position_and_nothing_is_stored(signed_in: Any,
                                                                  dashboard: Dashboard) -> None:
    page = signed_in
    page.goto("/strategies/new")
    page.wait_for_function("() => window.__sfEditor.valid === true")  # the example is valid
    page.fill("#rule", "entry: close > sma(close, 20) and\nexit: close < ")
    page.wait_for_function("() => window.__sfEditor.valid === false")
    status = page.locator("[data-rule-status]").inner_text()
    assert status.startswith("Line 1, column 34:"), status
    assert page.evaluate("window.__sfEditor.position") == 33
    caret = page.locator("[data-rule-where]")
    assert caret.is_visible() and caret.inner_text().endswith("^")
    assert page.get_attribute("#rule", "aria-invalid") == "true"
    before = _own_strategies(dashboard)
    name = f"broken_{uuid.uuid4().hex[:6]}"
    page.fill("#name", name)
    page.click("text=Save strategy")
    error = page.locator("[data-error-for=rule]")
    error.wait_for(state="visible")
    assert "position" in error.inner_text()
    assert _own_strategies(dashboard) == before  # the API refused it: nothing stored
    # A name the API refuses: its error next to the name field, the text shown as text.
    page.fill("#rule", "entry: crosses_above(sma(close, 5), sma(close, 20))\n"
                       "exit: crosses_below(sma(close, 5), sma(close, 20))")
    page.fill("#name", "<script>window.__pwned=1</script>")
    page.click("text=Save strategy")
    name_error = page.locator("[data-error-for=name]")
    name_error.wait_for(state="visible")
    assert "<script>" in name_error.inner_text()
    assert page.evaluate("window.__pwned") is None
    assert _own_strategies(dashboard) == before
    # A valid rule previews its signals on a symbol, drawn with markers.
    page.fill("#preview-symbol", dashboard.sample_symbols[0])
    page.click("[data-preview-run]")
    report = chart_report(page, "chart-preview")
    assert report["bars"] > 100 and report["series"] == 1 and report["markers"] > 0
    page.fill("#name", name)
    page.click("text=Save strategy")
    page.wait_for_url(f"**/strategies/{name}")
    assert name in _own_strategies(dashboard)
    assert csp_violations(page) == []


def test_a_backtest_is_submitted_watched_and_read(signed_in: Any, dashboard: Dashboard) -> None:
    page = signed_in
    symbol = dashboard.sample_symbols[1]
    count = len(jobs.list_jobs(dashboard.platform, tenant_id=dashboard.tenant_id,
                               kind="backtest", limit=1000))
    page.goto("/backtests/new?strategy=sma_cross")
    page.fill("#symbols", symbol)
    page.fill("#fees", "0.5")  # the API allows < 0.1: refused next to the field
    page.click("text=Run backtest")
    fees_error = page.locator("[data-error-for=fees]")
    fees_error.wait_for(state="visible")
    assert "0.1" in fees_error.inner_text()
    assert len(jobs.list_jobs(dashboard.platform, tenant_id=dashboard.tenant_id,
                              kind="backtest", limit=1000)) == count
    page.fill("#fees", "0.001")
    page.fill("#size", "all or nothing")  # a domain error names its field too
    page.click("text=Run backtest")
    size_error = page.locator("[data-error-for=size]")
    size_error.wait_for(state="visible")
    assert "--size" in size_error.inner_text()
    page.fill("#size", "0.5")
    page.click("text=Run backtest")
    page.wait_for_url("**/jobs/*")
    assert page.locator("progress").count() >= 1
    page.locator("[data-result-link]").wait_for(timeout=60_000)
    assert page.locator("[data-job-status]").inner_text() == "succeeded"
    page.click("[data-result-link]")
    page.wait_for_url("**/backtests/*")
    equity = chart_report(page, "chart-equity")
    drawdown = chart_report(page, "chart-drawdown")
    assert equity["series"] == 2 and equity["points"] > 200  # equity and buy-and-hold
    assert drawdown["series"] == 1 and drawdown["points"] > 100
    assert "sharpe" in page.locator(".metrics").inner_text()
    assert page.locator("table tbody tr").count() >= 1
    first = page.url.rsplit("/", 1)[1]
    # compare it with a second one, side by side
    page.goto("/backtests/new?strategy=rsi_mean_reversion")
    page.fill("#symbols", symbol)
    page.click("text=Run backtest")
    page.locator("[data-result-link]").wait_for(timeout=60_000)
    page.click("[data-result-link]")
    page.wait_for_url("**/backtests/*")
    second = page.url.rsplit("/", 1)[1]
    page.goto(f"/backtests/compare?a={first}&b={second}")
    compare = chart_report(page, "chart-compare")
    assert compare["series"] == 2
    assert page.locator("table.compare thead th").count() == 3
    assert csp_violations(page) == []


def test_a_scan_runs_from_its_form_and_ranks_with_sparklines(signed_in: Any,
                                                             dashboard: Dashboard) -> None:
    page = signed_in
    page.goto("/scans")
    page.fill("#scan-top", "100000")  # the API allows at most 10,000: the error at the field
    page.click("text=Run scan")
    page.locator("[data-error-for=top]").wait_for(state="visible")
    page.fill("#scan-top", "5")
    page.select_option("#scan-strategy", "sma_cross")
    page.click("text=Run scan")
    page.wait_for_url("**/scans/*")
    assert "Scan #" in page.locator("h1").inner_text()
    rows = page.locator("table tbody tr")
    if "Nothing matched" not in rows.first.inner_text():
        assert rows.count() <= 5
        assert page.locator("svg.spark polyline").count() == rows.count()
    page.goto("/scans")
    assert page.locator("table tbody tr").count() >= 1


def test_a_cancelled_job_is_retried_from_the_jobs_page(signed_in: Any,
                                                       dashboard: Dashboard) -> None:
    platform = dashboard.platform
    with platform.database.write() as uow:  # cancelled in the transaction that made it
        job = jobs.submit(platform, "prune_jobs", {}, tenant_id=dashboard.tenant_id, uow=uow)
        uow.jobs.cancel(job.id, dashboard.tenant_id, platform.clock.now())
    page = signed_in
    page.goto("/jobs?status=cancelled")
    row = page.locator(f"tr[data-job='{job.id}']")
    assert row.get_by_role("button", name="Cancel").count() == 0
    with page.expect_navigation():  # the page reloads once the API answered
        row.get_by_role("button", name="Retry").click()
    page.goto(f"/jobs/{job.id}")
    page.locator("[data-job-status]", has_text="succeeded").wait_for(timeout=30_000)
    assert jobs.get_job(platform, job.id).attempts >= 1
