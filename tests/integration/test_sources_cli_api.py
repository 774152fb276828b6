"""``signalfactory sources ...`` and ``/api/v1/sources``: the round trip, and bad input that
answers exit 2 / 4xx with nothing stored (before/after fingerprints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from tests.api_harness import ApiHarness, build_api_platform
from tests.helpers import cli, fingerprint


def _last_json(output: str) -> Any:
    """The command's JSON document, after the JSON log lines the command wrote first."""
    lines = output.strip().splitlines()
    for start in range(len(lines) - 1, -1, -1):
        try:
            return json.loads("\n".join(lines[start:]))
        except json.JSONDecodeError:
            continue
    raise AssertionError(f"no JSON in {output!r}")


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", f"sqlite:///{tmp_path / 'sf.db'}")
    return tmp_path


SYNTH = ["--kind", "synthetic", "--symbols", "AAA,BBB", "--timeframe", "1h",
         "--param", "n_bars=500", "--param", "start_ms=1704067200000",
         "--param", "start=2024-01-01T00:00:00Z"]


def test_cli_add_list_run_pause_resume(sf_env: dict[str, str]) -> None:
    added = cli("sources", "add", "demo", *SYNTH, "--cron", "*/15 * * * *", "--json")
    assert added.exit_code == 0, added.output
    assert _last_json(added.stdout)["cron"] == "*/15 * * * *"
    listed = _last_json(cli("sources", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["demo"]
    ran = cli("sources", "run", "demo", "--json")
    assert ran.exit_code == 0, ran.output
    result = _last_json(ran.stdout)
    assert result["status"] == "succeeded" and result["result"]["rows"] == 1000
    again = _last_json(cli("sources", "run", "demo", "--json").stdout)
    assert again["result"]["rows"] == 0
    assert _last_json(cli("sources", "pause", "demo", "--json").stdout)["paused"] is True
    assert _last_json(cli("sources", "resume", "demo", "--json").stdout)["paused"] is False
    shown = _last_json(cli("sources", "show", "demo").stdout)
    assert shown["last_run"]["outcome"] == "succeeded" and shown["breaker"]["state"] == "closed"


@pytest.mark.parametrize("args, message", [
    (["bad name", *SYNTH], "source name"),
    (["files", *SYNTH], "reserved"),
    (["demo", "--kind", "nope", "--symbols", "AAA"], "unknown source kind"),
    (["demo", *SYNTH, "--cron", "every minute"], "cron"),
    (["demo", "--kind", "synthetic", "--symbols", "AAA", "--timeframe", "7x"], "timeframe"),
    (["demo", "--kind", "synthetic", "--symbols", "AAA,AAA"], "listed twice"),
    (["demo", "--kind", "http", "--symbols", "AAA", "--param", "url=ftp://x/{symbol}"],
     "url"),
    (["demo", "--kind", "ccxt", "--symbols", "BTC/USDT", "--param", "exchange=nowhere"],
     "exchange"),
    (["demo", "--kind", "ccxt", "--symbols", "BTC/USDT", "--param", "exchange=binance",
      "--timeframe", "1w", "--param", "lookback_bars=0"], "lookback_bars"),
    (["demo", "--kind", "yfinance", "--symbols", "AAPL", "--timeframe", "4h"], "yfinance"),
    (["demo", *SYNTH, "--params", "[1]"], "--params"),
])
def test_cli_bad_input_exits_2_and_stores_nothing(sqlite_env: Path, args: list[str],
                                                  message: str) -> None:
    # checks of the input, before any storage: one backend is enough (the repositories run
    # on both in the other tests)
    assert cli("init").exit_code == 0
    before = fingerprint()
    result = cli("sources", "add", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert fingerprint() == before


def test_cli_unknown_source_exits_2(sqlite_env: Path) -> None:
    for command in (["run", "nope"], ["pause", "nope"], ["show", "nope"], ["remove", "nope"]):
        result = cli("sources", *command)
        assert result.exit_code == 2 and "no source" in result.output


@pytest.fixture
def api(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    platform = build_api_platform(monkeypatch)
    try:
        with ApiHarness(platform) as harness:
            yield harness
    finally:
        platform.close()


BODY = {"name": "demo", "kind": "synthetic", "symbols": ["AAA"], "timeframe": "1h",
        "params": {"n_bars": 300, "start_ms": 1704067200000,
                   "start": "2024-01-01T00:00:00Z"}}


def test_api_round_trip_for_installation_admins(api: ApiHarness) -> None:
    admin = api.auth(api.key(DEFAULT_TENANT_ID, "admin"))
    made = api.client.post("/api/v1/sources", json=BODY, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["breaker"]["state"] == "closed"
    assert api.client.post("/api/v1/sources", json=BODY, headers=admin).status_code == 409
    listed = api.client.get("/api/v1/sources", headers=admin).json()["items"]
    assert [s["name"] for s in listed] == ["demo"]
    run = api.client.post("/api/v1/sources/demo/run", headers=admin)
    assert run.status_code == 202 and run.json()["kind"] == "collect_source"
    assert run.headers["Location"] == f"/api/v1/jobs/{run.json()['id']}"
    paused = api.client.post("/api/v1/sources/demo/pause", headers=admin).json()
    assert paused["paused"] is True
    assert api.client.post("/api/v1/sources/demo/resume", headers=admin).json()["paused"] is False
    assert api.client.get("/api/v1/sources/nope", headers=admin).status_code == 404
    assert api.client.delete("/api/v1/sources/demo", headers=admin).status_code == 204
    assert api.client.get("/api/v1/sources/demo", headers=admin).status_code == 404


def test_api_refuses_other_roles_and_tenants_and_bad_input(api: ApiHarness) -> None:
    admin = api.auth(api.key(DEFAULT_TENANT_ID, "admin"))
    trader = api.auth(api.key(DEFAULT_TENANT_ID, "trader"))
    tenant_admin = api.auth(api.key(api.tenant("saas"), "admin"))
    before = _api_fingerprint()
    assert api.client.post("/api/v1/sources", json=BODY, headers=trader).status_code == 403
    refused = api.client.post("/api/v1/sources", json=BODY, headers=tenant_admin)
    assert refused.status_code == 403 and "installation" in refused.json()["detail"]
    assert api.client.get("/api/v1/sources", headers=tenant_admin).status_code == 403
    for bad in ({**BODY, "name": "Bad Name"}, {**BODY, "kind": "nope"},
                {**BODY, "symbols": []}, {**BODY, "cron": "sometimes"},
                {**BODY, "timeframe": "3x"}, {**BODY, "params": {"n_bars": "many"}},
                {**BODY, "extra": 1}):
        answer = api.client.post("/api/v1/sources", json=bad, headers=admin)
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert _api_fingerprint() == before


def _api_fingerprint() -> Any:
    """Everything but what each request writes (keys' last use, usage counters)."""
    found = fingerprint()
    tables = {k: v for k, v in found["tables"].items()
              if k not in ("api_keys", "usage_counters", "idempotency_keys")}
    assert "sources" in tables
    return {"tables": tables, "bars": found["bars"]}
