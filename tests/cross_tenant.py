"""Cross-tenant checks for every tenant-owned resource type.

Each resource type registers a ``TenantResource``: how to create one for a tenant, how to
read its stored state, and every request that reaches one by id. ``assert_tenant_isolation``
makes a resource for a victim tenant and one for the attacker, then, with an admin key of the
attacker, expects every probe on the victim's resource to answer 404 (never 403: that would
confirm the id exists), the victim's listing to stay invisible, the victim's stored state to
stay unchanged, and the same probe on the attacker's own resource to work (so a 404 is not
just a wrong path). Add new resource types to ``RESOURCES``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from signalfactory.adapters.storage.tables import (
    api_keys,
    strategies,
    strategy_versions,
)
from signalfactory.adapters.storage.unit_of_work import sql_database
from tests.api_harness import ApiHarness
from tests.helpers import engine_of


@dataclass(frozen=True)
class Probe:
    method: str
    path: str  # "{id}" is replaced by the resource id
    body: Any = None  # strings inside may contain "{id}" as well
    # 404 for reads and writes of a foreign id. A write that names a resource by a name the
    # caller may use itself (POST /strategies {"name": ...}) creates the caller's own: 2xx,
    # and the victim's state must still be unchanged.
    expect: int = 404

    def render(self, resource_id: str) -> tuple[str, str, Any]:
        return self.method, self.path.replace("{id}", resource_id), _fill(self.body,
                                                                          resource_id)


def _fill(value: Any, resource_id: str) -> Any:
    if isinstance(value, str):
        return value.replace("{id}", resource_id)
    if isinstance(value, dict):
        return {k: _fill(v, resource_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, resource_id) for v in value]
    return value


@dataclass(frozen=True)
class TenantResource:
    kind: str
    create: Callable[[ApiHarness, int], str]  # returns the new resource's id
    # (harness, owner tenant id, resource id) -> what must not change under foreign requests
    state: Callable[[ApiHarness, int, str], Any]
    probes: tuple[Probe, ...] = ()
    list_path: str | None = None
    list_ids: Callable[[Any], set[str]] = field(
        default=lambda body: {str(item["id"]) for item in body["items"]})
    role: str = "admin"


def assert_tenant_isolation(api: ApiHarness, resource: TenantResource) -> None:
    # Enterprise tenants: quotas are not what is tested here.
    victim, attacker = api.tenant(tier="enterprise"), api.tenant(tier="enterprise")
    key = api.key(attacker, resource.role)
    headers = api.auth(key)
    victim_id = resource.create(api, victim)
    before = resource.state(api, victim, victim_id)
    if resource.list_path is not None:
        own_id = resource.create(api, attacker)
        listing = api.client.get(resource.list_path, headers=headers)
        assert listing.status_code == 200, listing.text
        ids = resource.list_ids(listing.json())
        assert own_id in ids and victim_id not in ids, (resource.kind, ids)
    for probe in resource.probes:
        method, path, body = probe.render(victim_id)
        response = api.client.request(method, path, json=body, headers=headers)
        if probe.expect == 404:
            assert response.status_code == 404, (resource.kind, method, path, response.text)
        else:
            assert response.status_code < 300, (resource.kind, method, path, response.text)
        assert resource.state(api, victim, victim_id) == before, (resource.kind, method, path)
        own_id = resource.create(api, attacker)
        method, path, body = probe.render(own_id)
        own = api.client.request(method, path, json=body, headers=headers)
        assert own.status_code < 300, (resource.kind, "own", method, path, own.text)


# -- resource types ------------------------------------------------------------------------

def _create_api_key(api: ApiHarness, tenant_id: int) -> str:
    return str(api.key_id(api.key(tenant_id, "viewer")))


def _api_key_state(api: ApiHarness, _tenant_id: int, key_id: str) -> Any:
    with engine_of(api.platform).connect() as conn:
        row = conn.execute(sa.select(api_keys.c.tenant_id, api_keys.c.revoked_at,
                                     api_keys.c.role).where(api_keys.c.id == int(key_id))
                           ).first()
    return tuple(row) if row is not None else None


API_KEYS = TenantResource(
    kind="api_keys", create=_create_api_key, state=_api_key_state,
    list_path="/api/v1/keys", probes=(Probe("DELETE", "/api/v1/keys/{id}"),))



RULE = "entry: close > sma(close, 5)\nexit: close < sma(close, 5)"


def _create_strategy(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.services.strategies.catalog import add_strategy

    name = f"s_{uuid.uuid4().hex[:10]}"
    with api.platform.database.write() as uow:
        add_strategy(uow, tenant_id, name, rule_text=RULE)
    return name


def _strategy_state(api: ApiHarness, tenant_id: int, name: str) -> Any:
    with engine_of(api.platform).connect() as conn:
        rows = conn.execute(
            sa.select(strategies.c.tenant_id, strategies.c.description,
                      sa.func.count(strategy_versions.c.id))
            .join(strategy_versions, strategy_versions.c.strategy_id == strategies.c.id)
            .where(strategies.c.name == name, strategies.c.tenant_id == tenant_id)
            .group_by(strategies.c.id, strategies.c.tenant_id, strategies.c.description)
            .order_by(strategies.c.id)).all()
    return [tuple(r) for r in rows]


STRATEGIES = TenantResource(
    kind="strategies", create=_create_strategy, state=_strategy_state,
    list_path="/api/v1/strategies",
    list_ids=lambda body: {item["name"] for item in body["items"] if not item["builtin"]},
    probes=(Probe("GET", "/api/v1/strategies/{id}"),
            Probe("GET", "/api/v1/strategies/{id}?version=1"),
            Probe("POST", "/api/v1/strategies",
                  {"name": "{id}", "rule": "entry: close > 1\nexit: close < 1"}, expect=201)))


def _create_job(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.domain.jobs import NewJob

    # Far in the future, so no runner picks it up while the probes run.
    later = datetime.now(UTC) + timedelta(days=30)
    with api.platform.database.write() as uow:
        job, _ = uow.jobs.insert(NewJob(kind="collect", payload={}, tenant_id=tenant_id,
                                        max_attempts=1, run_after=later), datetime.now(UTC))
    return str(job.id)


def _job_state(api: ApiHarness, _tenant_id: int, job_id: str) -> Any:
    with api.platform.database.read(primary=True) as uow:
        job = uow.jobs.get(job_id)
    return None if job is None else (job.tenant_id, job.status, job.cancel_requested)


JOBS = TenantResource(
    kind="jobs", create=_create_job, state=_job_state, list_path="/api/v1/jobs",
    probes=(Probe("GET", "/api/v1/jobs/{id}"), Probe("POST", "/api/v1/jobs/{id}/cancel")))

def _create_scan(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.services.marketdata.sample import store_sample
    from signalfactory.services.scans.scan import ScanRequest, run_scan

    with engine_of(api.platform).connect() as conn:
        empty = not sql_database(api.platform.database).bar_store.timeframes(conn)
    if empty:
        store_sample(api.platform, symbols=3, bars=60, seed=1)
    scan = run_scan(api.platform, ScanRequest(tenant_id=tenant_id, rule="entry: close > 0"))
    return str(scan.id)


def _scan_state(api: ApiHarness, _tenant_id: int, scan_id: str) -> Any:
    from signalfactory.adapters.storage.tables import scan_results, scans

    with engine_of(api.platform).connect() as conn:
        return (conn.execute(sa.select(scans).where(scans.c.id == int(scan_id))).all(),
                conn.execute(sa.select(sa.func.count()).select_from(scan_results)
                             .where(scan_results.c.scan_id == int(scan_id))).scalar())


SCANS = TenantResource(kind="scans", create=_create_scan, state=_scan_state,
                       probes=(Probe("GET", "/api/v1/scans/{id}"),))



def _create_backtest(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.services.backtests.options import BacktestRequest
    from signalfactory.services.backtests.run import run_backtest
    from signalfactory.services.marketdata.sample import store_sample

    with engine_of(api.platform).connect() as conn:
        empty = not sql_database(api.platform.database).bar_store.timeframes(conn)
    if empty:
        store_sample(api.platform, symbols=3, bars=60, seed=1)
    result = run_backtest(api.platform, BacktestRequest(
        tenant_id=tenant_id, rule="entry: close > sma(close, 5)\nexit: close < sma(close, 5)",
        symbols=("SAAA",)))
    return result.id


def _backtest_state(api: ApiHarness, _tenant_id: int, backtest_id: str) -> Any:
    from signalfactory.adapters.storage.tables import backtest_trades, backtests

    with engine_of(api.platform).connect() as conn:
        return (conn.execute(sa.select(backtests).where(backtests.c.id == backtest_id)).all(),
                conn.execute(sa.select(sa.func.count()).select_from(backtest_trades)
                             .where(backtest_trades.c.backtest_id == backtest_id)).scalar())


BACKTESTS = TenantResource(
    kind="backtests", create=_create_backtest, state=_backtest_state,
    list_path="/api/v1/backtests",
    probes=(Probe("GET", "/api/v1/backtests/{id}"),
            Probe("GET", "/api/v1/backtests/{id}/report")))

def _create_subscription(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.services.streaming.subscriptions import create_subscription

    item = create_subscription(api.platform, tenant_id, f"sub-{uuid.uuid4().hex[:8]}",
                               symbols=["AAA"], min_score=0.5)
    return str(item.id)


def _subscription_state(api: ApiHarness, _tenant_id: int, sub_id: str) -> Any:
    from signalfactory.adapters.storage.tables import subscriptions

    with engine_of(api.platform).connect() as conn:
        row = conn.execute(sa.select(subscriptions).where(subscriptions.c.id == int(sub_id))
                           ).first()
    return tuple(row) if row is not None else None


SUBSCRIPTIONS = TenantResource(
    kind="subscriptions", create=_create_subscription, state=_subscription_state,
    list_path="/api/v1/subscriptions",
    probes=(Probe("GET", "/api/v1/subscriptions/{id}"),
            Probe("GET", "/api/v1/subscriptions/{id}/delivery"),
            Probe("PUT", "/api/v1/subscriptions/{id}/delivery",
                  {"timezone": "Europe/Paris", "max_per_hour": 3}),
            Probe("DELETE", "/api/v1/subscriptions/{id}")))


def _create_endpoint(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.services.delivery.endpoints import create_endpoint

    created = create_endpoint(api.platform, tenant_id, name=f"e-{uuid.uuid4().hex[:8]}",
                              kind="webhook", target="https://93.184.215.14/in")
    return str(created.endpoint.id)


def _endpoint_state(api: ApiHarness, _tenant_id: int, endpoint_id: str) -> Any:
    from signalfactory.adapters.storage.tables import endpoints

    with engine_of(api.platform).connect() as conn:
        row = conn.execute(sa.select(endpoints).where(endpoints.c.id == int(endpoint_id))
                           ).first()
    return tuple(row) if row is not None else None


ENDPOINTS = TenantResource(
    kind="endpoints", create=_create_endpoint, state=_endpoint_state,
    list_path="/api/v1/endpoints", role="trader",
    probes=(Probe("GET", "/api/v1/endpoints/{id}"),
            Probe("POST", "/api/v1/endpoints/{id}/rotate-secret"),
            Probe("POST", "/api/v1/endpoints/{id}/disable"),
            Probe("POST", "/api/v1/endpoints/{id}/enable"),
            Probe("PATCH", "/api/v1/endpoints/{id}", {"enabled": False}),
            Probe("POST", "/api/v1/endpoints/{id}/test"),
            Probe("GET", "/api/v1/deliveries?endpoint={id}", expect=200),
            Probe("POST", "/api/v1/deliveries/dlq/replay", {"endpoint_id": "{id}"}),
            Probe("DELETE", "/api/v1/endpoints/{id}")))


def _create_campaign(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.services.delivery.campaign_records import create_campaign

    with api.platform.database.write() as uow:
        return str(create_campaign(uow, tenant_id, "Hello", "A message").id)


def _campaign_state(api: ApiHarness, _tenant_id: int, campaign_id: str) -> Any:
    from signalfactory.adapters.storage.tables import campaigns

    with engine_of(api.platform).connect() as conn:
        row = conn.execute(sa.select(campaigns).where(campaigns.c.id == int(campaign_id))
                           ).first()
    return tuple(row) if row is not None else None


CAMPAIGNS = TenantResource(
    kind="campaigns", create=_create_campaign, state=_campaign_state,
    list_path="/api/v1/campaigns", probes=(Probe("GET", "/api/v1/campaigns/{id}"),))



def _create_dead_delivery(api: ApiHarness, tenant_id: int) -> str:
    from signalfactory.domain.delivery import DEAD, NewDelivery
    from signalfactory.domain.message_ids import new_message_id

    endpoint_id = int(_create_endpoint(api, tenant_id))
    row = NewDelivery(id=new_message_id(), tenant_id=tenant_id, endpoint_id=endpoint_id,
                      payload={"type": "endpoint.test"}, status=DEAD)
    with api.platform.database.write() as uow:
        uow.deliveries.enqueue([row])
    return row.id


def _delivery_state(api: ApiHarness, _tenant_id: int, delivery_id: str) -> Any:
    from signalfactory.adapters.storage.tables import deliveries

    with engine_of(api.platform).connect() as conn:
        row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first()
    return tuple(row) if row is not None else None


DELIVERIES = TenantResource(
    kind="deliveries", create=_create_dead_delivery, state=_delivery_state,
    list_path="/api/v1/deliveries/dlq", role="trader",
    probes=(Probe("GET", "/api/v1/deliveries/{id}"),
            Probe("POST", "/api/v1/deliveries/dlq/replay", {"ids": ["{id}"]})))

RESOURCES: list[TenantResource] = [API_KEYS, STRATEGIES, SCANS, JOBS, BACKTESTS, SUBSCRIPTIONS,
                                   ENDPOINTS, CAMPAIGNS, DELIVERIES]
