"""Small helpers the tests share."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from signalfactory.cli import app

runner = CliRunner()


def cli(*args: str) -> Any:
    """Run the CLI in-process; returns click's Result (exit_code, output, stderr)."""
    return runner.invoke(app, list(args), catch_exceptions=False)


def fingerprint() -> dict[str, Any]:
    from signalfactory.adapters.storage.checksums import store_fingerprint
    from signalfactory.adapters.storage.unit_of_work import sql_database
    from signalfactory.bootstrap import build_platform

    platform = build_platform(migrate_db=True)
    try:
        database = sql_database(platform.database)
        with database.engine.connect() as conn:
            return store_fingerprint(conn, database.bar_store)
    finally:
        platform.close()


def engine_of(platform: Any) -> Any:
    """The SQL engine behind a platform, for tests that inspect tables directly."""
    from signalfactory.adapters.storage.unit_of_work import sql_database

    return sql_database(platform.database).engine
