"""An API under test with tenants and keys made in one line each.

    with ApiHarness(platform) as api:
        acme = api.tenant("acme", tier="free")
        key = api.key(acme, "trader")
        api.client.get("/api/v1/instruments", headers=api.auth(key))
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from signalfactory.adapters.rate_limits import KeyRateLimiter
from signalfactory.api import create_app
from signalfactory.services.accounts import tenants as accounts

#: a delivery key for tests (endpoints seal their targets and secrets with it)
DELIVERY_TEST_KEY = base64.b64encode(b"delivery-test-key-32-bytes-long!").decode()
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def module_platform(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One migrated database per test module and backend (creating a PostgreSQL database
    and migrating it costs seconds); tests stay apart by using their own tenants.

    Use as ``shared_platform = pytest.fixture(scope="module", params=BACKENDS)(
    module_platform)``.
    """
    from signalfactory.bootstrap import build_platform
    from signalfactory.settings import Settings
    from tests.conftest import create_pg_database, drop_pg_database

    home = tmp_path_factory.mktemp("api")
    url = (f"sqlite:///{home / 'sf.db'}" if request.param == "sqlite"
           else create_pg_database())
    try:
        platform = build_platform(Settings(home=home / "home", database_url=url,
                                           bar_store="columnar",
                                           delivery_key=DELIVERY_TEST_KEY),
                                  migrate_db=True)
        try:
            yield platform
        finally:
            platform.close()
    finally:
        if request.param != "sqlite":
            drop_pg_database(url)


def build_api_platform(monkeypatch: Any) -> Any:
    """A migrated platform on the parametrised backend (``sf_env`` must be active).

    Bars are irrelevant to auth, so they stay in the columnar store on both backends.
    """
    from signalfactory.bootstrap import build_platform

    monkeypatch.setenv("SIGNALFACTORY_BAR_STORE", "columnar")
    return build_platform(migrate_db=True)


class ApiHarness:
    def __init__(self, platform: Any, *, rate_limits: dict[str, str] | None = None,
                 limiter: KeyRateLimiter | None = None) -> None:
        # A generous limiter by default so unrelated tests never trip over the free tier's.
        # The harness's platform shares everything else (database, subscribers) with the
        # one given.
        self.platform = dataclasses.replace(platform, rate_limiter=limiter or KeyRateLimiter(
            limits_by_tier=rate_limits or {"free": "10000/minute", "premium": "10000/minute"}))
        self.app: FastAPI = create_app(platform=self.platform)
        self.client = TestClient(self.app)

    def __enter__(self) -> ApiHarness:
        self.client.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.client.__exit__(exc_type, exc, tb)

    def tenant(self, name: str = "t", tier: str = "free") -> int:
        """A new tenant named ``<name>-<random>`` (tests may share one database)."""
        with self.platform.database.write() as uow:
            created = accounts.create_tenant(uow, f"{name}-{uuid.uuid4().hex[:8]}", tier)
        return created.id

    def key(self, tenant_id: int, role: str = "trader", name: str = "") -> str:
        with self.platform.database.write() as uow:
            new, _ = accounts.create_key(uow, tenant_id, role, name,
                                         now=self.platform.clock.now())
        return new.secret

    def key_id(self, secret: str) -> int:
        from signalfactory.domain.api_keys import digest

        with self.platform.database.read(primary=True) as uow:
            record = uow.accounts.key_by_digest(digest(secret))
        assert record is not None
        return record.id

    def tenant_id_of(self, secret: str) -> int:
        from signalfactory.domain.api_keys import digest

        with self.platform.database.read(primary=True) as uow:
            record = uow.accounts.key_by_digest(digest(secret))
        assert record is not None
        return record.tenant_id

    @staticmethod
    def auth(secret: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}", **extra}
