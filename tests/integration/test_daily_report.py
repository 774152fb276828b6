"""The daily trading report on SQLite and PostgreSQL: `signalfactory report daily`, stored
once per day with its campaign, read back over the API."""

from __future__ import annotations

from pathlib import Path

from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.platform import Platform
from tests.api_harness import ApiHarness
from tests.helpers import cli, fingerprint
from tests.integration.backup_fixtures import parse_json
from tests.trading_support import DAY, equity_at, seed_bot


def test_report_daily_renders_stores_once_and_is_served(platform: Platform,
                                                       tmp_path: Path) -> None:
    with platform.database.write() as uow:
        tenant = accounts.create_tenant(uow, "acme").id
    seed_bot(platform, tenant)
    day = DAY.isoformat()

    page = tmp_path / "report.html"
    shown = cli("report", "daily", "--tenant", "acme", "--day", day, "--to", str(page))
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"Trading report {day} (acme): day PnL "
                                   f"{equity_at(71) - equity_at(47):+,.2f}")
    assert "LightweightCharts.createChart" in page.read_text()
    with platform.database.read() as uow:
        assert uow.daily_reports.days(tenant) == []  # on demand: nothing stored

    before = fingerprint()
    for bad in (("--day", "03/03/2026"), ("--tenant", "nobody"),
                ("--to", str(tmp_path / "missing" / "dir" / "x.html"))):
        result = cli("report", "daily", "--tenant", "acme", "--day", day, "--store", *bad)
        assert result.exit_code == 2, (bad, result.output)
    assert fingerprint() == before

    first = cli("report", "daily", "--tenant", "acme", "--day", day, "--store", "--json")
    assert first.exit_code == 0 and "stored and sent" in first.stderr
    assert parse_json(first.stdout)["bots"][0]["orders_today"] == 2
    second = cli("report", "daily", "--tenant", "acme", "--day", day, "--store")
    assert second.exit_code == 0 and "not sent again" in second.stderr
    with platform.database.read() as uow:
        assert len(uow.campaigns.for_tenant(tenant)) == 1

    with ApiHarness(platform) as api:
        key = api.key(tenant, "viewer")
        other = api.key(api.tenant("other"), "admin")
        days = api.client.get("/api/v1/reports/daily", headers=api.auth(key))
        assert days.json() == {"days": [day]}
        html = api.client.get(f"/api/v1/reports/daily/{day}", headers=api.auth(key))
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert "Trading report 2026-03-03: acme" in html.text
        text = api.client.get(f"/api/v1/reports/daily/{day}", headers=api.auth(key),
                              params={"format": "text"})
        assert text.text.startswith(f"Trading report {day} (acme)")
        body = api.client.get(f"/api/v1/reports/daily/{day}", headers=api.auth(key),
                              params={"format": "json"}).json()
        assert body["bots"][0]["name"] == "trend"
        missing = api.client.get(f"/api/v1/reports/daily/{day}", headers=api.auth(other))
        assert missing.status_code == 404  # another tenant's report is not there
        bad = api.client.get("/api/v1/reports/daily/yesterday", headers=api.auth(key))
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
