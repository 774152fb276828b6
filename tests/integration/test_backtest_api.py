"""Backtests over HTTP on both backends: a job end to end with the embedded runner, the
stored result by id, the report, quotas, roles, and bad input refused with nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from signalfactory.adapters.storage.checksums import store_fingerprint
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.services.backtests.options import BacktestRequest
from signalfactory.services.backtests.run import run_backtest
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import ensure_builtins
from signalfactory.workers.runner import EmbeddedRunner
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)
BACKTESTS = "/api/v1/backtests"
BODY = {"strategy": "sma_cross", "symbols": ["SAAB"], "from": "2015-02-02", "fees": 0.001,
        "size": "50%", "direction": "both"}


@pytest.fixture(scope="module")
def loaded(shared_platform: Platform) -> Platform:
    store_sample(shared_platform, symbols=5, bars=300, seed=5)
    with shared_platform.database.write() as uow:
        ensure_builtins(uow)
    return shared_platform


@pytest.fixture
def api(loaded: Platform) -> Iterator[ApiHarness]:
    with ApiHarness(loaded) as harness:
        yield harness


def _run_jobs(platform: Platform) -> None:
    outcomes = EmbeddedRunner(platform).run_until_idle()
    assert outcomes and all(o.status == "succeeded" for o in outcomes), outcomes


def _snapshot(platform: Platform) -> dict[str, Any]:
    """The store's content, less the key's last-use time (every authenticated request
    records it)."""
    with engine_of(platform).connect() as conn:
        found = store_fingerprint(conn, sql_database(platform.database).bar_store)
    found["tables"].pop("api_keys")
    return found


def test_a_backtest_runs_as_a_job_and_is_read_back_by_id(api: ApiHarness) -> None:
    tenant = api.tenant("quant", tier="premium")
    key = api.key(tenant, "trader")
    submitted = api.client.post(BACKTESTS, json=BODY, headers=api.auth(key))
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["kind"] == "backtest" and job["status"] == "queued"
    assert submitted.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert "tenant_id" not in job["payload"] and job["payload"]["symbols"] == ["SAAB"]

    _run_jobs(api.platform)
    done = api.client.get(submitted.headers["location"], headers=api.auth(key)).json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0, done
    backtest_id = done["result"]["backtest_id"]
    assert done["result"]["url"] == f"{BACKTESTS}/{backtest_id}"

    got = api.client.get(f"{BACKTESTS}/{backtest_id}", headers=api.auth(key))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["id"] == backtest_id and body["mode"] == "single"
    assert body["final_equity"] == done["result"]["final_equity"]
    assert {"total_return", "sharpe", "max_drawdown", "var_95", "cvar_95",
            "buy_and_hold_return"} <= set(body["metrics"])
    assert body["n_trades"] == len(body["trades"]) > 0
    assert {"symbol", "entry_ts", "exit_ts", "size", "pnl", "return", "exit_reason"} <= set(
        body["trades"][0])
    assert any(t["size"] < 0 for t in body["trades"]), "direction both trades short too"
    assert body["data_range"]["from"].startswith("2015-02-02")

    # the same request through the service finds the stored result: same id, same numbers
    request = BacktestRequest(tenant_id=tenant, strategy="sma_cross", symbols=("SAAB",),
                              start="2015-02-02", fees=0.001, size="50%", direction="both")
    direct = run_backtest(api.platform, request).to_json()
    assert direct["reused"] and direct["id"] == backtest_id
    assert direct["metrics"] == body["metrics"] and direct["trades"] == body["trades"]
    # and a second submission stores nothing new
    again = api.client.post(BACKTESTS, json=BODY, headers=api.auth(key))
    assert again.status_code == 202
    _run_jobs(api.platform)
    result = api.client.get(again.headers["location"], headers=api.auth(key)).json()["result"]
    assert result["backtest_id"] == backtest_id and result["reused"] is True

    limited = api.client.get(f"{BACKTESTS}/{backtest_id}", params={"trades_limit": 1},
                             headers=api.auth(key)).json()
    assert len(limited["trades"]) == 1 and limited["n_trades"] == body["n_trades"]
    listed = api.client.get(BACKTESTS, headers=api.auth(key)).json()
    assert [i["id"] for i in listed["items"]] == [backtest_id]
    assert listed["items"][0]["from"].startswith("2015-02-02")

    report = api.client.get(f"{BACKTESTS}/{backtest_id}/report", headers=api.auth(key))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "sma_cross" in report.text and "LightweightCharts" in report.text


def test_a_universe_job_reports_progress_and_per_symbol_results(api: ApiHarness) -> None:
    key = api.key(api.tenant("quant", tier="premium"), "trader")
    body = {"rule": "entry: close > sma(close, 20)\nexit: close < sma(close, 20)",
            "universe": "universe=sample", "fill": "next_open", "slippage": 5}
    submitted = api.client.post(BACKTESTS, json=body, headers=api.auth(key))
    assert submitted.status_code == 202, submitted.text
    _run_jobs(api.platform)
    job = api.client.get(submitted.headers["location"], headers=api.auth(key)).json()
    result = api.client.get(job["result"]["url"], headers=api.auth(key)).json()
    assert result["mode"] == "universe" and len(result["per_symbol"]) == 5
    assert result["config"]["fill"] == "next_open"
    portfolio = api.client.post(BACKTESTS, json=body | {"max_positions": 2},
                                headers=api.auth(key))
    _run_jobs(api.platform)
    job = api.client.get(portfolio.headers["location"], headers=api.auth(key)).json()
    assert job["result"]["mode"] == "portfolio"
    assert job["result"]["backtest_id"] != result["id"]


BAD_BODIES = [
    ({"colour": "red"}, 422, "Extra inputs"),
    ({"fees": -0.01}, 422, "greater than or equal"),
    ({"size": "lots"}, 422, "--size"),
    ({"from": "2016-01-01", "to": "2015-01-01"}, 422, "swap"),
    ({"symbols": ["NOPE"]}, 422, "unknown symbol"),
    ({"strategy": None, "rule": "entry: crosses_above(close)"}, 422, "position"),
    ({"strategy": None}, 422, "exactly one"),
    ({"strategy": "no_such_strategy"}, 404, "no strategy"),
    ({"direction": "sideways"}, 422, "long"),
    ({"cash": "NaN"}, 422, "finite"),
]


@pytest.mark.parametrize(("change", "status", "message"), BAD_BODIES,
                         ids=[m for _c, _s, m in BAD_BODIES])
def test_bad_requests_are_refused_and_store_nothing(api: ApiHarness, change: dict[str, Any],
                                                    status: int, message: str) -> None:
    key = api.key(api.tenant("quant"), "trader")
    before = _snapshot(api.platform)
    response = api.client.post(BACKTESTS, json=BODY | change, headers=api.auth(key))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.text
    assert _snapshot(api.platform) == before, "no job, no quota used, no backtest"


def test_roles_quota_and_ids(api: ApiHarness) -> None:
    tenant = api.tenant("small", tier="free")
    viewer, trader = api.key(tenant, "viewer"), api.key(tenant, "trader")
    assert api.client.post(BACKTESTS, json=BODY, headers=api.auth(viewer)).status_code == 403
    assert api.client.post(BACKTESTS, json=BODY).status_code == 401
    for _ in range(10):  # the free tier's daily backtests
        assert api.client.post(BACKTESTS, json=BODY,
                               headers=api.auth(trader)).status_code == 202
    refused = api.client.post(BACKTESTS, json=BODY, headers=api.auth(trader))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert refused.json()["quota"] == "backtests"
    assert api.client.get(f"{BACKTESTS}/not-an-id", headers=api.auth(viewer)).status_code == 422
    missing = f"{BACKTESTS}/{'0' * 64}"
    assert api.client.get(missing, headers=api.auth(viewer)).status_code == 404
    assert api.client.get(missing + "/report", headers=api.auth(viewer)).status_code == 404


def test_request_body_becomes_the_service_request() -> None:
    from signalfactory.api.routers.backtests import BacktestIn

    body = BacktestIn.model_validate(BODY | {"to": "2015-12-31", "max_positions": 3})
    request = body.to_request(7)
    expected = BacktestRequest(tenant_id=7, strategy="sma_cross", symbols=("SAAB",),
                               start="2015-02-02", end="2015-12-31", fees=0.001, size="50%",
                               direction="both", max_positions=3)
    assert request == replace(expected)


@pytest.mark.parametrize("change", [{"symbols": ["A\x00B"]}, {"strategy": "sma\x00"},
                                    {"to": "9999-12-31"}, {"from": "0001-01-01"},
                                    {"rule": "entry: close > 1", "strategy": None,
                                     "parameters": {"fast": 3}}],
                         ids=["nul-symbol", "nul-strategy", "far-future", "far-past",
                              "rule-parameters"])
def test_odd_values_are_422_not_500(api: ApiHarness, change: dict[str, Any]) -> None:
    key = api.key(api.tenant("quant"), "trader")
    response = api.client.post(BACKTESTS, json=BODY | change, headers=api.auth(key))
    assert response.status_code == 422, response.text
