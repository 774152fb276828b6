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


# -- symbols that hide characters or look like paths: 422 with rule bad-symbol --------------

HOSTILE_SYMBOLS = ["\u202eLPAA", "AA\u200bPL", "../x", "a/b/c", "a\\b", ".hidden", "\u0410APL"]


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_a_hostile_symbol_is_refused_wherever_it_enters_the_api(api: ApiHarness, key: str,
                                                                 symbol: str) -> None:
    store_before = _store(api.platform)
    calls = [
        ("POST", "/api/v1/backtests", {"json": {"strategy": "sma_cross", "symbols": [symbol]}}),
        ("GET", "/api/v1/signals", {"params": {"symbol": symbol}}),
        ("POST", "/api/v1/subscriptions", {"json": {"name": "s", "symbols": [symbol]}}),
        ("GET", "/api/v1/stream/sse", {"params": {"symbols": symbol}}),
    ]
    for method, path, kwargs in calls:
        response = api.client.request(method, path, headers=api.auth(key), **kwargs)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["rule"] == "bad-symbol", (path, response.text)
    assert _store(api.platform) == store_before


def test_the_document_publishes_the_symbol_rule(api: ApiHarness) -> None:
    from signalfactory.domain.symbols import SYMBOL_PATTERN

    document = api.app.openapi()
    body = document["components"]["schemas"]["BacktestIn"]["properties"]["symbols"]
    items = next(option for option in body["anyOf"] if option.get("type") == "array")["items"]
    assert items["pattern"] == SYMBOL_PATTERN
    params = document["paths"]["/api/v1/signals"]["get"]["parameters"]
    symbol = next(p for p in params if p["name"] == "symbol")["schema"]
    assert any(option.get("pattern") == SYMBOL_PATTERN for option in symbol["anyOf"])


# -- methods: OPTIONS answers with the resource's methods; a 405 lists all of them ----------

def _documented(document: dict[str, object]) -> dict[str, set[str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {path: {m.upper() for m in ops if m in ("get", "post", "put", "patch", "delete")}
            for path, ops in paths.items()}


def _concrete(path: str) -> str:
    return path.replace("{", "").replace("}", "").replace("_id", "-1").replace("name", "x")


def test_options_and_405_name_every_method_of_the_resource(api: ApiHarness) -> None:
    for path, methods in _documented(api.app.openapi()).items():
        url = _concrete(path)
        expected = methods | {"OPTIONS"}
        answer = api.client.options(url)
        assert answer.status_code == 204, (path, answer.status_code, answer.text)
        assert set(answer.headers["allow"].split(", ")) == expected, (path, answer.headers)
        for method in sorted({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} - methods)[:3]:
            refused = api.client.request(method, url)
            assert refused.status_code == 405, (method, path, refused.status_code)
            assert set(refused.headers["allow"].split(", ")) == expected, (method, path)
            if method != "HEAD":  # (a HEAD answer has no body)
                assert refused.json()["status"] == 405


# -- times: ISO 8601 or whole epoch seconds, nothing else ------------------------------------

@pytest.mark.parametrize("since", ["0.5", "1e3", "-5", "nan", "1.0", "tomorrow", "2024-13-01"])
def test_a_time_that_is_not_iso_8601_or_whole_epoch_seconds_is_a_422(api: ApiHarness,
                                                                      key: str,
                                                                      since: str) -> None:
    response = api.client.get("/api/v1/signals", params={"since": since}, headers=api.auth(key))
    assert response.status_code == 422, (since, response.text)
    assert "ISO 8601" in response.json()["detail"]


@pytest.mark.parametrize("since", ["2024-01-01", "2024-01-01T09:30:00Z", "1700000000", "0"])
def test_iso_8601_and_whole_epoch_seconds_are_times(api: ApiHarness, key: str,
                                                    since: str) -> None:
    response = api.client.get("/api/v1/signals", params={"since": since}, headers=api.auth(key))
    assert response.status_code == 200, (since, response.text)


@pytest.mark.parametrize("as_of", [0.5, -5, "1e3", True])
def test_a_scan_as_of_that_is_not_a_time_is_a_422(api: ApiHarness, key: str,
                                                  as_of: object) -> None:
    response = api.client.post("/api/v1/scans", json={"strategy": "sma_cross", "as_of": as_of},
                               headers=api.auth(key))
    assert response.status_code == 422, (as_of, response.text)


# -- alternatives are oneOf in the document, so a generated client cannot send both ---------

ALTERNATIVES = {
    "BacktestIn": [("strategy", "rule"), ("symbols", "universe")],
    "ScanIn": [("strategy", "rule")],
}
#: a valid body of each model, holding the first field of each pair
VALID = {"BacktestIn": ("/api/v1/backtests", {"strategy": "sma_cross", "symbols": ["SAAB"]}),
         "ScanIn": ("/api/v1/scans", {"strategy": "sma_cross"})}
SECOND = {"rule": "entry: close > 1", "universe": "sector=technology"}


@pytest.mark.parametrize("model", sorted(ALTERNATIVES))
def test_alternative_fields_are_one_of_in_the_document_and_the_server(
        api: ApiHarness, key: str, model: str) -> None:
    import jsonschema

    document = api.app.openapi()
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{model}", "components": document["components"]})
    path, valid = VALID[model]
    assert validator.is_valid(valid), list(validator.iter_errors(valid))
    for first, second in ALTERNATIVES[model]:
        both = {**valid, second: SECOND[second]}
        neither = {k: v for k, v in valid.items() if k != first}
        for body in (both, neither):
            assert not validator.is_valid(body), (model, body)  # the document refuses it
            response = api.client.post(path, json=body, headers=api.auth(key))
            assert response.status_code == 422, (model, body, response.text)  # so does the API
        # an explicit null is an absent field, for the document as for the server
        assert validator.is_valid({**valid, second: None}), (model, second)


def test_a_scan_refused_on_its_data_takes_no_quota(api: ApiHarness, key: str) -> None:
    quota_before = api.client.get("/api/v1/me", headers=api.auth(key)).json()["quotas"]
    store_before = _store(api.platform)
    response = api.client.post("/api/v1/scans", json={"rule": "entry: close > sma(close, 5000)"},
                               headers=api.auth(key))
    assert response.status_code == 422 and response.json()["rule"] == "history", response.text
    assert api.client.get("/api/v1/me", headers=api.auth(key)).json()["quotas"] == quota_before
    assert _store(api.platform) == store_before
    done = api.client.post("/api/v1/scans", json={"strategy": "sma_cross"}, headers=api.auth(key))
    assert done.status_code == 201, done.text
    after = api.client.get("/api/v1/me", headers=api.auth(key)).json()["quotas"]
    assert after["scans_today"]["used"] == quota_before["scans_today"]["used"] + 1  # counted
