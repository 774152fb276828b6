"""Requests the API must refuse as bad input (422 with a rule id, nothing stored), found by an
adversarial audit: a rule whose tree is too deep, a backtest it cannot run, hostile symbols,
malformed times. One seeded SQLite platform for the module (what is checked here is the HTTP
behaviour, not the backend)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import ensure_builtins
from signalfactory.settings import Settings
from tests.api_harness import ApiHarness

DEEP_RULE = "entry: " + "+".join(["close"] * 3000) + " > 0"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home: Path = tmp_path_factory.mktemp("refusals")
    platform = build_platform(Settings(home=home / "home", database_url=f"sqlite:///{home}/sf.db",
                                       bar_store="columnar"), migrate_db=True)
    try:
        platform.bar_subscribers.clear()
        store_sample(platform, symbols=3, bars=300, seed=5)
        with platform.database.write() as uow:
            ensure_builtins(uow)
        yield platform
    finally:
        platform.close()


@pytest.fixture
def api(seeded: Platform) -> Iterator[ApiHarness]:
    with ApiHarness(seeded) as harness:
        yield harness


@pytest.fixture
def key(api: ApiHarness) -> str:
    return api.key(api.tenant("audit", tier="premium"), "trader")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/strategies/validate", {"rule": DEEP_RULE}),
    ("POST", "/api/v1/strategies", {"name": "deep", "rule": DEEP_RULE}),
    ("POST", "/api/v1/backtests", {"rule": DEEP_RULE, "symbols": ["SAAB"]}),
])
def test_a_too_deep_rule_is_a_422_with_rule_id_and_position(api: ApiHarness, key: str,
                                                            method: str, path: str,
                                                            body: dict[str, object]) -> None:
    response = api.client.request(method, path, json=body, headers=api.auth(key))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["rule"] == "expression-too-deep"
    assert isinstance(problem["position"], int) and problem["position"] > 0


# -- backtests the data cannot support: 422 at once, no job, no quota spent -----------------

def _store(platform: Platform) -> dict[str, object]:
    """The store's content, less the key's last-use time (authentication records it)."""
    from signalfactory.adapters.storage.checksums import store_fingerprint
    from signalfactory.adapters.storage.unit_of_work import sql_database
    from tests.helpers import engine_of

    with engine_of(platform).connect() as conn:
        found = store_fingerprint(conn, sql_database(platform.database).bar_store)
    found["tables"].pop("api_keys")
    return found


def _last_bar_day(platform: Platform) -> str:
    from signalfactory.domain.timeframes import Timeframe
    from signalfactory.domain.timestamps import ns_to_datetime
    from signalfactory.services.marketdata.bars import load_universe

    bars = load_universe(platform, Timeframe.parse("1d"), symbols=["SAAB"])
    return ns_to_datetime(int(bars.ts.max())).date().isoformat()


@pytest.mark.parametrize(("case", "body", "rule", "words"), [
    ("range in the future", {"strategy": "sma_cross", "symbols": ["SAAB"],
                             "from": "2199-01-02"}, "from", "future"),
    ("range after the last bar", {"strategy": "sma_cross", "symbols": ["SAAB"],
                                  "from": "LAST+1"}, "symbol", "no 1d bars"),
    ("more history than exists", {"rule": "entry: close > sma(close, 5000)",
                                  "symbols": ["SAAB"]}, "history", "needs at least 5000 bars"),
    ("universe without enough history", {"rule": "entry: close > sma(close, 5000)",
                                         "universe": "sector=technology"}, "history",
     "load more history"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_backtest_the_data_cannot_support_is_a_422_and_spends_nothing(
        api: ApiHarness, key: str, case: str, body: dict[str, object], rule: str,
        words: str) -> None:
    import datetime as dt

    if body.get("from") == "LAST+1":
        last = dt.date.fromisoformat(_last_bar_day(api.platform))
        body = {**body, "from": (last + dt.timedelta(days=1)).isoformat()}
    if "universe" in body:
        tags = api.client.get("/api/v1/instruments", headers=api.auth(key)).json()
        assert any(body["universe"].split("=")[1] in str(i["tags"]) for i in tags["items"])
    quota_before = api.client.get("/api/v1/me", headers=api.auth(key)).json()["quotas"]
    store_before = _store(api.platform)
    response = api.client.post("/api/v1/backtests", json=body, headers=api.auth(key))
    assert response.status_code == 422, (case, response.text)
    problem = response.json()
    assert words in problem["detail"], problem
    assert problem["rule"] == rule
    assert api.client.get("/api/v1/me", headers=api.auth(key)).json()["quotas"] == quota_before
    assert _store(api.platform) == store_before  # no job, no usage row
