"""Migrations up and down on both backends, and the db commands."""

from __future__ import annotations

import sqlalchemy as sa

from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.db import create_db_engine
from tests.helpers import cli


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    engine = create_db_engine(database_url)
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"instruments", "bars", "bar_segments", "ingests", "fetch_cursors"} <= tables
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    left = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    assert not {t for t in left if not t.startswith("bars_")}, left
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()


def test_db_commands(sf_env: dict[str, str]) -> None:
    result = cli("init")
    assert result.exit_code == 0, result.output
    result = cli("db", "current")
    assert "current: " in result.output and "(run" not in result.output
    assert cli("db", "downgrade", "base").exit_code == 0
    assert "current: none" in cli("db", "current").output
    assert cli("db", "upgrade").exit_code == 0
    assert "(run" not in cli("db", "current").output
