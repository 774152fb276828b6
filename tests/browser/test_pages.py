"""Every page at phone and desktop width: screenshots for people to look at
(build/screenshots/), no serious or critical axe-core finding, no Content-Security-Policy
violation, charts that report what they drew, and keyboard navigation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from signalfactory.services.scans.scan import ScanRequest, run_scan
from signalfactory.services.signals.evaluation import run_all
from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    Dashboard,
    axe_violations,
    chart_report,
    csp_violations,
    open_page,
    screenshot,
    sign_in,
)
from tests.trading_support import seed_bot


def _backtest(dashboard: Dashboard, strategy: str, symbol: str) -> str:
    auth = {"X-API-Key": dashboard.keys["trader"]}
    job = httpx.post(f"{dashboard.base}/api/v1/backtests", headers=auth,
                     json={"strategy": strategy, "symbols": [symbol]}).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = httpx.get(f"{dashboard.base}/api/v1/jobs/{job['id']}", headers=auth).json()
        if state["status"] == "succeeded":
            return str(state["result"]["backtest_id"])
        assert state["status"] in ("queued", "running"), state
        time.sleep(0.2)
    raise AssertionError("the backtest did not finish in 60 s")


@pytest.fixture(scope="module")
def pages(dashboard: Dashboard) -> dict[str, str]:
    symbol = dashboard.sample_symbols[2]
    scan = run_scan(dashboard.platform, ScanRequest(tenant_id=dashboard.tenant_id,
                                                    strategy="sma_cross", top=10))
    first = _backtest(dashboard, "sma_cross", symbol)
    second = _backtest(dashboard, "macd_trend", symbol)
    auth = {"X-API-Key": dashboard.keys["admin"]}
    jobs = httpx.get(f"{dashboard.base}/api/v1/jobs", headers=auth).json()["items"]
    endpoint = httpx.post(f"{dashboard.base}/api/v1/endpoints", headers=auth, json={
        "name": "trading desk", "kind": "email",
        "target": "smtp://mail.example.com?from=x@example.com&to=a@example.com"})
    assert endpoint.status_code == 201, endpoint.text
    sent = httpx.post(f"{dashboard.base}/api/v1/endpoints/{endpoint.json()['id']}/test",
                      headers=auth).json()
    seed_bot(dashboard.platform, dashboard.tenant_id, name="trend")  # marks, orders, a position
    return {
        "sign-in": "/signin", "overview": "/", "signals": "/signals",
        "symbol": f"/symbols/{symbol}", "scans": "/scans", "scan": f"/scans/{scan.id}",
        "strategies": "/strategies", "strategy": "/strategies/sma_cross",
        "strategy-new": "/strategies/new", "backtests": "/backtests",
        "backtest-new": "/backtests/new", "backtest": f"/backtests/{first}",
        "backtest-compare": f"/backtests/compare?a={first}&b={second}", "jobs": "/jobs",
        "job": f"/jobs/{jobs[0]['id']}", "deliveries": "/deliveries",
        "delivery": f"/deliveries/{sent['delivery_id']}", "trading": "/trading",
        "admin": "/admin",
    }


@pytest.fixture(params=["desktop", "phone"])
def page(request: pytest.FixtureRequest, browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    viewport = DESKTOP if request.param == "desktop" else PHONE
    # desktop in the light theme, phone in the dark one: both themes are looked at
    opened = open_page(browser, dashboard.base, viewport,
                       color_scheme="light" if request.param == "desktop" else "dark")
    opened.width_name = request.param
    try:
        yield opened
    finally:
        opened.context.close()


def test_every_page_renders_accessibly_within_its_policy(page: Any, dashboard: Dashboard,
                                                         pages: dict[str, str]) -> None:
    problems: dict[str, Any] = {}
    for name, path in pages.items():
        if name == "sign-in":
            page.goto(path)
        elif "sf_session" not in {c["name"] for c in page.context.cookies()}:
            sign_in(page, dashboard.keys["admin"], path)
        else:
            page.goto(path)
        page.wait_for_load_state("load")
        if page.locator("[data-chart]").count():
            for chart in page.locator("[data-chart]").all():
                chart_report(page, chart.get_attribute("id"))
        screenshot(page, f"{name}-{page.width_name}")
        found = axe_violations(page)
        if found:
            problems[f"{name} axe"] = found
        violations = csp_violations(page)
        if violations:
            problems[f"{name} csp"] = violations
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 2:  # tables scroll inside their frame; the page itself never does
            problems[f"{name} overflow"] = page.evaluate("""() => [...document.querySelectorAll(
                'body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 2)
                .slice(0, 4).map(e => e.tagName + '.' + e.className + ' ' +
                Math.round(e.getBoundingClientRect().right))""")
    assert problems == {}, json.dumps(problems, indent=1)


def test_the_symbol_chart_reports_candles_overlays_and_markers(signed_in: Any,
                                                               dashboard: Dashboard) -> None:
    symbol = dashboard.sample_symbols[0]
    run_all(dashboard.platform, dashboard.tenant_id, ["sma_cross"], symbols=[symbol])
    signed_in.goto(f"/symbols/{symbol}?overlay=sma(close,%2020)&overlay=ema(close,%2050)")
    report = chart_report(signed_in, "chart-price")
    assert report["bars"] == 300 and report["series"] == 3  # candles and two overlays
    assert report["points"] == (300 - 19) + (300 - 49)  # the warm-up bars have no value
    markers = signed_in.locator("table tbody tr").count()
    assert report["markers"] == min(markers, 1000) > 0
    signed_in.goto(f"/symbols/{symbol}?overlay=sma(close,")
    error = signed_in.locator("p.field-error")
    assert "overlay 'sma(close,'" in error.inner_text() and "position" in error.inner_text()


def test_the_menu_works_from_the_keyboard_on_a_phone(browser: Any, dashboard: Dashboard) -> None:
    page = open_page(browser, dashboard.base, PHONE)
    try:
        sign_in(page, dashboard.keys["admin"])
        assert not page.locator("#nav").is_visible()
        page.keyboard.press("Tab")  # the skip link comes first
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Menu"
        page.keyboard.press("Enter")
        assert page.locator("#nav").is_visible()
        assert page.get_attribute(".menu-toggle", "aria-expanded") == "true"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Overview"
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_url("**/signals")
    finally:
        page.context.close()
