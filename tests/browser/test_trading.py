"""Trading in the browser: a paper account and a bot made through the API appear on the
Trading page; an admin engages the tenant's kill switch through its confirmation step (a
refused engage stores nothing), sees HALTED on the page and through the API, re-arms and then
resumes, and starts and stops the bot; a viewer sees the state but no trading control; the
forms show the API's error at its field and store nothing; a bot's name is shown as text."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.browser.conftest import (
    Dashboard,
    chart_report,
    csp_violations,
    open_page,
    sign_in,
)
from tests.trading_support import seed_bot

SCRIPT = "<script>window.__pwned=1</script>"


def _api(dashboard: Dashboard, method: str, path: str, role: str = "admin",
         **kwargs: Any) -> Any:
    answer = httpx.request(method, f"{dashboard.base}/api/v1{path}",
                           headers={"X-API-Key": dashboard.keys[role]}, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json()


def _tenant_switch(dashboard: Dashboard) -> dict[str, Any] | None:
    status = _api(dashboard, "GET", "/risk/kill-switch", role="viewer")
    return next((s for s in status["switches"] if s["scope"] == "tenant"
                 and s["scope_id"] == dashboard.tenant_id), None)


def _paper_bot(dashboard: Dashboard, name: str) -> dict[str, Any]:
    account = _api(dashboard, "POST", "/accounts", json={
        "name": f"paper-{uuid.uuid4().hex[:6]}", "kind": "paper", "initial_cash": 10_000})
    bot: dict[str, Any] = _api(dashboard, "POST", "/bots", json={
        "name": name, "strategy": "sma_cross", "account_id": account["id"],
        "symbols": [dashboard.sample_symbols[0]], "allocation": 1_000})
    return bot


def test_trading_forms_show_errors_at_their_field_and_store_nothing(signed_in: Any,
                                                                    dashboard: Dashboard
                                                                    ) -> None:
    page = signed_in
    page.goto("/trading")
    page.get_by_text("New paper account").click()
    name = f"form-{uuid.uuid4().hex[:6]}"
    page.fill("#acc-name", name)
    page.fill("#acc-cash", "5000")
    with page.expect_navigation():
        page.get_by_role("button", name="Add paper account").click()
    assert name in page.get_by_test_id("accounts").inner_text()
    bots = len(_api(dashboard, "GET", "/bots")["items"])
    page.get_by_text("New bot").click()
    page.fill("#bot-name", "refused")
    page.fill("#bot-symbols", dashboard.sample_symbols[0])
    page.fill("#bot-allocation", "-5")
    page.get_by_role("button", name="Create bot (stopped)").click()
    error = page.locator("[data-error-for=allocation]")
    error.wait_for(state="visible")
    assert "greater than 0" in error.inner_text()
    assert len(_api(dashboard, "GET", "/bots")["items"]) == bots


def test_an_admin_engages_rearms_and_resumes_the_kill_switch(signed_in: Any,
                                                             dashboard: Dashboard) -> None:
    page = signed_in
    bot = _paper_bot(dashboard, f"desk-{uuid.uuid4().hex[:6]}")
    page.goto("/trading")
    row = page.locator(f"tr[data-bot='{bot['id']}']")
    assert bot["name"] in row.inner_text() and "stopped" in row.inner_text()
    tenant = page.locator(f"tr[data-scope='tenant:{dashboard.tenant_id}']")
    assert tenant.get_by_test_id("switch").inner_text() == "off"

    # Step one only opens the confirmation; an engage without a reason is refused next to
    # its field and stores nothing.
    form = page.locator("#engage-form")
    assert not form.is_visible()
    tenant.get_by_role("button", name="Engage…").click()
    assert form.is_visible() and "tenant" in form.locator("h3").inner_text()
    assert _tenant_switch(dashboard) is None
    form.get_by_role("button", name="Yes, engage the kill switch").click()
    error = form.locator("[data-error-for=reason]")
    error.wait_for(state="visible")
    assert error.inner_text() == "Field required"  # an empty field is left out of the body
    assert page.get_attribute("#ks-reason", "aria-invalid") == "true"
    assert _tenant_switch(dashboard) is None

    page.fill("#ks-reason", "browser test: halt the desk")
    with page.expect_navigation():
        form.get_by_role("button", name="Yes, engage the kill switch").click()
    tenant = page.locator(f"tr[data-scope='tenant:{dashboard.tenant_id}']")
    assert tenant.get_by_test_id("switch").inner_text() == "engaged"
    assert tenant.get_by_test_id("state").inner_text() == "HALTED"
    assert page.locator(f"tr[data-bot='{bot['id']}']").get_by_test_id(
        "bot-state").inner_text() == "HALTED"
    switch = _tenant_switch(dashboard)
    assert switch is not None and switch["engaged"] and not switch["rearmed"]
    assert switch["reason"] == "browser test: halt the desk"
    assert _api(dashboard, "GET", f"/bots/{bot['id']}")["effective_state"] == "halted"
    page.goto("/")
    assert page.get_by_test_id("trading-state").inner_text() == "Kill switch engaged"

    # Re-arm and resume are two separate steps: re-armed still halts trading.
    page.goto("/trading")
    tenant = page.locator(f"tr[data-scope='tenant:{dashboard.tenant_id}']")
    assert tenant.get_by_role("button", name="Resume").count() == 0
    with page.expect_navigation():
        tenant.get_by_role("button", name="Re-arm").click()
    tenant = page.locator(f"tr[data-scope='tenant:{dashboard.tenant_id}']")
    assert tenant.get_by_test_id("switch").inner_text() == "re-armed"
    assert tenant.get_by_test_id("state").inner_text() == "HALTED"
    switch = _tenant_switch(dashboard)
    assert switch is not None and switch["engaged"] and switch["rearmed"]
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        tenant.get_by_role("button", name="Resume").click()
    tenant = page.locator(f"tr[data-scope='tenant:{dashboard.tenant_id}']")
    assert tenant.get_by_test_id("switch").inner_text() == "off"
    assert tenant.get_by_test_id("state").inner_text() == "ACTIVE"
    switch = _tenant_switch(dashboard)
    assert switch is not None and not switch["engaged"]
    assert _api(dashboard, "GET", f"/bots/{bot['id']}")["effective_state"] == "active"

    # A trader's controls: start, then stop (an admin holds the trader role too).
    row = page.locator(f"tr[data-bot='{bot['id']}']")
    with page.expect_navigation():
        row.get_by_role("button", name="Start").click()
    row = page.locator(f"tr[data-bot='{bot['id']}']")
    assert "running" in row.inner_text()
    assert _api(dashboard, "GET", f"/bots/{bot['id']}")["bot"]["status"] == "running"
    with page.expect_navigation():
        row.get_by_role("button", name="Stop").click()
    assert "stopped" in page.locator(f"tr[data-bot='{bot['id']}']").inner_text()
    assert _api(dashboard, "GET", f"/bots/{bot['id']}")["bot"]["status"] == "stopped"
    assert csp_violations(page) == []


def test_a_viewer_sees_no_trading_control_and_names_are_text(browser: Any,
                                                             dashboard: Dashboard) -> None:
    # The API refuses such a name; one stored by other means is still only text on the page.
    refused = httpx.post(f"{dashboard.base}/api/v1/bots", headers={
        "X-API-Key": dashboard.keys["trader"]}, json={"name": SCRIPT})
    assert refused.status_code == 422
    bot = {"id": seed_bot(dashboard.platform, dashboard.tenant_id, name=SCRIPT, hours=24).bot_id}
    page = open_page(browser, dashboard.base)
    try:
        sign_in(page, dashboard.keys["viewer"], "/trading")
        assert page.locator(f"tr[data-bot='{bot['id']}'] td").first.inner_text() == SCRIPT
        page.goto(f"/trading?bot={bot['id']}")  # its chart (the newest bot's is the default)
        assert page.get_by_test_id("chart-bot").inner_text() == SCRIPT
        drawn = chart_report(page, f"chart-bot-{bot['id']}")  # equity and PnL, 24 marks each
        assert (drawn["series"], drawn["points"]) == (2, 48)
        assert page.get_by_test_id("kill-switch").is_visible()  # the state, not the controls
        main = page.locator("main")
        # nothing that changes anything: only the chart's bot picker (a GET form)
        assert main.locator("form:not([method=get]), [data-api], [data-api-action], "
                            "[data-open-form]").count() == 0
        assert set(main.locator("button").all_inner_texts()) <= {"Show"}
        # The API refuses the viewer all the same, with the session and its CSRF token.
        status = page.evaluate("""async () => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const r = await fetch('/api/v1/risk/kill-switch/engage', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
                body: JSON.stringify({reason: 'not mine to pull'})});
            return r.status;
        }""")
        switch = _tenant_switch(dashboard)
        assert status == 403 and (switch is None or not switch["engaged"])
        assert page.evaluate("window.__pwned") is None
        page.context.clear_cookies()
        sign_in(page, dashboard.keys["admin"], "/trading")
        page.locator(f"tr[data-scope='bot:{bot['id']}']").get_by_role(
            "button", name="Engage…").click()
        assert page.locator("#engage-form h3").inner_text() == \
            f"Engage the kill switch on bot {SCRIPT}?"
        assert page.evaluate("window.__pwned") is None and csp_violations(page) == []
    finally:
        page.context.close()
