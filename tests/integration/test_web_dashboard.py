"""The dashboard over HTTP on both backends: sessions (cookie flags, CSRF, expiry, sign-out,
revoked keys, one-time links), the pages each role gets, security headers, and the API
endpoints the pages use (keys, job retry, rule preview)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signalfactory.services.accounts import web_sessions
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.strategies.catalog import store_builtins_once
from tests.api_harness import BACKENDS, ApiHarness, module_platform

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)
PAGES = ("/", "/signals", "/scans", "/strategies", "/strategies/new", "/strategies/sma_cross",
         "/backtests", "/backtests/new", "/backtests/compare", "/trading", "/jobs",
         "/deliveries")


@pytest.fixture(scope="module")
def api(shared_platform: Any) -> Iterator[ApiHarness]:
    shared_platform.bar_subscribers.clear()
    store_sample(shared_platform, symbols=3, bars=120, seed=9)
    store_builtins_once(shared_platform)
    with ApiHarness(shared_platform) as harness:
        yield harness


def _client(api: ApiHarness) -> TestClient:
    return TestClient(api.app, follow_redirects=False)


def sign_in(api: ApiHarness, key: str) -> tuple[TestClient, str]:
    """A new browser-like client signed in with ``key``; returns it and its CSRF token."""
    client = _client(api)
    form = client.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/signin", data={"csrf": csrf.group(1), "key": key, "next": "/jobs"})
    assert answer.status_code == 303 and answer.headers["location"] == "/jobs", answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert key not in cookie
    page = client.get("/jobs")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token is not None
    return client, token.group(1)


def test_pages_need_a_session_and_carry_security_headers(api: ApiHarness) -> None:
    client = _client(api)
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/signin"), path
    assert client.get("/jobs", headers={"HX-Request": "true"}).headers["HX-Redirect"] \
        == "/signin?next=%2Fjobs"
    signed, _ = sign_in(api, api.key(api.tenant("pages", "premium"), "admin"))
    assert signed.get("/signin?next=/jobs").headers["location"] == "/jobs"  # signed in
    for path in (*PAGES, "/admin"):
        page = signed.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text  # no inline script: only <script src=...>


def test_sign_in_refusals_need_no_database_change(api: ApiHarness) -> None:
    client = _client(api)
    form = client.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    # no matching CSRF cookie (another site posting the form): refused
    stranger = _client(api)
    forged = stranger.post("/signin", data={"csrf": csrf.group(1), "key": api.key(
        api.tenant("forge"), "admin")})
    assert forged.status_code == 403 and "sf_session" not in forged.headers.get(
        "set-cookie", "")
    token = csrf.group(1)
    for key, status in (("", 422), ("sf_live_short", 401), (api.key(api.tenant("x")) + "x",
                                                            401)):
        answer = client.post("/signin", data={"csrf": token, "key": key})
        assert answer.status_code == status, key
        assert "sf_session=" not in answer.headers.get("set-cookie", "")
        assert 'id="key-error"' in answer.text
        found = re.search(r'name="csrf" value="([^"]+)"', answer.text)
        assert found is not None and found.group(1) != token  # every form has a new token
        token = found.group(1)
    stuffed = client.post("/signin", content="&".join(f"f{i}=x" for i in range(50)),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert stuffed.status_code == 403  # not one of our forms (no CSRF field): refused
    token = re.search(r'name="csrf" value="([^"]+)"', stuffed.text).group(1)  # type: ignore
    # after signing in, only a local path is followed: never another site
    landed = client.post("/signin", data={"csrf": token, "key": api.key(api.tenant("y")),
                                          "next": "//evil.example/x"})
    assert landed.status_code == 303 and landed.headers["location"] == "/"


def test_the_api_takes_the_session_with_its_csrf_token(api: ApiHarness) -> None:
    tenant = api.tenant("cookie", "premium")
    client, token = sign_in(api, api.key(tenant, "trader"))
    assert client.get("/api/v1/me").json()["role"] == "trader"
    rule = {"rule": "entry: close > 0"}
    refused = client.post("/api/v1/strategies/validate", json=rule)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/csrf")
    wrong = client.post("/api/v1/strategies/validate", json=rule,
                        headers={"X-CSRF-Token": token + "x"})
    assert wrong.status_code == 403
    assert client.post("/api/v1/strategies/validate", json=rule,
                       headers={"X-CSRF-Token": token}).status_code == 200
    hostile = client.post("/api/v1/strategies/validate", json=rule,
                          headers={"X-CSRF-Token": "é".encode()})  # type: ignore[dict-item]
    assert hostile.status_code == 403
    assert client.post("/signout", data={"csrf": "çà"}).status_code == 303  # not a 500
    # roles hold for the session as for the key
    assert client.post("/api/v1/keys", json={"role": "viewer"},
                       headers={"X-CSRF-Token": token}).status_code == 403


def test_sign_out_revocation_and_expiry_end_a_session(api: ApiHarness) -> None:
    tenant = api.tenant("ends", "premium")
    key = api.key(tenant, "viewer")
    client, token = sign_in(api, key)
    cookie = client.cookies["sf_session"]
    # sign-out without the page's CSRF token does nothing
    assert client.post("/signout", data={"csrf": "nope"}).status_code == 303
    assert client.get("/api/v1/me").status_code == 200
    assert client.post("/signout", data={"csrf": token}).status_code == 200
    assert _client(api).get("/api/v1/me", cookies={"sf_session": cookie}).status_code == 401
    # revoking the key ends its sessions at once
    client, _ = sign_in(api, key)
    assert client.get("/api/v1/me").status_code == 200
    with api.platform.database.write() as uow:
        uow.accounts.revoke_key(api.key_id(key), api.platform.clock.now())
    answer = client.get("/api/v1/me")
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]
    assert client.get("/jobs").headers["location"].startswith("/signin")
    # an expired session is refused
    issued = web_sessions.sign_in(api.platform, api.key(tenant, "viewer"))
    later = api.platform.clock.now() + timedelta(hours=13)
    clocked = _ClockShift(api.platform, later)
    with pytest.raises(web_sessions.SessionRefusedError, match="expired"):
        web_sessions.active_session(clocked.platform, issued.token)


class _ClockShift:
    """The same platform seen at another time."""

    def __init__(self, platform: Any, at: Any) -> None:
        import dataclasses

        from signalfactory.testing.clock import FixedClock

        self.platform = dataclasses.replace(platform, clock=FixedClock(at))


def test_a_sign_in_link_works_once(api: ApiHarness) -> None:
    tenant = api.tenant("link", "premium")
    with api.platform.database.read() as uow:
        name = next(t.name for t in uow.accounts.list_tenants() if t.id == tenant)
    token = web_sessions.issue_sign_in_link(api.platform, name, "trader")
    first = _client(api).get(f"/signin/link/{token}")
    assert first.status_code == 303 and "sf_session=" in first.headers["set-cookie"]
    again = _client(api).get(f"/signin/link/{token}")
    assert again.status_code == 401 and "used already" in again.text
    # links reuse one hidden key per tenant and role
    web_sessions.issue_sign_in_link(api.platform, name, "trader")
    with api.platform.database.read() as uow:
        link_keys = [k for k in uow.accounts.list_keys(tenant)
                     if k.name == web_sessions.LINK_KEY_NAME]
    assert len(link_keys) == 1 and link_keys[0].role == "trader"


def test_roles_decide_the_controls_shown(api: ApiHarness) -> None:
    tenant = api.tenant("roles", "premium")
    viewer, _ = sign_in(api, api.key(tenant, "viewer"))
    trader, _ = sign_in(api, api.key(tenant, "trader"))
    assert 'href="/admin"' not in viewer.get("/").text
    assert viewer.get("/admin").status_code == 403
    assert "New backtest" not in viewer.get("/backtests").text
    assert "New backtest" in trader.get("/backtests").text
    assert 'href="/admin"' not in trader.get("/").text


def test_api_keys_are_created_once_by_admins(api: ApiHarness) -> None:
    tenant = api.tenant("keys", "premium")
    admin = api.key(tenant, "admin")
    made = api.client.post("/api/v1/keys", headers=api.auth(admin),
                           json={"role": "viewer", "name": "grafana"})
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    body = made.json()
    assert body["key"].startswith(body["prefix"]) and body["role"] == "viewer"
    assert api.client.get("/api/v1/me", headers=api.auth(body["key"])).status_code == 200
    listed = api.client.get("/api/v1/keys", headers=api.auth(admin)).json()["items"]
    assert body["key"] not in str(listed) and body["id"] in [k["id"] for k in listed]
    for bad in ({"role": "root"}, {"role": "viewer", "name": "x" * 101}, {"name": "x"},
                {"role": "viewer", "extra": 1}):
        assert api.client.post("/api/v1/keys", headers=api.auth(admin),
                               json=bad).status_code == 422, bad
    assert len(api.client.get("/api/v1/keys", headers=api.auth(admin)).json()["items"]) == 2
    # A repeated request (same Idempotency-Key) gets the same key back, kept sealed in between
    # with the delivery key; without one, nothing was kept and the repeat says so.
    headers = api.auth(admin, **{"Idempotency-Key": "make-one-key"})
    once = api.client.post("/api/v1/keys", headers=headers, json={"role": "trader"})
    again = api.client.post("/api/v1/keys", headers=headers, json={"role": "trader"})
    assert once.status_code == again.status_code == 201 and once.json() == again.json()
    with ApiHarness(dataclasses.replace(api.platform, secret_box=None)) as unsealed:
        headers = api.auth(admin, **{"Idempotency-Key": "no-box"})
        assert unsealed.client.post("/api/v1/keys", headers=headers,
                                    json={"role": "trader"}).status_code == 201
        repeat = unsealed.client.post("/api/v1/keys", headers=headers,
                                      json={"role": "trader"})
    assert repeat.status_code == 409 and "shown only once" in repeat.json()["detail"]


def test_jobs_are_retried_by_traders(api: ApiHarness) -> None:
    tenant = api.tenant("retry", "premium")
    trader, viewer = api.key(tenant, "trader"), api.key(tenant, "viewer")
    from signalfactory.services.jobs import registry as jobs

    job = jobs.submit(api.platform, "prune_jobs", {}, tenant_id=tenant)  # no runner here
    url = f"/api/v1/jobs/{job.id}"
    assert api.client.post(f"{url}/retry", headers=api.auth(trader)).status_code == 409
    assert api.client.post(f"{url}/cancel", headers=api.auth(trader)).status_code == 200
    assert api.client.post(f"{url}/retry", headers=api.auth(viewer)).status_code == 403
    retried = api.client.post(f"{url}/retry", headers=api.auth(trader))
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    other = api.key(api.tenant("retry-other"), "trader")
    assert api.client.post(f"{url}/retry", headers=api.auth(other)).status_code == 404


def test_a_rule_preview_stores_nothing(api: ApiHarness) -> None:
    tenant = api.tenant("preview", "premium")
    key = api.key(tenant, "viewer")
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    with api.platform.database.read() as uow:
        symbol = sorted(uow.instruments.symbols().values())[0]
        stored = uow.signals.count_created_since(tenant, epoch)
    rule = "entry: crosses_above(sma(close, 5), sma(close, 20))\n" \
           "exit: crosses_below(sma(close, 5), sma(close, 20))"
    answer = api.client.post("/api/v1/strategies/preview", headers=api.auth(key),
                             json={"rule": rule, "symbol": symbol, "bars": 50})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["bars"]) == 50
    times = {b["time"] for b in body["bars"]}
    assert body["signals"] and all(s["time"] in times for s in body["signals"])
    broken = api.client.post("/api/v1/strategies/preview", headers=api.auth(key),
                             json={"rule": "entry: close >", "symbol": symbol})
    assert broken.status_code == 422 and broken.json()["position"] == 14
    unknown = api.client.post("/api/v1/strategies/preview", headers=api.auth(key),
                              json={"rule": rule, "symbol": "NOPE"})
    assert unknown.status_code == 404
    with api.platform.database.read() as uow:
        assert uow.signals.count_created_since(tenant, epoch) == stored


def test_the_trading_page_shows_controls_by_role(api: ApiHarness) -> None:
    from tests.trading_support import seed_bot

    tenant = api.tenant("trading-page", "premium")
    seeded = seed_bot(api.platform, tenant, name="<script>window.__pwned=1</script>")
    viewer, _ = sign_in(api, api.key(tenant, "viewer"))
    trader, _ = sign_in(api, api.key(tenant, "trader"))
    admin, _ = sign_in(api, api.key(tenant, "admin"))
    pages = {role: client.get("/trading") for role, client in
             (("viewer", viewer), ("trader", trader), ("admin", admin))}
    for role, page in pages.items():
        assert page.status_code == 200, (role, page.text[:300])
        assert 'href="/trading"' in page.text
        assert "<script>window.__pwned" not in page.text  # the bot's name, escaped
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.text
        assert f'id="chart-bot-{seeded.bot_id}"' in page.text
    assert "/start" not in pages["viewer"].text and "data-api=" not in pages["viewer"].text
    assert f"/api/v1/bots/{seeded.bot_id}/start" in pages["trader"].text
    for role in ("viewer", "trader"):
        assert "kill-switch/" not in pages[role].text and "engage-form" not in pages[role].text
    assert 'data-open-form="engage-form"' in pages["admin"].text
    assert "kill-switch/rearm" not in pages["admin"].text  # nothing engaged yet
    # a tenant's admin engages its own and its bots' switches, not the global one
    assert '{"scope": "global"' not in pages["admin"].text
    assert "ACTIVE" in admin.get("/").text


def test_the_trading_page_follows_the_kill_switch_steps(api: ApiHarness) -> None:
    from signalfactory.domain.tenants import DEFAULT_TENANT_ID
    from tests.trading_support import seed_bot

    tenant = api.tenant("kill-page", "premium")
    seeded = seed_bot(api.platform, tenant, name="steps")
    key = api.key(tenant, "admin")
    admin, _ = sign_in(api, key)
    body = {"scope": "bot", "scope_id": seeded.bot_id}

    def step(name: str, **extra: Any) -> str:
        answer = api.client.post(f"/api/v1/risk/kill-switch/{name}", headers=api.auth(key),
                                 json={**body, **extra})
        assert answer.status_code == 200, answer.text
        return str(admin.get("/trading").text)

    row = re.compile(rf'<tr data-scope="bot:{seeded.bot_id}">.*?</tr>', re.S)
    engaged = step("engage", reason="steps")
    found = row.search(engaged)
    assert found is not None and ">engaged<" in found.group() and ">HALTED<" in found.group()
    assert "kill-switch/rearm" in found.group() and "kill-switch/resume" not in found.group()
    assert "Kill switch engaged" in admin.get("/").text
    rearmed = row.search(step("rearm"))
    assert rearmed is not None and ">re-armed<" in rearmed.group()
    assert "kill-switch/resume" in rearmed.group() and "kill-switch/rearm" not in rearmed.group()
    resumed = row.search(step("resume"))
    assert resumed is not None and ">off<" in resumed.group() and ">ACTIVE<" in resumed.group()
    assert "Engage…" in resumed.group() and "ACTIVE" in admin.get("/").text
    # the platform's operators (admins of the default tenant) also get the global switch
    operator, _ = sign_in(api, api.key(DEFAULT_TENANT_ID, "admin"))
    assert '{"scope": "global", "scope_id": 0}' in operator.get("/trading").text
