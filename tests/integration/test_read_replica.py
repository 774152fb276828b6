"""SIGNALFACTORY_DATABASE_READ_URL: reads go to the replica, writes to the primary, and a
replica that is down makes reads fail over to the primary while /readyz reports it.

The "replica" is a second, separately migrated database holding different marker rows, so
every answer shows which database it came from (nothing replicates between them). The
outage is made with a TCP proxy in front of the PostgreSQL replica that the test cuts.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from signalfactory.adapters.cache import HotCache, MemoryCache
from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.db import create_db_engine
from signalfactory.adapters.storage.read_replica import REPLICA_UP, create_read_engine
from signalfactory.adapters.storage.tables import instruments, scans, strategies, tenants
from signalfactory.adapters.storage.unit_of_work import SqlUnitOfWork, sql_database
from signalfactory.api import create_app
from signalfactory.bootstrap import build_platform
from signalfactory.domain.errors import NotFoundError
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.scans.scan import get_scan
from signalfactory.services.strategies.catalog import add_strategy
from signalfactory.settings import Settings
from tests.api_harness import ApiHarness
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database
from tests.helpers import engine_of
from tests.tcp_proxy import TcpProxy

MARKER_RULE = "entry: close > sma(close, 3)\nexit: close < sma(close, 3)"


@dataclass
class Pair:
    platform: Platform
    replica: sa.Engine  # a direct engine on the replica, to plant and inspect rows
    api: ApiHarness
    key: str
    tenant_id: int
    proxy: TcpProxy | None


def _urls(backend: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'primary.db'}", f"sqlite:///{tmp_path / 'replica.db'}"
        return
    primary, replica = create_pg_database(), create_pg_database()
    try:
        yield primary, replica
    finally:
        drop_pg_database(primary)
        drop_pg_database(replica)


@pytest.fixture
def pair(backend: str, tmp_path: Path) -> Iterator[Pair]:
    for primary_url, replica_url in _urls(backend, tmp_path):
        replica = create_db_engine(replica_url)
        migrate.upgrade(replica)
        proxy = None
        read_url = replica_url
        if backend == "postgres":
            # Reads reach the replica through a proxy the outage test can cut.
            target = sa.engine.make_url(PG_ADMIN_URL)
            proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
            read_url = sa.engine.make_url(replica_url).set(
                host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        platform = build_platform(Settings(home=tmp_path / "home", database_url=primary_url,
                                           bar_store="columnar"), migrate_db=True)
        # Short retry so the recovery test does not wait the default 10 s.
        read_engine, state = create_read_engine(read_url, engine_of(platform), retry_seconds=0.3)
        from signalfactory.adapters.storage.read_replica import replica_probe
        from signalfactory.adapters.storage.unit_of_work import SqlDatabase

        platform.probes["read_replica"] = replica_probe(read_engine, state)
        # Caching off: every GET below must reach a database.
        primary = sql_database(platform.database)
        platform = dataclasses.replace(
            platform, database=SqlDatabase(primary.engine, primary.bar_store, read_engine),
            cache=HotCache(MemoryCache(), ttl=0))
        try:
            store_sample(platform, symbols=4, bars=120, seed=3)
            with ApiHarness(platform) as api:
                tenant_id = api.tenant("replica")
                key = api.key(tenant_id, "admin")
                _plant_markers(replica, platform, tenant_id)
                yield Pair(platform, replica, api, key, tenant_id, proxy)
        finally:
            platform.close()
            replica.dispose()
            if proxy is not None:
                proxy.stop()


def _plant_markers(replica: sa.Engine, platform: Platform, tenant_id: int) -> None:
    """Rows only the replica has: an instrument, the tenant with a strategy, and a scan."""
    with engine_of(platform).connect() as conn:
        tenant = conn.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).one()
    with replica.begin() as conn:
        conn.execute(instruments.insert().values(symbol="ONLY_ON_REPLICA", tags={}))
        conn.execute(tenants.insert().values(id=tenant.id, name=tenant.name, tier=tenant.tier))
        add_strategy(SqlUnitOfWork(conn, sql_database(platform.database).bar_store), tenant_id,
                     "replica_marker", rule_text=MARKER_RULE)
        conn.execute(scans.insert().values(id=4242, tenant_id=tenant_id, timeframe="1d",
                                           status="succeeded", instruments=0, matches=0,
                                           universe="replica-marker"))


def _symbols(pair: Pair) -> set[str]:
    response = pair.api.client.get("/api/v1/instruments", headers=pair.api.auth(pair.key))
    assert response.status_code == 200, response.text
    return {i["symbol"] for i in response.json()["items"]}


def test_reads_come_from_the_replica_and_writes_go_to_the_primary(pair: Pair) -> None:
    api, auth = pair.api, pair.api.auth(pair.key)
    assert _symbols(pair) == {"ONLY_ON_REPLICA"}

    names = {s["name"] for s in api.client.get("/api/v1/strategies", headers=auth).json()[
        "items"]}
    assert names == {"replica_marker"}, "built-ins are stored on the primary only"
    assert api.client.get("/api/v1/strategies/replica_marker",
                          headers=auth).status_code == 200
    scan = api.client.get("/api/v1/scans/4242", headers=auth)
    assert scan.status_code == 200 and scan.json()["universe"] == "replica-marker"
    assert api.client.get("/api/v1/keys", headers=auth).json()["count"] == 0

    created = api.client.post("/api/v1/strategies", headers=auth, json={
        "name": "written_here", "rule": MARKER_RULE})
    assert created.status_code == 201, created.text
    # A scan reads its bars from the replica, which has none here.
    ran = api.client.post("/api/v1/scans", headers=auth, json={"rule": MARKER_RULE})
    assert ran.status_code == 404 and "stored: none" in ran.json()["detail"], ran.text

    def stored(engine: sa.Engine) -> set[str]:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(strategies.c.name).where(
                strategies.c.tenant_id == pair.tenant_id)).scalars())

    assert stored(engine_of(pair.platform)) == {"written_here"}
    assert stored(pair.replica) == {"replica_marker"}
    # The replica never received it (nothing replicates here), so reads do not see it.
    assert api.client.get("/api/v1/strategies/written_here", headers=auth).status_code == 404


def test_a_stored_scan_is_read_back_from_the_primary(pair: Pair) -> None:
    with engine_of(pair.platform).begin() as conn:
        scan_id = conn.execute(scans.insert().values(
            tenant_id=pair.tenant_id, timeframe="1d", status="succeeded", instruments=4,
            matches=0, universe="on-primary")).inserted_primary_key[0]
    # What run_scan answers right after storing: the primary has it before any replica.
    assert get_scan(pair.platform, pair.tenant_id, scan_id, primary=True).universe == \
        "on-primary"
    with pytest.raises(NotFoundError):
        get_scan(pair.platform, pair.tenant_id, scan_id)


def _primary_statements(platform: Platform) -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = " ".join(statement.split()).lower()
        # Authentication reads keys on the primary on purpose (a revoked key must stop at
        # once, whatever the replica lag); SQLite's explicit BEGIN/COMMIT carry no data.
        key_lookup = text.startswith("select k.id, k.tenant_id") and "where k.digest =" in text
        is_auth = key_lookup or text.startswith("update api_keys set last_used_at")
        if not is_auth and text not in ("begin", "commit", "rollback"):
            seen.append(text)

    event.listen(engine_of(platform), "before_cursor_execute", record)
    return seen, record


def _example_path(path: str, operation: dict[str, Any]) -> str:
    for param in operation.get("parameters", []):
        if param["in"] != "path":
            continue
        schema = param.get("schema", {})
        value = ("4242" if schema.get("type") == "integer"
                 else str(uuid.uuid4()) if schema.get("minLength") == 36
                 else "replica_marker")
        path = path.replace("{" + param["name"] + "}", value)
    return path


# Readiness checks the primary by design; streams never end (they read on the replica too,
# but a request to them does not return).
# Trading reads the primary on purpose: kill switches, bot states, orders and positions must be
# exact (a lagging replica could show a halted bot as running, or a filled order as open).
NOT_READS = ("/livez", "/readyz", "/api/v1/stream/", "/api/v1/risk/", "/api/v1/bots",
             "/api/v1/orders", "/api/v1/positions", "/api/v1/portfolio", "/api/v1/accounts")


def test_every_get_route_reads_from_the_replica(pair: Pair) -> None:
    api, auth = pair.api, pair.api.auth(pair.key)
    document = create_app().openapi()
    routes = [(path, ops["get"]) for path, ops in document["paths"].items()
              if "get" in ops and not path.startswith(NOT_READS)]
    assert len(routes) >= 8, routes
    for path, _op in routes:  # warm up: first calls may store built-ins (a write)
        api.client.get(_example_path(path, _op), headers=auth)
    hub = getattr(api.app.state, "stream_hub", None)
    if hub is not None:  # the live stream's relay polls the primary on purpose (no lag)
        api.client.portal.call(hub.stop)
    seen, record = _primary_statements(pair.platform)
    try:
        for path, operation in routes:
            seen.clear()
            url = _example_path(path, operation)
            response = api.client.get(url, headers=auth)
            assert response.status_code < 500, (url, response.text)
            # A miss on the replica may be re-checked on the primary (just written, replica
            # lag): only a 404 may have touched it.
            assert not seen or response.status_code == 404, (url, seen)
    finally:
        event.remove(engine_of(pair.platform), "before_cursor_execute", record)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_replica_down_reads_fail_over_and_readyz_reports_it(pair: Pair) -> None:
    api, auth = pair.api, pair.api.auth(pair.key)
    assert pair.proxy is not None
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["read_replica"] == "ok"
    assert _symbols(pair) == {"ONLY_ON_REPLICA"}

    pair.proxy.stop()
    # Pooled replica connections fail the pre-ping; new ones are refused: the primary serves.
    assert "ONLY_ON_REPLICA" not in _symbols(pair)
    assert len(_symbols(pair)) == 4
    assert REPLICA_UP._value.get() == 0
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, "a replica outage must not take the API out of service"
    body = ready.json()
    assert body["status"] == "degraded" and body["degraded"] == ["read_replica"]
    assert body["checks"]["read_replica"].startswith("degraded: read replica unreachable")
    assert api.client.get("/api/v1/strategies/replica_marker", headers=auth).status_code == 404

    pair.proxy = TcpProxy(*pair.proxy.target, listen_port=pair.proxy.port).start()
    assert api.client.get("/readyz").json()["checks"]["read_replica"] == "ok"
    # Fall-back connections are dropped once the replica answers: reads return to it.
    assert _symbols(pair) == {"ONLY_ON_REPLICA"}
    assert REPLICA_UP._value.get() == 1


def test_a_replica_of_another_kind_is_refused(tmp_path: Path) -> None:
    from signalfactory.domain.errors import BadInputError

    with pytest.raises(BadInputError, match="same kind of database"):
        build_platform(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.db'}",
                                database_read_url="postgresql://u@127.0.0.1:1/x"))
