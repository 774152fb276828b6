"""Hot reads: signal pages written straight from driver rows, keys looked up exactly, and
load shedding. SQLite and PostgreSQL.

The lean page (``adapters/storage/signal_pages.py`` + orjson) must give the bytes the
pydantic page gave (``SignalPage.model_dump_json`` over ``query_signals``): the same
selection, order and JSON for every filter, page by page along the cursor.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.tables import api_keys, signals
from signalfactory.api.routers.signals import SignalOut, SignalPage, _encode_cursor
from signalfactory.domain.signals import NewSignal
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.signals.evaluation import query_signals, run_all
from signalfactory.services.strategies.catalog import store_builtins_once
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)
RULE = "entry: close > sma(close, 3)\nexit: close < sma(close, 3)"


@pytest.fixture(scope="module")
def seeded(shared_platform: Any) -> Iterator[tuple[ApiHarness, str, int]]:
    """A tenant with a strategy of its own, built-in and own signals, and signals with
    values the JSON must render exactly (integers stored in ``values``, tiny and huge
    floats, no score)."""
    with ApiHarness(shared_platform) as api:
        store_sample(api.platform, symbols=12, bars=160, seed=7)
        store_builtins_once(api.platform)
        tenant = api.tenant("pages", tier="premium")
        key = api.key(tenant, "trader")
        name = f"own_{uuid.uuid4().hex[:8]}"
        made = api.client.post("/api/v1/strategies", headers=api.auth(key),
                               json={"name": name, "rule": RULE})
        assert made.status_code == 201, made.text
        reports = run_all(api.platform, tenant, ["sma_cross", "rsi_mean_reversion", name])
        assert sum(r.signals_written for r in reports) > 150
        with engine_of(api.platform).connect() as conn:
            version_id, instrument_id = conn.execute(
                sa.select(signals.c.strategy_version_id, signals.c.instrument_id)
                .order_by(signals.c.id).limit(1)).one()
        odd = [NewSignal(version_id, instrument_id, "", "1d",
                         datetime(1999, 1, 4 + i, tzinfo=UTC), "long", score, price, values)
               for i, (score, price, values) in enumerate([
                   (None, 1e16, {"n": 5, "m": -3}),
                   (1e-7, 0.1 + 0.2, {"tiny": 1e-300, "big": 1.5e300}),
                   (-0.0, 123456789.125, {}),
               ])]
        with api.platform.database.write() as uow:
            assert len(uow.signals.insert_new(odd)) == 3
        yield api, key, tenant


def _reference(api: ApiHarness, tenant: int, limit: int, **filters: Any) -> bytes:
    """The page as the pydantic models wrote it before the lean path."""
    with api.platform.database.read() as uow:
        rows = query_signals(uow, tenant, limit=limit, **filters)
    cursor = _encode_cursor(rows[-1].id) if len(rows) == limit else None
    return SignalPage(items=[SignalOut.of(s) for s in rows],
                      next_cursor=cursor).model_dump_json().encode()


FILTERS: list[dict[str, Any]] = [
    {},
    {"symbol": "SAAB"},
    {"strategy": "sma_cross", "side": "long"},
    {"min_score": 0.0},
    {"since": datetime(2000, 1, 1, tzinfo=UTC)},
    {"since": datetime(1999, 1, 5, tzinfo=UTC), "side": "long"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_a_lean_page_is_byte_for_byte_the_models_page(
        seeded: tuple[ApiHarness, str, int], filters: dict[str, Any]) -> None:
    api, key, tenant = seeded
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items()}
    after_id, pages = None, 0
    while True:
        query = {**params, "limit": 37, **({"cursor": _encode_cursor(after_id)}
                                             if after_id is not None else {})}
        response = api.client.get("/api/v1/signals", params=query, headers=api.auth(key))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.content == _reference(api, tenant, 37, after_id=after_id, **filters)
        pages += 1
        body = response.json()
        if body["next_cursor"] is None:
            break
        after_id = body["items"][-1]["id"]
    assert pages >= (2 if not filters else 1)


def test_a_symbol_on_two_venues_or_none_pages_as_the_models_do(
        seeded: tuple[ApiHarness, str, int]) -> None:
    """A symbol with one instrument is paged by instrument id (no sort); one listed on two
    venues, and one that is not known, go the other ways: the same bytes as the models."""
    from signalfactory.adapters.storage.tables import instruments

    api, key, tenant = seeded
    symbol = f"TWO{uuid.uuid4().hex[:6].upper()}"
    with engine_of(api.platform).begin() as conn:
        version_id = conn.execute(sa.select(signals.c.strategy_version_id)
                                  .order_by(signals.c.id).limit(1)).scalar_one()
        venues = [conn.execute(instruments.insert().values(symbol=symbol, venue=venue)
                               .returning(instruments.c.id)).scalar_one()
                  for venue in ("east", "west")]
    made = [NewSignal(version_id, venues[i % 2], symbol, "1d",
                      datetime(1998, 1, 1, tzinfo=UTC) + timedelta(days=i), "long", 0.5,
                      10.0 + i, {"x": float(i)}) for i in range(9)]
    with api.platform.database.write() as uow:
        assert len(uow.signals.insert_new(made)) == 9
    for name, limit in ((symbol, 4), (symbol, 50), ("NOSUCHSYMBOL", 5)):
        response = api.client.get("/api/v1/signals", params={"symbol": name, "limit": limit},
                                  headers=api.auth(key))
        assert response.status_code == 200, response.text
        assert response.content == _reference(api, tenant, limit, symbol=name)
    assert len(response.json()["items"]) == 0
    both = api.client.get("/api/v1/signals", params={"symbol": symbol, "limit": 50},
                          headers=api.auth(key)).json()["items"]
    assert len(both) == 9 and [i["id"] for i in both] == sorted(i["id"] for i in both)


def test_odd_values_render_as_the_schema_says(seeded: tuple[ApiHarness, str, int]) -> None:
    api, key, tenant = seeded
    with engine_of(api.platform).connect() as conn:
        first = conn.execute(sa.select(sa.func.min(signals.c.id))
                             .where(signals.c.bar_ts < datetime(2000, 1, 1, tzinfo=UTC))).scalar()
    params = {"limit": 3, "cursor": _encode_cursor(first - 1)}
    response = api.client.get("/api/v1/signals", params=params, headers=api.auth(key))
    items = response.json()["items"]
    assert [i["bar_ts"][:10] for i in items] == ["1999-01-04", "1999-01-05", "1999-01-06"]
    assert items[0]["values"] == {"n": 5.0, "m": -3.0} and b'"n":5.0' in response.content
    assert items[0]["score"] is None and items[1]["values"]["tiny"] == 1e-300
    assert response.content == _reference(api, tenant, 3, after_id=first - 1)


def test_a_revoked_key_is_refused_on_its_next_hot_read(
        seeded: tuple[ApiHarness, str, int]) -> None:
    """Revoked behind the process's back (another connection, as the CLI in another process
    would): the very next signal page and cached scan read are 401."""
    api, _key, tenant = seeded
    key = api.key(tenant, "viewer")
    with api.platform.database.read() as uow:
        scan_id = uow.connection.execute(sa.text("SELECT min(id) FROM scans")).scalar()
    if scan_id is None:
        trader = api.key(tenant, "trader")
        ran = api.client.post("/api/v1/scans", headers=api.auth(trader),
                              json={"strategy": "sma_cross", "top": 5})
        assert ran.status_code == 201, ran.text
        scan_id = ran.json()["id"]
    reads = ["/api/v1/signals?limit=5", f"/api/v1/scans/{scan_id}"]
    for url in reads * 2:  # the second round is served from the cache
        response = api.client.get(url, headers=api.auth(key))
        assert response.status_code in (200, 404), response.text
    engine = sa.create_engine(engine_of(api.platform).url)
    try:
        with engine.begin() as conn:
            revoked = conn.execute(api_keys.update()
                                   .where(api_keys.c.id == api.key_id(key))
                                   .values(revoked_at=datetime.now(UTC) - timedelta(seconds=1)))
            assert revoked.rowcount == 1
    finally:
        engine.dispose()
    # A bad cursor does not get a revoked key a 422 either: the key is looked at first.
    for url in [*reads, "/api/v1/signals?cursor=not-a-cursor"]:
        response = api.client.get(url, headers=api.auth(key))
        assert response.status_code == 401, (url, response.text)
        assert "revoked" in response.json()["detail"]


def test_a_missing_key_is_refused_before_a_bad_query(
        seeded: tuple[ApiHarness, str, int]) -> None:
    api, _key, _tenant = seeded
    for url in ("/api/v1/signals?limit=0", "/api/v1/scans/0"):
        response = api.client.get(url)
        assert response.status_code == 401, response.text
        response = api.client.get(url, headers={"X-API-Key": "sf_live_not-a-key"})
        assert response.status_code == 401 and "malformed" in response.json()["detail"]


def test_over_the_in_flight_limit_requests_get_503_at_once(
        seeded: tuple[ApiHarness, str, int]) -> None:
    """Two requests held in flight fill a limit of two: the third is answered 503 with
    Retry-After in the problem shape without waiting; probes still answer; once the two
    finish, requests are served again."""
    api, key, _tenant = seeded
    settings = api.platform.settings.model_copy(update={"api_max_in_flight": 2})
    import dataclasses

    with ApiHarness(dataclasses.replace(api.platform, settings=settings)) as limited:
        release, entered = threading.Event(), threading.Semaphore(0)

        @limited.app.get("/api/v1/test/hold")
        def hold() -> dict[str, bool]:
            entered.release()
            return {"released": release.wait(10)}

        held: list[Any] = []
        workers = [threading.Thread(target=lambda: held.append(
            limited.client.get("/api/v1/test/hold", headers=api.auth(key))))
            for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            for _ in workers:
                assert entered.acquire(timeout=10), "a held request never started"
            started = time.perf_counter()
            shed = limited.client.get("/api/v1/signals?limit=5", headers=api.auth(key))
            took = time.perf_counter() - started
            assert shed.status_code == 503, shed.text
            assert shed.headers["retry-after"] == "1" and took < 1.0
            assert shed.headers["content-type"] == "application/problem+json"
            body = shed.json()
            assert body["type"].endswith("/overloaded") and body["status"] == 503
            assert "limit of 2" in body["detail"] and body["instance"] == "/api/v1/signals"
            assert limited.client.get("/livez").status_code == 200
        finally:
            release.set()
            for worker in workers:
                worker.join(10)
        assert [r.status_code for r in held] == [200, 200]
        response = limited.client.get("/api/v1/signals?limit=5", headers=api.auth(key))
        assert response.status_code == 200, response.text


FAST_PATH_CASES = [
    "/api/v1/signals?limit=7", "/api/v1/signals?symbol=SAAB&limit=3&symbol=SAAC",
    "/api/v1/signals?since=2000-01-01&side=long&min_score=0", "/api/v1/signals?cursor=MTA",
    "/api/v1/signals?limit=0", "/api/v1/signals?side=up", "/api/v1/signals?symbol=",
    "/api/v1/signals?min_score=nan", "/api/v1/signals?since=yesterday",
    "/api/v1/signals?cursor=not-a-cursor", "/api/v1/signals?strategy=nope&unknown=1",
]


def _answer(response: Any) -> tuple[int, str, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items()
               if k not in ("x-request-id", "ratelimit-remaining", "ratelimit-reset")}
    return response.status_code, response.headers["content-type"], response.content, headers


def test_the_fast_path_answers_as_the_route_does(seeded: tuple[ApiHarness, str, int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """api/hot_reads.py serves valid requests itself; with it stepped aside (every request
    left to the route) each answer is the same: status, headers and body, 401s and 422s."""
    from prometheus_client import REGISTRY

    from signalfactory.api.hot_reads import SignalPagesFastPath

    api, _key, tenant = seeded
    viewer = api.key(tenant, "viewer")
    requests = [(url, api.auth(viewer)) for url in FAST_PATH_CASES]
    requests += [("/api/v1/signals?limit=0", {}),
                 ("/api/v1/signals", {"X-API-Key": "sf_live_not-a-key"})]
    labels = {"method": "GET", "route": "/api/v1/signals", "status": "200"}
    before = REGISTRY.get_sample_value("http_request_duration_seconds_count", labels) or 0
    parameters, taken = SignalPagesFastPath._parameters, []

    def counted(self: SignalPagesFastPath, scope: Any) -> dict[str, Any] | None:
        values = parameters(self, scope)
        taken.append(values is not None)
        return values

    monkeypatch.setattr(SignalPagesFastPath, "_parameters", counted)
    fast = [_answer(api.client.get(url, headers=headers)) for url, headers in requests]
    served = REGISTRY.get_sample_value("http_request_duration_seconds_count", labels)
    assert served == before + sum(status == 200 for status, *_ in fast)
    # valid parameters were served by the fast path (the bad cursor too: signal_page's 422)
    assert taken == [True] * 4 + [False] * 5 + [True, True]
    monkeypatch.setattr(SignalPagesFastPath, "_parameters", lambda self, scope: None)
    routed = [_answer(api.client.get(url, headers=headers)) for url, headers in requests]
    assert [s for s, *_ in fast] == [200, 200, 200, 200, 422, 422, 422, 422, 422, 422, 200,
                                     401, 401]
    assert fast == routed


def test_the_lean_key_lookup_reads_what_the_select_reads(
        seeded: tuple[ApiHarness, str, int]) -> None:
    """``key_by_digest`` (driver-level SQL, every request) and ``keys_matching`` (the
    SQLAlchemy select the listings use) give equal records: a fresh key, a used one, a
    revoked one; and nothing for an unknown digest."""
    from signalfactory.domain.api_keys import digest

    api, _key, tenant = seeded
    fresh, used, revoked = (api.key(tenant, "viewer") for _ in range(3))
    assert api.client.get("/api/v1/signals?limit=1", headers=api.auth(used)).status_code == 200
    with api.platform.database.write() as uow:
        assert uow.accounts.revoke_key(api.key_id(revoked), datetime.now(UTC))
    with api.platform.database.read() as uow:
        for secret in (fresh, used, revoked):
            lean = uow.accounts.key_by_digest(digest(secret))
            assert lean is not None
            assert [lean] == uow.accounts.keys_matching(key_id=api.key_id(secret))
            assert lean.created_at is not None and lean.created_at.tzinfo is not None
        # one character changed (a key that ends in "x" would stay itself with "x": 1 in 62)
        altered = fresh[:-1] + ("y" if fresh.endswith("x") else "x")
        assert uow.accounts.key_by_digest(digest(altered)) is None
        assert uow.accounts.key_by_digest(digest(used)).last_used_at is not None  # type: ignore[union-attr]
        assert uow.accounts.key_by_digest(digest(revoked)).revoked_at is not None  # type: ignore[union-attr]
