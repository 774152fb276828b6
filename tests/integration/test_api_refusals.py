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
