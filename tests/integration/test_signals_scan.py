"""Signals and scans end to end: idempotent signals, failed runs recorded, CLI and API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.tables import (
    DEFAULT_TENANT_ID,
    scans,
    signals,
    strategy_runs,
)
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.signals.evaluation import run_all, run_stored
from signalfactory.services.strategies.catalog import add_strategy, ensure_builtins, get_strategy
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import cli, engine_of, fingerprint

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture(scope="module")
def loaded(shared_platform: Platform) -> Platform:
    store_sample(shared_platform, symbols=12, bars=400, seed=11)
    with shared_platform.database.write() as uow:
        ensure_builtins(uow)
    return shared_platform


@pytest.fixture
def api(loaded: Platform) -> Iterator[ApiHarness]:
    with ApiHarness(loaded) as harness:
        yield harness


def _count(platform: Platform, table: sa.Table) -> int:
    with engine_of(platform).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_rerunning_evaluation_writes_no_duplicates(loaded: Platform) -> None:
    with loaded.database.read(primary=True) as uow:
        stored = get_strategy(uow, DEFAULT_TENANT_ID, "sma_cross")
    first = run_stored(loaded, stored)
    assert first.status == "succeeded" and first.signals_found > 0, first.error
    count = _count(loaded, signals)
    again = run_stored(loaded, stored)
    assert again.signals_found == first.signals_found
    assert again.signals_written == 0
    assert _count(loaded, signals) == count
    with engine_of(loaded).connect() as conn:
        row = conn.execute(sa.select(signals).limit(1)).first()
    assert row is not None and row.values, "a signal records the values that decided it"


def test_failing_strategy_is_recorded_and_others_go_on(loaded: Platform,
                                                       tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text(
        "class Broken:\n"
        "    name = 'broken'\n    version = '1'\n    parameters = {}\n"
        "    required_lookback = 0\n"
        "    def evaluate(self, universe):\n"
        "        raise ValueError('division by the number of regrets')\n")
    with loaded.database.write() as uow:
        add_strategy(uow, DEFAULT_TENANT_ID, "broken", class_path=f"{source}:Broken")
    reports = run_all(loaded, DEFAULT_TENANT_ID, ["broken", "rsi_mean_reversion"])
    assert [r.status for r in reports] == ["failed", "succeeded"]
    assert "regrets" in (reports[0].error or "")
    with engine_of(loaded).connect() as conn:
        failed = conn.execute(sa.select(strategy_runs).where(
            strategy_runs.c.status == "failed")).all()
    assert failed and "regrets" in failed[-1].error


def test_scan_api_ranks_and_stores(api: ApiHarness) -> None:
    tenant = api.tenant("scanner", tier="premium")
    key = api.key(tenant, "trader")
    body = {"rule": "entry: close > sma(close, 20); score: close / sma(close, 20)",
            "top": 5}
    created = api.client.post("/api/v1/scans", json=body, headers=api.auth(key))
    assert created.status_code == 201, created.text
    scan = created.json()
    assert scan["status"] == "succeeded" and scan["instruments"] == 12
    scores = [r["score"] for r in scan["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 5
    fetched = api.client.get(f"/api/v1/scans/{scan['id']}", headers=api.auth(key))
    assert fetched.status_code == 200 and fetched.json()["results"] == scan["results"]
    other = api.key(api.tenant("other"), "admin")
    assert api.client.get(f"/api/v1/scans/{scan['id']}",
                          headers=api.auth(other)).status_code == 404


def test_invalid_rule_is_refused_with_position_and_nothing_stored(api: ApiHarness) -> None:
    key = api.key(api.tenant("bad", tier="premium"), "trader")
    before = _count(api.platform, scans), _count(api.platform, signals)
    for body in ({"rule": "entry: rsi(close, 14) <"}, {"rule": "entry: rsii(close, 14) < 3"},
                 {"rule": "entry: crosses_above(close)"}, {"rule": "entry: close + 1"},
                 {"rule": "entry: close > sma(close, 5000)"}):
        response = api.client.post("/api/v1/scans", json=body, headers=api.auth(key))
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert problem["status"] == 422 and problem["detail"]
        if "5000" not in body["rule"]:
            assert isinstance(problem.get("position"), int), problem
    validate = api.client.post("/api/v1/strategies/validate",
                               json={"rule": "entry: close >> 3"}, headers=api.auth(key))
    assert validate.status_code == 422 and "position" in validate.json()
    assert (_count(api.platform, scans), _count(api.platform, signals)) == before


def test_signals_api_paginates_with_a_cursor(api: ApiHarness, loaded: Platform) -> None:
    run_all(loaded, DEFAULT_TENANT_ID, ["donchian_breakout"])
    key = api.key(api.tenant("reader"), "viewer")
    seen: list[int] = []
    cursor = None
    for _ in range(50):
        params: dict[str, Any] = {"limit": 7, "strategy": "donchian_breakout"}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/api/v1/signals", params=params, headers=api.auth(key)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) > 7 and seen == sorted(seen)
    bad = api.client.get("/api/v1/signals", params={"cursor": "!!"}, headers=api.auth(key))
    assert bad.status_code == 422


def test_strategy_versions_over_the_api(api: ApiHarness) -> None:
    key = api.key(api.tenant("author", tier="premium"), "trader")
    body = {"name": "trend", "rule": "entry: close > ema(close, 30)"}
    first = api.client.post("/api/v1/strategies", json=body, headers=api.auth(key))
    assert first.status_code == 201 and first.json()["version"] == 1
    same = api.client.post("/api/v1/strategies", json=body, headers=api.auth(key))
    assert same.status_code == 200 and same.json()["version"] == 1
    body["rule"] = "entry: close > ema(close, 40)"
    second = api.client.post("/api/v1/strategies", json=body, headers=api.auth(key))
    assert second.json()["version"] == 2 and second.json()["versions"] == 2
    names = {s["name"] for s in api.client.get("/api/v1/strategies",
                                                headers=api.auth(key)).json()["items"]}
    assert {"trend", "sma_cross", "macd_trend"} <= names


def test_scan_and_signals_through_the_cli(sf_env: dict[str, str]) -> None:
    assert cli("sample", "--symbols", "6", "--bars", "300").exit_code == 0
    result = cli("scan", "--strategy", "rsi_mean_reversion", "--json")
    assert result.exit_code == 0, result.output
    scan = json.loads(result.output)
    assert scan["status"] == "succeeded" and scan["instruments"] == 6
    before = fingerprint()
    bad = cli("scan", "--rule", "entry: crosses_above(close)")
    assert bad.exit_code == 2 and "position" in bad.output
    bad = cli("strategies", "add", "x", "--rule", "entry: close >")
    assert bad.exit_code == 2
    assert fingerprint() == before
    assert cli("evaluate", "--strategy", "sma_cross").exit_code == 0
    listed = json.loads(cli("signals", "--strategy", "sma_cross", "--json").output)
    assert listed and all(s["strategy"] == "sma_cross" for s in listed)
    assert cli("evaluate", "--strategy", "sma_cross").exit_code == 0
    again = json.loads(cli("signals", "--strategy", "sma_cross", "--json").output)
    assert len(again) == len(listed)
    shown = cli("indicators", "SAAA", "--expr", "rsi(close, 14)", "--tail", "3", "--json")
    assert shown.exit_code == 0 and len(json.loads(shown.output)) == 3
