"""The SQL trading repositories keep the shared contract (SQLite, PostgreSQL), and migration
0009 creates exactly the tables the code declares."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage import tables_trading
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.services.platform import Platform
from signalfactory.services.ports import Database
from tests.trading_repository_contract import ALL_CHECKS

TRADING_TABLES = ("exchange_accounts", "exchange_credentials", "bots", "orders", "fills",
                  "positions", "trading_states", "kill_switches", "bot_marks")


def test_sql_trading_repositories(platform: Platform) -> None:
    # one platform for all checks: a fresh PostgreSQL database costs a second each
    checks: tuple[Callable[[Database], None], ...] = ALL_CHECKS
    for check in checks:
        check(platform.database)


def test_migration_matches_tables(platform: Platform) -> None:
    inspector = sa.inspect(sql_database(platform.database).engine)
    for name in TRADING_TABLES:
        table = tables_trading.metadata.tables[name]
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert list(columns) == [c.name for c in table.columns], name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (name, column.name)
        declared = {tuple(c.columns.keys()) for c in table.constraints
                    if isinstance(c, sa.UniqueConstraint)}
        stored = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        assert declared == stored, name
        declared_ix = {tuple(c.name for c in ix.columns) for ix in table.indexes}
        stored_ix = {tuple(ix["column_names"]) for ix in inspector.get_indexes(name)
                     if not ix.get("unique")}
        assert declared_ix == stored_ix, name
        pk = tuple(c.name for c in table.primary_key.columns)
        assert tuple(inspector.get_pk_constraint(name)["constrained_columns"]) == pk, name


@pytest.mark.parametrize("table", ["orders", "fills"])
def test_idempotency_keys_are_unique_in_the_database(platform: Platform, table: str) -> None:
    """The unique keys hold even for writers that skip the repository's ON CONFLICT."""
    inspector = sa.inspect(sql_database(platform.database).engine)
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
    expected = ("account_id", "client_order_id") if table == "orders" else (
        "account_id", "trade_id")
    assert expected in uniques
