"""Idempotency-Key with Stripe's semantics, on both backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import Body, HTTPException, Response

from signalfactory.adapters.storage.tables import idempotency_keys
from signalfactory.api.auth import TraderDep
from signalfactory.api.schemas import RequestModel
from signalfactory.services.accounts.idempotency import purge_expired
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of

ORDERS = "/api/v1/test/orders"


class _Order(RequestModel):
    symbol: str
    quantity: int


class _Orders:
    """A POST endpoint that counts its executions and can be held open."""

    def __init__(self) -> None:
        self.executed: list[dict[str, Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()


shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture
def api(shared_platform: Any) -> Iterator[tuple[ApiHarness, _Orders]]:
    orders = _Orders()
    with ApiHarness(shared_platform) as harness:
        @harness.app.post(ORDERS, status_code=201)
        def create_order(principal: TraderDep, response: Response,
                         order: Annotated[_Order, Body()]) -> dict[str, Any]:
            orders.entered.set()
            assert orders.release.wait(10)
            if order.symbol == "BOOM":
                raise HTTPException(503, "exchange unavailable")
            with orders.lock:
                orders.executed.append({"tenant": principal.tenant_id, **order.model_dump()})
                number = len(orders.executed)
            response.headers["Location"] = f"{ORDERS}/{number}"
            return {"id": number, "symbol": order.symbol, "quantity": order.quantity}

        yield harness, orders


def _post(api: ApiHarness, key: str, idem: str | None, body: dict[str, Any]) -> Any:
    headers = api.auth(key) if idem is None else api.auth(key, **{"Idempotency-Key": idem})
    return api.client.post(ORDERS, headers=headers, json=body)


def test_replay_returns_the_stored_response_without_running_again(
        api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    key = harness.key(harness.tenant("acme"), "trader")
    first = _post(harness, key, "order-1", {"symbol": "AAPL", "quantity": 3})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    replays = []
    for _ in range(3):
        again = _post(harness, key, "order-1", {"symbol": "AAPL", "quantity": 3})
        replays.append(again)
        assert again.status_code == 201
        assert again.json() == first.json() == {"id": 1, "symbol": "AAPL", "quantity": 3}
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["content-type"] == "application/json"
        assert "ratelimit-remaining" in again.headers
    assert len(orders.executed) == 1
    # Authenticated once per request (the middleware's principal is reused by the route), so
    # each request, replay or not, uses exactly one unit of the key's rate limit.
    remaining = [int(r.headers["ratelimit-remaining"]) for r in (first, *replays)]
    assert remaining == list(range(remaining[0], remaining[0] - 4, -1))
    # Without a key every POST runs; with a new key it runs again.
    _post(harness, key, None, {"symbol": "AAPL", "quantity": 3})
    _post(harness, key, None, {"symbol": "AAPL", "quantity": 3})
    _post(harness, key, "order-2", {"symbol": "AAPL", "quantity": 3})
    assert len(orders.executed) == 4


def test_same_key_with_a_different_request_is_refused_with_422(
        api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    key = harness.key(harness.tenant("acme"), "trader")
    assert _post(harness, key, "k", {"symbol": "AAPL", "quantity": 3}).status_code == 201
    refused = _post(harness, key, "k", {"symbol": "AAPL", "quantity": 4})
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/idempotency-key-reused")
    other_path = harness.client.post("/api/v1/test/elsewhere", json={"symbol": "AAPL",
                                                                     "quantity": 3},
                                     headers=harness.auth(key, **{"Idempotency-Key": "k"}))
    assert other_path.status_code == 422
    assert len(orders.executed) == 1


def test_keys_belong_to_a_tenant(api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    acme_key = harness.key(harness.tenant("acme"), "trader")
    acme_other_key = harness.key(harness.tenant_id_of(acme_key), "trader")
    globex_key = harness.key(harness.tenant("globex"), "trader")
    body = {"symbol": "AAPL", "quantity": 3}
    assert _post(harness, acme_key, "shared", body).json()["id"] == 1
    # Another tenant with the same key string runs its own request ...
    globex = _post(harness, globex_key, "shared", body)
    assert globex.status_code == 201 and "idempotent-replayed" not in globex.headers
    assert globex.json()["id"] == 2
    # ... while another key of the same tenant replays the tenant's stored result.
    replay = _post(harness, acme_other_key, "shared", body)
    assert replay.headers["idempotent-replayed"] == "true" and replay.json()["id"] == 1
    assert [o["tenant"] for o in orders.executed] == [harness.tenant_id_of(acme_key),
                                                       harness.tenant_id_of(globex_key)]


def test_a_request_in_flight_gets_409_and_runs_once(api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    key = harness.key(harness.tenant("acme"), "trader")
    body = {"symbol": "AAPL", "quantity": 3}
    orders.release.clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, harness, key, "slow", body)
        assert orders.entered.wait(10)
        concurrent = _post(harness, key, "slow", body)
        assert concurrent.status_code == 409
        assert concurrent.json()["type"].endswith("/idempotency-key-in-use")
        assert concurrent.headers["retry-after"] == "1"
        orders.release.set()
        assert first.result(10).status_code == 201
    replay = _post(harness, key, "slow", body)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert len(orders.executed) == 1


def test_a_burst_of_identical_requests_executes_once(api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    key = harness.key(harness.tenant("acme"), "trader")
    body = {"symbol": "MSFT", "quantity": 1}
    start = threading.Barrier(8)

    def fire() -> Any:
        start.wait(10)
        return _post(harness, key, "burst", body)

    # Hold the first execution open long enough for the whole burst to arrive meanwhile.
    orders.release.clear()
    timer = threading.Timer(1.0, orders.release.set)
    timer.start()
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: fire(), range(8)))
    timer.join()
    statuses = sorted(r.status_code for r in responses)
    assert len(orders.executed) == 1
    assert statuses == [201] + [409] * 7, statuses
    fresh = [r for r in responses
             if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(fresh) == 1


def test_failures_that_did_nothing_are_not_stored(api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    acme = harness.tenant("acme")
    viewer, trader = harness.key(acme, "viewer"), harness.key(acme, "trader")
    # 403 (role), 422 (validation) and 5xx release the key: the corrected retry runs.
    assert _post(harness, viewer, "retry-me", {"symbol": "AAPL", "quantity": 1}
                 ).status_code == 403
    assert _post(harness, trader, "retry-me", {"symbol": "AAPL"}).status_code == 422
    assert _post(harness, trader, "retry-me", {"symbol": "BOOM", "quantity": 1}
                 ).status_code == 503
    ok = _post(harness, trader, "retry-me", {"symbol": "AAPL", "quantity": 1})
    assert ok.status_code == 201 and "idempotent-replayed" not in ok.headers
    assert len(orders.executed) == 1
    # A bad API key never reaches the store at all.
    assert _post(harness, trader[:-1] + "!", "retry-me", {"symbol": "AAPL", "quantity": 1}
                 ).status_code == 401


def test_stored_results_expire_after_24_hours(api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    acme = harness.tenant("acme")
    key = harness.key(acme, "trader")
    mine = idempotency_keys.c.tenant_id == acme
    body = {"symbol": "AAPL", "quantity": 3}
    _post(harness, key, "old", body)
    day_ago = datetime.now(UTC) - timedelta(hours=24, minutes=1)
    with engine_of(harness.platform).begin() as conn:
        conn.execute(idempotency_keys.update().where(mine).values(created_at=day_ago))
    rerun = _post(harness, key, "old", {"symbol": "AAPL", "quantity": 4})
    assert rerun.status_code == 201 and rerun.json()["id"] == 2
    assert purge_expired(harness.platform) == 0
    with engine_of(harness.platform).begin() as conn:
        conn.execute(idempotency_keys.update().where(mine).values(created_at=day_ago))
    assert purge_expired(harness.platform) == 1
    assert len(orders.executed) == 2


def test_a_claim_abandoned_by_a_dead_process_is_taken_over(
        api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    acme = harness.tenant("acme")
    key = harness.key(acme, "trader")
    mine = idempotency_keys.c.tenant_id == acme
    body = {"symbol": "AAPL", "quantity": 3}
    orders.release.clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, harness, key, "stuck", body)
        assert orders.entered.wait(10)
        # Pretend the claim was made long ago by a process that has since died.
        long_ago = datetime.now(UTC) - timedelta(minutes=10)
        with engine_of(harness.platform).begin() as conn:
            conn.execute(idempotency_keys.update().where(mine).values(locked_at=long_ago))
        orders.release.set()
        first.result(10)
    assert len(orders.executed) == 1
    with engine_of(harness.platform).begin() as conn:
        conn.execute(idempotency_keys.update().where(mine)
                     .values(state="in_flight", locked_at=long_ago))
    taken = _post(harness, key, "stuck", body)
    assert taken.status_code == 201 and "idempotent-replayed" not in taken.headers
    assert len(orders.executed) == 2


def test_invalid_keys_are_refused_with_400(api: tuple[ApiHarness, _Orders]) -> None:
    harness, orders = api
    acme = harness.tenant("acme")
    key = harness.key(acme, "trader")
    for bad in ("x" * 256, "\t"):
        response = _post(harness, key, bad, {"symbol": "AAPL", "quantity": 3})
        assert response.status_code == 400, bad
        assert response.json()["type"].endswith("/idempotency-key-invalid")
    assert orders.executed == []
    with engine_of(harness.platform).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(idempotency_keys)
                            .where(idempotency_keys.c.tenant_id == acme)).scalar() == 0


def test_openapi_documents_the_header_on_posts(api: tuple[ApiHarness, _Orders]) -> None:
    harness, _ = api
    harness.app.openapi_schema = None
    schema = harness.client.get("/openapi.json").json()
    post = schema["paths"][ORDERS]["post"]
    names = [p["name"] for p in post["parameters"]]
    assert "Idempotency-Key" in names and "409" in post["responses"]
    assert "parameters" not in schema["paths"]["/api/v1/me"]["get"]
