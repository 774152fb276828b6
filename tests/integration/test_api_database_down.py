"""While the database is down or locked, every authenticated call answers 503 with
``Retry-After`` and the ``temporary`` problem type: the key lookup, the idempotency claim and
the route's own work all fail the same way, whichever layer (middleware, dependency, handler,
WebSocket handshake) meets the failure first. Never a 500 ``about:blank``.

PostgreSQL: reached through a loopback proxy the test cuts. SQLite: another connection holds
the write lock (the platform's busy timeout is shortened so the test does not wait 10 s).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from starlette.testclient import WebSocketDenialResponse

from signalfactory.api import create_app
from signalfactory.bootstrap import build_platform
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings
from tests.api_harness import ApiHarness
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import engine_of
from tests.tcp_proxy import TcpProxy

TEMPORARY = "https://signalfactory.dev/problems/temporary"
# Once a process has found the primary unreachable it is in read-only mode (issue 14 item 1):
# the same 503 with Retry-After, typed as read-only.
READ_ONLY = "https://signalfactory.dev/problems/read-only"
PLACEHOLDERS = {"integer": 1, "string": "x"}


def authenticated_operations() -> list[tuple[str, str]]:
    """Every documented operation that needs a key, path parameters filled in."""
    document = create_app().openapi()
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not operation.get("security"):
                continue
            concrete = path
            for param in operation.get("parameters", []):
                if param["in"] == "path":
                    value = PLACEHOLDERS.get(param.get("schema", {}).get("type", "string"), "x")
                    concrete = concrete.replace("{" + param["name"] + "}", str(value))
            found.append((method.upper(), concrete))
    return found


def assert_temporary(response: Any, what: object) -> None:
    assert response.status_code == 503, (what, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json"), what
    assert response.json()["type"] in (TEMPORARY, READ_ONLY), (what, response.text[:300])
    assert int(response.headers["retry-after"]) > 0, what


def every_call_is_a_503(api: ApiHarness, key: str) -> None:
    operations = authenticated_operations()
    assert len(operations) > 30
    for method, path in operations:
        if path.startswith("/api/v1/stream/"):
            continue  # below: an SSE answer never ends, and the socket has its own handshake
        headers = api.auth(key)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        response = api.client.request(method, path, json=body, headers=headers)
        assert_temporary(response, (method, path))
        if method == "POST":  # the idempotency middleware claims the key first
            response = api.client.request(method, path, json=body,
                                          headers={**headers, "Idempotency-Key": "k-1"})
            assert_temporary(response, (method, path, "Idempotency-Key"))
    assert_temporary(api.client.get("/api/v1/stream/sse", headers=api.auth(key)), "sse")
    with pytest.raises(WebSocketDenialResponse) as refused, api.client.websocket_connect(
            "/api/v1/stream/ws", headers=api.auth(key)):
        pass
    assert_temporary(refused.value, "websocket handshake")


@pytest.mark.postgres
def test_postgres_cut_every_authenticated_call_answers_503(tmp_path: Path) -> None:
    url = create_pg_database()
    proxy = TcpProxy("127.0.0.1", 5432).start()
    try:
        proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        platform = build_platform(Settings(home=tmp_path, database_url=proxied,
                                           bar_store="columnar"), migrate_db=True)
        try:
            with ApiHarness(platform) as api:
                key = api.key(api.tenant("down", tier="enterprise"), "admin")
                assert api.client.get("/api/v1/instruments", headers=api.auth(key)).is_success
                proxy.stop()
                every_call_is_a_503(api, key)
        finally:
            platform.close()
    finally:
        proxy.stop()
        drop_pg_database(url)


@pytest.fixture
def sqlite_platform(tmp_path: Path) -> Iterator[Platform]:
    platform = build_platform(Settings(home=tmp_path / "home",
                                       database_url=f"sqlite:///{tmp_path}/sf.db",
                                       bar_store="columnar"), migrate_db=True)
    engine = engine_of(platform)

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=50")

    engine.dispose()  # pooled connections reconnect with the short timeout
    try:
        yield platform
    finally:
        platform.close()


def test_sqlite_locked_the_key_touch_and_the_idempotency_claim_answer_503(
        sqlite_platform: Platform, tmp_path: Path) -> None:
    with ApiHarness(sqlite_platform) as api:
        tenant = api.tenant("locked", tier="enterprise")
        used = api.key(tenant, "admin")
        assert api.client.get("/api/v1/instruments", headers=api.auth(used)).is_success
        fresh = api.key(tenant, "admin")  # its first use records the use: a write
        holder = sqlite3.connect(tmp_path / "sf.db", isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            # reads of WAL-mode SQLite go on; every write waits and gives up
            assert_temporary(api.client.get("/api/v1/instruments", headers=api.auth(fresh)),
                             "first use of a key")
            assert_temporary(api.client.post(
                "/api/v1/strategies/validate", json={"rule": "entry: close > 1"},
                headers=api.auth(used, **{"Idempotency-Key": "k-2"})), "idempotency claim")
            assert_temporary(api.client.post(
                "/api/v1/strategies", json={"name": "s", "rule": "entry: close > 1"},
                headers=api.auth(used)), "a write in the route")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        again = api.client.post("/api/v1/strategies/validate", json={"rule": "entry: close > 1"},
                                headers=api.auth(used, **{"Idempotency-Key": "k-2"}))
        assert again.status_code == 200, again.text  # the refused claim left nothing behind
