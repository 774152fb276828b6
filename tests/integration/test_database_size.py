"""The database size gauge read at scrape time, and its configured limit (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from signalfactory.bootstrap import build_platform
from signalfactory.ops.database_size import database_size
from signalfactory.services.health import refresh_gauges


def test_size_is_exported_at_scrape_with_the_limit(sf_env: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_DATABASE_SIZE_LIMIT_BYTES", str(50 * 2**30))
    platform = build_platform(migrate_db=True)
    try:
        size = database_size(platform)
        if platform.settings.is_sqlite:
            db = Path(platform.settings.resolved_database_url.removeprefix("sqlite:///"))
            wal = db.with_name(db.name + "-wal")
            assert size == db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        assert size > 10_000  # the migrated schema takes room on both backends
        refresh_gauges(platform)
        assert REGISTRY.get_sample_value("signalfactory_database_size_bytes") == pytest.approx(
            database_size(platform), rel=0.5)
        assert REGISTRY.get_sample_value("signalfactory_database_size_limit_bytes") == (
            50 * 2**30)
    finally:
        platform.close()
