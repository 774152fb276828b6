"""The database's size for Prometheus, read at scrape time (wired in bootstrap).

SQLite: the database file with its write-ahead log (the columnar bar files beside it live on
the same disk, which the node exporter's filesystem alert watches). PostgreSQL:
``pg_database_size(current_database())``, a cheap catalogue read. With
``SIGNALFACTORY_DATABASE_SIZE_LIMIT_BYTES`` set, the limit is exported too and the alert
SignalFactoryDatabaseFullSoon predicts when the size reaches it.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.observability.metrics import DATABASE_SIZE, DATABASE_SIZE_LIMIT
from signalfactory.services.platform import Platform


def database_size(platform: Platform) -> int:
    """Bytes the database takes now."""
    database = sql_database(platform.database)
    if database.dialect == "sqlite":
        name = database.engine.url.database
        if not name or name == ":memory:":
            return 0
        main = Path(name)
        parts = (main, main.with_name(main.name + "-wal"))
        return sum(part.stat().st_size for part in parts if part.exists())
    with database.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_database_size(current_database())"))
                   .scalar_one())


def refresh_database_size(platform: Platform) -> None:
    DATABASE_SIZE.set(database_size(platform))
    if platform.settings.database_size_limit_bytes is not None:
        DATABASE_SIZE_LIMIT.set(platform.settings.database_size_limit_bytes)
