"""API keys over HTTP: 401s, checksum refusal before any lookup, roles, last use; both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import Body
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from signalfactory.adapters.storage.api_keys import SqlAccountRepository
from signalfactory.adapters.storage.tables import api_keys
from signalfactory.api.auth import AdminDep, PrincipalDep, TraderDep
from signalfactory.api.schemas import RequestModel
from signalfactory.domain.api_keys import PREFIX_LENGTH, generate_key
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of

INSTRUMENTS = "/api/v1/instruments"


shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture
def api(shared_platform: Any) -> Iterator[ApiHarness]:
    with ApiHarness(shared_platform) as harness:
        yield harness


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def test_requests_without_a_valid_key_get_401(api: ApiHarness) -> None:
    acme = api.tenant("acme")
    valid = api.key(acme, "viewer")
    other = generate_key().secret  # well formed, never stored
    cases: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {valid}"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {valid[:-1]}"},
        {"X-API-Key": valid[:-1] + ("a" if valid[-1] != "a" else "b")},
        {"Authorization": f"Bearer {other}"},
    ]
    def refused(reason: str) -> float:
        return REGISTRY.get_sample_value("signalfactory_api_refusals_total",
                                         {"reason": reason}) or 0.0

    def by_key(tenant: str, key: str) -> float:
        return REGISTRY.get_sample_value("signalfactory_api_refusals_by_key_total",
                                         {"tenant": tenant, "key": key}) or 0.0

    before = {r: refused(r) for r in ("missing_key", "malformed_key", "unknown_key")}
    anonymous_before = by_key("-", "-")
    for headers in cases:
        body = _problem(api.client.get(INSTRUMENTS, headers=headers), 401)
        assert body["type"].endswith("/unauthorized"), headers
        assert valid not in body["detail"]
    assert {r: refused(r) - before[r] for r in before} == {
        "missing_key": 1, "malformed_key": 5, "unknown_key": 1}
    # No known key: counted under "-", never under a prefix the caller made up.
    assert by_key("-", "-") - anonymous_before == len(cases)
    response = api.client.get(INSTRUMENTS)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in response.json()["detail"]
    # Both ways of sending the key work.
    assert api.client.get(INSTRUMENTS, headers=api.auth(valid)).status_code == 200
    assert api.client.get(INSTRUMENTS, headers={"X-API-Key": valid}).status_code == 200
    assert api.client.get(INSTRUMENTS, headers={"authorization": f"bearer {valid}"}
                          ).status_code == 200


def test_a_revoked_key_gets_401_at_once(api: ApiHarness) -> None:
    acme = api.tenant("acme")
    key = api.key(acme, "viewer")
    assert api.client.get(INSTRUMENTS, headers=api.auth(key)).status_code == 200
    with api.platform.database.write() as uow:
        assert uow.accounts.revoke_key(api.key_id(key), datetime.now(UTC))
    body = _problem(api.client.get(INSTRUMENTS, headers=api.auth(key)), 401)
    assert "revoked" in body["detail"] and key[:16] in body["detail"]


def test_a_mistyped_key_is_refused_before_any_database_query(
        api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = api.tenant("acme")
    key = api.key(acme, "viewer")
    typo = key[:20] + ("x" if key[20] != "x" else "y") + key[21:]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The stream hub's relay polls the signals table in the background on its own
        # schedule; only what the request path runs counts here.
        if "signals" not in statement:
            statements.append(statement)

    lookups: list[str] = []
    real_find = SqlAccountRepository.key_by_digest

    def spy(repo: Any, key_digest: str) -> Any:
        lookups.append(key_digest)
        return real_find(repo, key_digest)

    monkeypatch.setattr(SqlAccountRepository, "key_by_digest", spy)
    sa.event.listen(engine_of(api.platform), "before_cursor_execute", count)
    try:
        _problem(api.client.get(INSTRUMENTS, headers=api.auth(typo)), 401)
        assert statements == [] and lookups == []
        # The same path with the right key does query: the spy and the counter do see lookups.
        assert api.client.get(INSTRUMENTS, headers=api.auth(key)).status_code == 200
        assert lookups and any("api_keys" in s for s in statements)
    finally:
        sa.event.remove(engine_of(api.platform), "before_cursor_execute", count)


def test_roles_are_enforced_with_403(api: ApiHarness) -> None:
    @api.app.post("/api/v1/test/trade", status_code=201)
    def trade(principal: TraderDep) -> dict[str, str]:
        return {"role": principal.role}

    @api.app.get("/api/v1/test/admin")
    def admin_only(principal: AdminDep) -> dict[str, str]:
        return {"role": principal.role}

    acme = api.tenant("acme")
    viewer, trader, admin = (api.key(acme, r) for r in ("viewer", "trader", "admin"))

    def refused_by(key: str) -> float:
        """Refusals counted under the key's prefix, with its tenant's name."""
        return sum(sample.value for metric in REGISTRY.collect() for sample in metric.samples
                   if sample.name == "signalfactory_api_refusals_by_key_total"
                   and sample.labels["key"] == key[:PREFIX_LENGTH]
                   and sample.labels["tenant"].startswith("acme"))

    refused_before = refused_by(viewer)
    body = _problem(api.client.post("/api/v1/test/trade", headers=api.auth(viewer)), 403)
    assert body["required_role"] == "trader" and body["role"] == "viewer"
    assert "trader role" in body["detail"]
    assert refused_by(viewer) == refused_before + 1
    assert api.client.post("/api/v1/test/trade", headers=api.auth(trader)).status_code == 201
    assert api.client.post("/api/v1/test/trade", headers=api.auth(admin)).status_code == 201
    _problem(api.client.get("/api/v1/test/admin", headers=api.auth(trader)), 403)
    _problem(api.client.get("/api/v1/keys", headers=api.auth(trader)), 403)
    assert api.client.get("/api/v1/test/admin", headers=api.auth(admin)).json() == {
        "role": "admin"}
    # A 403 is still an authenticated response: no WWW-Authenticate challenge.
    assert "www-authenticate" not in api.client.get(
        "/api/v1/keys", headers=api.auth(viewer)).headers


def test_me_reports_tenant_tier_role_and_quotas(api: ApiHarness) -> None:
    acme = api.tenant("acme", tier="premium")
    key = api.key(acme, "trader")
    me = api.client.get("/api/v1/me", headers=api.auth(key)).json()
    assert me["tenant"].startswith("acme-") and me["tier"] == "premium" and me["role"] == "trader"
    assert me["key_prefix"] == key[:16]
    assert me["quotas"]["strategies"] == {"limit": 50, "used": 0}
    assert me["quotas"]["scans_today"] == {"limit": 500, "used": 0}


def test_last_use_is_recorded_at_most_once_a_minute(api: ApiHarness) -> None:
    acme = api.tenant("acme")
    key = api.key(acme, "viewer")
    key_id = api.key_id(key)

    def last_used() -> datetime | None:
        with engine_of(api.platform).connect() as conn:
            value = conn.execute(sa.select(api_keys.c.last_used_at)
                                 .where(api_keys.c.id == key_id)).scalar()
        if value is None:
            return None
        stamp: datetime = value
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)

    assert last_used() is None
    api.client.get(INSTRUMENTS, headers=api.auth(key))
    first = last_used()
    assert first is not None and abs(datetime.now(UTC) - first) < timedelta(minutes=1)
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            writes.append(statement)

    sa.event.listen(engine_of(api.platform), "before_cursor_execute", count)
    try:
        for _ in range(5):
            api.client.get(INSTRUMENTS, headers=api.auth(key))
        assert writes == [] and last_used() == first
        # Once the recorded use is older than the resolution, the next request updates it.
        old = datetime.now(UTC) - timedelta(minutes=5)
        with engine_of(api.platform).begin() as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id)
                         .values(last_used_at=old))
        writes.clear()
        api.client.get(INSTRUMENTS, headers=api.auth(key))
        assert len(writes) == 1
        refreshed = last_used()
        assert refreshed is not None and refreshed > old + timedelta(minutes=4)
    finally:
        sa.event.remove(engine_of(api.platform), "before_cursor_execute", count)


def test_probes_and_metrics_stay_open(api: ApiHarness) -> None:
    assert api.client.get("/livez").status_code == 200
    assert api.client.get("/readyz").status_code == 200
    assert api.client.get("/metrics").status_code == 200


def test_openapi_documents_keys_and_refusals(api: ApiHarness) -> None:
    schema = api.client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    get_instruments = schema["paths"][INSTRUMENTS]["get"]
    assert get_instruments["security"]
    assert {"401", "403", "429"} <= set(get_instruments["responses"])
    assert "security" not in schema["paths"]["/livez"]["get"]
    # Every error answer is documented as what the handlers send: problem+json.
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    expected = "ValidationProblem" if status == "422" else "Problem"
                    assert response["content"] == {"application/problem+json": {
                        "schema": {"$ref": f"#/components/schemas/{expected}"}}}, (
                        path, method, status)
            if "requestBody" in operation:
                assert "413" in operation["responses"], (path, method)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


class _Order(RequestModel):
    symbol: str
    quantity: int


def test_unknown_fields_are_refused_and_problems_have_one_shape(api: ApiHarness) -> None:
    @api.app.post("/api/v1/test/orders", status_code=201)
    def order(principal: PrincipalDep, body: Annotated[_Order, Body()]) -> dict[str, Any]:
        return body.model_dump()

    key = api.key(api.tenant("acme"), "trader")
    ok = api.client.post("/api/v1/test/orders", headers=api.auth(key),
                         json={"symbol": "AAPL", "quantity": 3})
    assert ok.status_code == 201 and ok.json() == {"symbol": "AAPL", "quantity": 3}
    body = _problem(api.client.post("/api/v1/test/orders", headers=api.auth(key),
                                    json={"symbol": "AAPL", "quantity": 3, "qty": 4}), 422)
    assert "qty" in body["detail"] and body["errors"][0]["type"] == "extra_forbidden"
    big = "x" * (1 << 20)
    body = _problem(api.client.post("/api/v1/test/orders", headers=api.auth(key),
                                    json={"symbol": big, "quantity": 1}), 413)
    assert "bytes" in body["detail"]
    body = _problem(api.client.get("/api/v1/nowhere", headers=api.auth(key)), 404)
    assert body["title"] == "Not Found"


def test_unexpected_errors_are_problems_too(api: ApiHarness) -> None:
    @api.app.get("/api/v1/test/crash")
    def crash(principal: PrincipalDep) -> None:
        raise RuntimeError("boom")

    key = api.key(api.tenant("acme"), "viewer")
    with TestClient(api.app, raise_server_exceptions=False) as client:
        body = _problem(client.get("/api/v1/test/crash", headers=api.auth(key)), 500)
        assert "boom" not in body["detail"]
        _problem(client.delete(INSTRUMENTS, headers=api.auth(key)), 405)

