"""Signing in and out in a real browser: the key becomes an HTTP-only session cookie, the
one-time link works once, a bad key is refused next to its field."""

from __future__ import annotations

from typing import Any

import httpx

from signalfactory.services.accounts.web_sessions import issue_sign_in_link
from tests.browser.conftest import Dashboard, csp_violations, open_page, sign_in


def test_sign_in_keeps_only_an_http_only_session_and_signs_out(browser: Any,
                                                               dashboard: Dashboard) -> None:
    page = open_page(browser, dashboard.base)
    try:
        page.goto("/jobs")  # not signed in: sent to the sign-in page, and back after it
        assert "/signin?next=%2Fjobs" in page.url
        page.fill("#key", "sf_live_not-a-key")
        page.click("button[type=submit]")
        error = page.locator("#key-error")
        assert "not an API key" in error.inner_text()
        assert page.get_attribute("#key", "aria-invalid") == "true"
        page.fill("#key", dashboard.keys["trader"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{dashboard.base}/jobs")
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["sf_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        # the key is nowhere in the browser: not in cookies, storage, or the page
        assert all(dashboard.keys["trader"] not in c["value"] for c in cookies.values())
        assert page.evaluate("document.cookie") == ""  # HTTP-only: scripts see no cookie
        assert dashboard.keys["trader"] not in page.content()
        storage = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
        assert "sf_live_" not in storage
        page.click("text=Sign out")
        page.wait_for_selector("text=You are signed out.")
        page.goto("/jobs")
        assert "/signin" in page.url
        assert csp_violations(page) == []
    finally:
        page.context.close()


def test_one_time_link_signs_in_once(browser: Any, dashboard: Dashboard) -> None:
    token = issue_sign_in_link(dashboard.platform, dashboard.tenant_name, "viewer")
    page = open_page(browser, dashboard.base)
    try:
        page.goto(f"/signin/link/{token}")
        page.wait_for_url(f"{dashboard.base}/")
        assert page.locator("[data-role]").inner_text() == "viewer"
        other = open_page(browser, dashboard.base)
        try:
            other.goto(f"/signin/link/{token}")
            assert "used already" in other.locator("#key-error").inner_text()
        finally:
            other.context.close()
        # the session works against the JSON API too (same cookie), and nothing else does
        cookie = {c["name"]: c["value"] for c in page.context.cookies()}["sf_session"]
        me = httpx.get(f"{dashboard.base}/api/v1/me", cookies={"sf_session": cookie})
        assert me.status_code == 200 and me.json()["role"] == "viewer"
    finally:
        page.context.close()


def test_session_works_only_with_the_csrf_token_for_writes(browser: Any,
                                                         dashboard: Dashboard) -> None:
    page = open_page(browser, dashboard.base)
    try:
        sign_in(page, dashboard.keys["trader"])
        statuses = page.evaluate("""async () => {
            const body = JSON.stringify({rule: 'entry: close > 0'});
            const bare = await fetch('/api/v1/strategies/validate', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body});
            const token = document.querySelector('meta[name=csrf-token]').content;
            const signed = await fetch('/api/v1/strategies/validate', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token}, body});
            return [bare.status, signed.status];
        }""")
        assert statuses == [403, 200]
    finally:
        page.context.close()
