"""Live signals in the browser: a bar is ingested and its signal appears in the table without
a reload; a cut connection reconnects from the last event id and fills the gap."""

from __future__ import annotations

import time
import uuid
from typing import Any

from signalfactory.services.strategies.catalog import add_strategy
from tests.browser.conftest import Dashboard, csp_violations, open_page, sign_in
from tests.live_stream_client import ALWAYS, write_bars_for
from tests.tcp_proxy import TcpProxy


def _watched_symbol(dashboard: Dashboard, strategy: str) -> str:
    """A new symbol with history, and a strategy of the tenant that signals on every bar."""
    with dashboard.platform.database.write() as uow:
        add_strategy(uow, dashboard.tenant_id, strategy, rule_text=ALWAYS)
    symbol = f"L{uuid.uuid4().hex[:6].upper()}"
    write_bars_for(dashboard.platform, [symbol], days=range(0, 30))
    return symbol


def _rows(page: Any, symbol: str) -> list[str]:
    return list(page.eval_on_selector_all(
        "[data-live-rows] tr", f"rows => rows.filter(r => r.textContent.includes("
        f"'{symbol}')).map(r => r.dataset.id)"))


def test_a_signal_appears_after_a_bar_is_ingested(browser: Any, dashboard: Dashboard) -> None:
    strategy = f"live_{uuid.uuid4().hex[:6]}"
    symbol = _watched_symbol(dashboard, strategy)
    page = open_page(browser, dashboard.base)
    try:
        sign_in(page, dashboard.keys["viewer"], f"/signals?strategy={strategy}")
        page.wait_for_function("() => window.__sfLive && window.__sfLive.state === 'live'")
        before = len(_rows(page, symbol))
        started = time.monotonic()
        write_bars_for(dashboard.platform, [symbol], days=[30])
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-live-rows] tr').length > {before}")
        elapsed = time.monotonic() - started
        rows = _rows(page, symbol)
        assert len(rows) == before + 1, rows
        newest = page.locator("[data-live-rows] tr").first
        assert symbol in newest.inner_text() and "long" in newest.inner_text()
        # the bar time is shown in the browser's zone, UTC on hover
        assert newest.locator("time").get_attribute("title").endswith("UTC")
        assert elapsed < 5, elapsed
        assert csp_violations(page) == []
    finally:
        page.context.close()


def test_a_lost_stream_reconnects_and_fills_the_gap(browser: Any, dashboard: Dashboard) -> None:
    strategy = f"gap_{uuid.uuid4().hex[:6]}"
    symbol = _watched_symbol(dashboard, strategy)
    proxy = TcpProxy("127.0.0.1", dashboard.port).start()
    port = proxy.port
    page = open_page(browser, f"http://127.0.0.1:{port}")
    try:
        sign_in(page, dashboard.keys["viewer"], f"/signals?strategy={strategy}")
        page.wait_for_function("() => window.__sfLive.state === 'live'")
        shown = set(_rows(page, symbol))
        proxy.stop()  # the network drops: the stream is cut mid-way
        page.wait_for_function("() => window.__sfLive.state !== 'live'")
        write_bars_for(dashboard.platform, [symbol], days=[30, 31])  # missed while cut
        time.sleep(0.3)
        proxy = TcpProxy("127.0.0.1", dashboard.port, listen_port=port).start()
        page.wait_for_function("() => window.__sfLive.state === 'live'", timeout=20_000)
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-live-rows] tr').length >= {len(shown) + 2}")
        rows = _rows(page, symbol)
        assert len(rows) == len(set(rows)) == len(shown) + 2, rows  # no gap, no duplicate
        assert page.evaluate("window.__sfLive.connects") >= 2
    finally:
        proxy.stop()
        page.context.close()
