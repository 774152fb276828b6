"""Tier quotas: 403 for a full count quota, 429 until UTC midnight for a used daily quota."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import Body

from signalfactory.adapters.storage.tables import strategies, usage_counters
from signalfactory.api.auth import Principal, TraderDep
from signalfactory.api.problems import quota_problem
from signalfactory.api.schemas import RequestModel
from signalfactory.domain.accounts import QuotaExceededError
from signalfactory.domain.errors import BadInputError
from signalfactory.services.accounts.quotas import (
    TIER_QUOTAS,
    enforce_quota,
    seconds_until_utc_midnight,
    tier_table,
)
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of


class _NewStrategy(RequestModel):
    name: str


class _NewScan(RequestModel):
    fail: bool = False


shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture
def api(shared_platform: Any) -> Iterator[ApiHarness]:
    platform = shared_platform
    with ApiHarness(platform) as harness:
        @harness.app.post("/api/v1/test/strategies", status_code=201)
        def create_strategy(principal: TraderDep,
                            body: Annotated[_NewStrategy, Body()]) -> dict[str, int]:
            with platform.database.write() as uow:
                enforce_quota(uow, principal, "strategies")
                new_id = uow.connection.execute(strategies.insert().values(
                    tenant_id=principal.tenant_id, name=body.name, kind="rule")
                    .returning(strategies.c.id)).scalar_one()
            return {"id": new_id}

        @harness.app.post("/api/v1/test/scans", status_code=202)
        def create_scan(principal: TraderDep,
                        body: Annotated[_NewScan, Body()]) -> dict[str, str]:
            with platform.database.write() as uow:
                enforce_quota(uow, principal, "scans")
                if body.fail:  # bad input found after the quota check: rolls it back
                    raise BadInputError("the universe is empty")
            return {"status": "queued"}

        yield harness


def _principal(tenant_id: int, tier: str) -> Principal:
    return Principal(tenant_id=tenant_id, tenant_name="t", tier=tier, role="trader",
                     key_id=None, key_prefix=None)


def test_count_quota_is_a_clear_403_and_frees_up_on_delete(api: ApiHarness) -> None:
    acme = api.tenant("acme", tier="free")
    key = api.key(acme, "trader")
    # Built-in strategies the tenant holds do not count against its quota.
    with engine_of(api.platform).begin() as conn:
        conn.execute(strategies.insert().values(tenant_id=acme, name="builtin", kind="rule",
                                                builtin=True))
    made = [api.client.post("/api/v1/test/strategies", headers=api.auth(key),
                            json={"name": f"s{i}"}) for i in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201]
    refused = api.client.post("/api/v1/test/strategies", headers=api.auth(key),
                              json={"name": "s3"})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["detail"] == "free tier allows 3 strategies; delete one or upgrade"
    assert (body["quota"], body["limit"], body["used"], body["tier"]) == (
        "strategies", 3, 3, "free")
    assert "retry-after" not in refused.headers
    # Another tenant on the same tier has its own room.
    other = api.key(api.tenant("globex", tier="free"), "trader")
    assert api.client.post("/api/v1/test/strategies", headers=api.auth(other),
                           json={"name": "s0"}).status_code == 201
    with engine_of(api.platform).begin() as conn:
        conn.execute(strategies.delete().where(strategies.c.id == made[0].json()["id"]))
    assert api.client.post("/api/v1/test/strategies", headers=api.auth(key),
                           json={"name": "s3"}).status_code == 201


def test_daily_quota_is_a_429_until_utc_midnight(api: ApiHarness) -> None:
    key = api.key(api.tenant("acme", tier="free"), "trader")
    allowed = TIER_QUOTAS["free"].scans_per_day
    assert allowed == 20
    statuses = [api.client.post("/api/v1/test/scans", headers=api.auth(key), json={}
                                ).status_code for _ in range(allowed)]
    assert statuses == [202] * allowed
    refused = api.client.post("/api/v1/test/scans", headers=api.auth(key), json={})
    assert refused.status_code == 429
    body = refused.json()
    assert body["quota"] == "scans" and body["limit"] == 20 and body["used"] == 20
    assert "free tier allows 20 scans per day" in body["detail"]
    retry_after = int(refused.headers["retry-after"])
    assert abs(retry_after - seconds_until_utc_midnight()) <= 5
    me = api.client.get("/api/v1/me", headers=api.auth(key)).json()
    assert me["quotas"]["scans_today"] == {"limit": 20, "used": 20}


def test_a_failed_request_does_not_use_daily_quota(api: ApiHarness) -> None:
    acme = api.tenant("acme", tier="free")
    key = api.key(acme, "trader")
    for _ in range(25):
        response = api.client.post("/api/v1/test/scans", headers=api.auth(key),
                                   json={"fail": True})
        assert response.status_code == 422
    with engine_of(api.platform).connect() as conn:
        used = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(usage_counters.c.count), 0))
                            .where(usage_counters.c.tenant_id == acme)).scalar()
    assert used == 0
    assert api.client.post("/api/v1/test/scans", headers=api.auth(key), json={}
                           ).status_code == 202


def test_daily_quota_resets_at_utc_midnight_and_counts_per_kind(api: ApiHarness) -> None:
    acme = api.tenant("acme", tier="free")
    principal = _principal(acme, "free")
    today = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)
    with api.platform.database.write() as uow:
        for _ in range(10):
            enforce_quota(uow, principal, "backtests", now=today)
    with api.platform.database.write() as uow, pytest.raises(QuotaExceededError) as caught:
        enforce_quota(uow, principal, "backtests", now=today)
    refused = quota_problem(caught.value)
    assert refused.status_code == 429 and refused.headers == {"Retry-After": "30"}
    with api.platform.database.write() as uow:
        enforce_quota(uow, principal, "scans", now=today)  # another kind: its own count
        enforce_quota(uow, principal, "backtests", now=today + timedelta(seconds=31))


def test_enterprise_is_unlimited_and_premium_has_more_room(api: ApiHarness) -> None:
    big = api.tenant("bigco", tier="enterprise")
    with api.platform.database.write() as uow:
        for _ in range(300):
            enforce_quota(uow, _principal(big, "enterprise"), "scans")
        enforce_quota(uow, _principal(big, "enterprise"), "strategies", current=10_000)
    mid = _principal(api.tenant("midco", tier="premium"), "premium")
    with api.platform.database.write() as uow:
        enforce_quota(uow, mid, "strategies", current=49)
        with pytest.raises(QuotaExceededError) as caught:
            enforce_quota(uow, mid, "strategies", current=50)
    refused = quota_problem(caught.value)
    assert refused.status_code == 403
    assert "premium tier allows 50 strategies" in str(refused.detail)


def test_subscriptions_quota_and_unknown_kinds(api: ApiHarness) -> None:
    free = _principal(api.tenant("acme", tier="free"), "free")
    with api.platform.database.write() as uow:
        enforce_quota(uow, free, "subscriptions", current=1)
        with pytest.raises(QuotaExceededError) as refused:
            enforce_quota(uow, free, "subscriptions", current=2)
        assert quota_problem(refused.value).detail == ("free tier allows 2 subscriptions; "
                                                       "delete one or upgrade")
        with pytest.raises(ValueError, match="unknown quota kind"):
            enforce_quota(uow, free, "widgets")


def test_seconds_until_utc_midnight() -> None:
    assert seconds_until_utc_midnight(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)) == 86400
    assert seconds_until_utc_midnight(datetime(2026, 1, 1, 23, 59, 59, 500_000,
                                               tzinfo=UTC)) == 1
    assert tier_table()["free"] == {"strategies": 3, "subscriptions": 2, "scans_per_day": 20,
                                    "backtests_per_day": 10}
