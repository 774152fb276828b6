"""Probes and the first read endpoint, on both backends."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signalfactory.api import create_app
from signalfactory.bootstrap import build_platform
from signalfactory.settings import load_settings
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import cli
from tests.tcp_proxy import TcpProxy


def test_probes_and_instruments(sf_env: dict[str, str]) -> None:
    assert cli("sample", "--symbols", "5", "--bars", "20").exit_code == 0
    key = cli("keys", "create", "--tenant", "default", "--role", "viewer").stdout.strip()
    with TestClient(create_app(build=build_platform),
                    headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.get("/livez").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "migrations": "ok"}
        body = client.get("/api/v1/instruments").json()
        assert body["count"] == 5
        assert body["items"][0]["tags"]["universe"] == "sample"
        energy = client.get("/api/v1/instruments", params={"tag": "sector=energy"}).json()
        assert all(i["tags"]["sector"] == "energy" for i in energy["items"])
        bad = client.get("/api/v1/instruments", params={"limit": 0})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["status"] == 422 and "limit" in bad.json()["detail"]


def test_readyz_names_migrations_behind(sf_env: dict[str, str]) -> None:
    assert cli("init").exit_code == 0
    assert cli("db", "downgrade", "base").exit_code == 0
    with TestClient(create_app(build=build_platform)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failing"] == ["migrations"]
        assert client.get("/livez").status_code == 200


def test_the_served_app_settles_its_heap_once_started(
        sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``signalfactory serve``'s app freezes what start-up made (the platform is built as the
    app starts) and collects less often; an app a test or an embedder starts does not."""
    import uvicorn

    from signalfactory.api.app import SERVER_GC_THRESHOLDS

    assert cli("init").exit_code == 0
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kw: served.append(app))
    assert cli("serve").exit_code == 0
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert thresholds != SERVER_GC_THRESHOLDS
    try:
        with TestClient(create_app(build=build_platform)) as client:
            assert client.get("/livez").status_code == 200
            assert gc.get_freeze_count() == frozen and gc.get_threshold() == thresholds
        with TestClient(served[0]) as client:
            assert client.get("/livez").status_code == 200
            assert gc.get_freeze_count() > frozen + 10_000
            assert gc.get_threshold() == SERVER_GC_THRESHOLDS
    finally:
        gc.unfreeze()  # the test process's heap goes back to the collector
        gc.set_threshold(*thresholds)


@pytest.mark.postgres
def test_readyz_follows_the_database_without_restart(tmp_path: Path) -> None:
    url = create_pg_database()
    proxy = TcpProxy("127.0.0.1", 5432).start()
    try:
        proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        settings = load_settings(home=tmp_path, database_url=proxied)
        platform = build_platform(settings, migrate_db=True)
        with TestClient(create_app(platform=platform)) as client:
            assert client.get("/readyz").status_code == 200
            proxy.stop()
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["failing"] == ["database"]
            assert client.get("/livez").status_code == 200
            proxy = TcpProxy("127.0.0.1", 5432, listen_port=proxy.port).start()
            assert client.get("/readyz").status_code == 200
        platform.close()
    finally:
        proxy.stop()
        drop_pg_database(url)
