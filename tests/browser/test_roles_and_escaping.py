"""Keys and roles in the browser: an admin creates a key (shown once) and revokes it; a viewer
sees no control the API would refuse (and the API refuses it anyway); user text stored with
<script> in it is shown as text and never runs."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from signalfactory.services.strategies.catalog import add_strategy
from tests.browser.conftest import Dashboard, csp_violations, open_page, sign_in
from tests.live_stream_client import ALWAYS, write_bars_for

SCRIPT = "<script>window.__pwned=1</script>"


def test_an_admin_creates_a_key_once_and_revokes_it(signed_in: Any,
                                                    dashboard: Dashboard) -> None:
    page = signed_in
    page.goto("/admin")
    page.select_option("#key-role", "viewer")
    page.fill("#key-name", "ci key")
    page.click("text=Create key")
    shown = page.locator("#new-key")
    shown.wait_for(state="visible")
    secret = shown.locator("[data-field=key]").inner_text()
    prefix = shown.locator("[data-field=prefix]").inner_text()
    assert secret.startswith(prefix) and secret.startswith("sf_live_")
    me = f"{dashboard.base}/api/v1/me"
    assert httpx.get(me, headers={"X-API-Key": secret}).json()["role"] == "viewer"
    page.goto("/admin")  # the key is never shown again, only its prefix
    assert secret not in page.content() and prefix in page.content()
    row = page.locator("tr", has_text=prefix)
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        row.get_by_role("button", name="Revoke").click()
    page.locator("tr", has_text=prefix).locator("text=revoked").wait_for()
    assert httpx.get(me, headers={"X-API-Key": secret}).status_code == 401
    assert csp_violations(page) == []


def test_a_viewer_sees_no_control_that_would_be_refused(browser: Any,
                                                        dashboard: Dashboard) -> None:
    page = open_page(browser, dashboard.base)
    try:
        sign_in(page, dashboard.keys["viewer"])
        assert page.locator("nav a", has_text="Admin").count() == 0
        forbidden = {"/strategies": "New rule strategy", "/backtests": "New backtest",
                     "/strategies/sma_cross": "Save as a new version",
                     "/scans": "Run scan", "/deliveries": "Add endpoint",
                     "/backtests/new": "Run backtest", "/strategies/new": "Save strategy"}
        for path, control in forbidden.items():
            page.goto(path)
            assert page.locator(f"text={control}").count() == 0, (path, control)
        page.goto("/jobs")
        assert page.locator("[data-api-action]").count() == 0
        assert page.goto("/admin").status == 403  # type: ignore[union-attr]
        # The API refuses it all the same, with the session and its CSRF token.
        status = page.evaluate("""async () => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const r = await fetch('/api/v1/keys', {method: 'POST', headers: {
                'Content-Type': 'application/json', 'X-CSRF-Token': token},
                body: JSON.stringify({role: 'admin'})});
            return r.status;
        }""")
        assert status == 403
    finally:
        page.context.close()


def test_stored_script_in_user_text_is_inert(browser: Any, dashboard: Dashboard,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Symbols are checked on the way in (`bad-symbol` refuses '<'); a symbol stored before
    # that rule, or written to the database by hand, must still be inert on every page.
    monkeypatch.setattr("signalfactory.domain.symbols.symbol_problem", lambda symbol: None)
    name = f"inert_{uuid.uuid4().hex[:6]}"
    with dashboard.platform.database.write() as uow:
        add_strategy(uow, dashboard.tenant_id, name, rule_text=ALWAYS, description=SCRIPT)
    write_bars_for(dashboard.platform, [SCRIPT], days=range(0, 25))  # a symbol, with signals
    page = open_page(browser, dashboard.base)
    try:
        sign_in(page, dashboard.keys["admin"])
        page.goto("/admin")
        page.fill("#key-name", SCRIPT)
        page.click("text=Create key")
        page.locator("#new-key").wait_for(state="visible")
        for path in ("/strategies", f"/strategies/{name}", f"/signals?strategy={name}",
                     "/admin"):
            page.goto(path)
            assert SCRIPT in page.locator("main").inner_text(), path
            assert page.evaluate("window.__pwned") is None, path
        # signals that arrive live are put on the page as text too
        page.goto(f"/signals?strategy={name}")
        page.wait_for_function("() => window.__sfLive.state === 'live'")
        write_bars_for(dashboard.platform, [SCRIPT], days=[25])
        page.wait_for_function("() => window.__sfLive.received >= 1")
        assert page.locator("[data-live-rows] tr").first.locator("a").inner_text() == SCRIPT
        page.goto("/symbols/" + quote(SCRIPT, safe=""))
        assert page.locator("h1").inner_text().startswith(SCRIPT)
        assert page.evaluate("window.__pwned") is None
        assert csp_violations(page) == []
    finally:
        page.context.close()
