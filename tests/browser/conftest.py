"""The dashboard in a real browser: Playwright for Python driving Debian's Chromium (launched
by its executable path; no browser is downloaded), against the API process served by uvicorn
in a thread on a free loopback port, on SQLite, with the embedded job runner.

One server and one browser per test session (per xdist worker); each test opens its own
browser context (its own cookies) and signs in through the sign-in form.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import chromium_or_skip

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
AXE_JS = Path(__file__).with_name("fixtures") / "axe.min.js"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# Collects Content-Security-Policy violations from the first moment of every page (added by
# the browser's devtools protocol, which the policy does not govern).
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' at '
    + e.sourceFile + ':' + e.lineNumber + ' ' + (e.sample || ''));
});
"""


@dataclass
class Dashboard:
    platform: Any
    base: str
    port: int
    tenant_id: int
    tenant_name: str
    keys: dict[str, str]
    sample_symbols: list[str]
    extras: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory, chromium_path: str
              ) -> Iterator[Dashboard]:
    from signalfactory.api import create_app
    from signalfactory.bootstrap import build_platform
    from signalfactory.services.accounts import tenants as accounts
    from signalfactory.services.marketdata.sample import store_sample
    from signalfactory.services.strategies.catalog import store_builtins_once
    from signalfactory.settings import Settings
    from signalfactory.workers.runner import EmbeddedRunner
    from tests.api_harness import DELIVERY_TEST_KEY
    from tests.live_stream_client import ServerThread

    home = tmp_path_factory.mktemp("dashboard")
    platform = build_platform(Settings(home=home / "home",
                                       database_url=f"sqlite:///{home / 'sf.db'}",
                                       bar_store="columnar", delivery_key=DELIVERY_TEST_KEY,
                                       job_poll_seconds=0.2), migrate_db=True)
    store_sample(platform, symbols=6, bars=300, seed=3)
    store_builtins_once(platform)
    with platform.database.write() as uow:
        tenant = accounts.create_tenant(uow, f"web-{uuid.uuid4().hex[:6]}", "enterprise")
        keys = {role: accounts.create_key(uow, tenant.id, role, f"browser {role}",
                                          now=platform.clock.now())[0].secret
                for role in ("viewer", "trader", "admin")}
        symbols = sorted(uow.instruments.symbols().values())
    runner = EmbeddedRunner(platform, concurrency=1, poll_seconds=0.2)
    runner.start()
    try:
        with ServerThread(create_app(platform=platform)) as server:
            yield Dashboard(platform, server.base, server.port, tenant.id, tenant.name, keys,
                            symbols)
    finally:
        runner.stop(grace=2)
        platform.close()


# Package scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, so it must close before a test outside this package calls asyncio.run().
@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "Playwright for Python is not installed (pip install -e '.[dev]')"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Any, base: str, viewport: dict[str, int] | None = None,
              color_scheme: str = "light") -> Any:
    context = browser.new_context(viewport=viewport or DESKTOP, base_url=base,
                                  color_scheme=color_scheme, timezone_id="Europe/Paris")
    context.set_default_timeout(15_000)
    context.add_init_script(CSP_WATCH)
    return context.new_page()


def sign_in(page: Any, key: str, next_path: str = "/") -> None:
    page.goto(f"/signin?next={next_path}" if next_path != "/" else "/signin")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/signin" not in url)


@pytest.fixture
def signed_in(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    """A desktop page signed in as the tenant's admin."""
    page = open_page(browser, dashboard.base)
    sign_in(page, dashboard.keys["admin"])
    try:
        yield page
    finally:
        page.context.close()


def csp_violations(page: Any) -> list[str]:
    return list(page.evaluate("window.__cspViolations || []"))


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core findings of the page as it is now. axe is evaluated
    through the devtools protocol: the page's own CSP keeps refusing inline scripts."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def chart_report(page: Any, chart_id: str) -> dict[str, Any]:
    page.wait_for_selector(f"#{chart_id}[data-drawn=yes]")
    report: dict[str, Any] = page.evaluate(f"window.__sfCharts[{json.dumps(chart_id)}]")
    return report


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
