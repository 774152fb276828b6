"""Foundation: instruments, bars (partitioned on PostgreSQL), bar segments, ingests, cursors.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


# The key leads with timeframe (the SQLite table's with instrument_id): then the distinct
# timeframes are a skip along the index, not a scan of every bar, and each timeframe's bars are
# one key range. Rows are still written in (instrument_id, ts) order within a timeframe.
_PG_BARS_COLUMNS = """
    instrument_id integer NOT NULL,
    timeframe varchar(8) NOT NULL,
    ts timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL,
    CONSTRAINT pk_bars PRIMARY KEY (timeframe, instrument_id, ts)
"""


def _timescaledb_usable() -> bool:
    """TimescaleDB can be used when installed here, or available and preloaded by the server
    (CREATE EXTENSION fails without shared_preload_libraries)."""
    bind = op.get_bind()
    installed = bind.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").scalar()
    if installed:
        return True
    available = bind.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).scalar()
    preload = bind.exec_driver_sql("SELECT current_setting('shared_preload_libraries')").scalar()
    return bool(available) and "timescaledb" in str(preload or "")


def _create_postgres_bars() -> None:
    if _timescaledb_usable():
        # A hypertable chunks bars by time itself (one chunk per year, like the native
        # partitions below); the bar store detects it and lets TimescaleDB route rows.
        # NOT exercised by the test suite: the test server has no TimescaleDB.
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        op.execute(f"CREATE TABLE bars ({_PG_BARS_COLUMNS})")
        op.execute("SELECT create_hypertable('bars', 'ts', "
                   "chunk_time_interval => INTERVAL '365 days')")
        return
    # Declarative range partitions by time. The bar store creates one partition per year on
    # demand before writing to it (building it apart and attaching it when it is new), so
    # the default partition stays empty; it only catches rows written around the store.
    op.execute(f"CREATE TABLE bars ({_PG_BARS_COLUMNS}) PARTITION BY RANGE (ts)")
    op.execute("CREATE TABLE bars_default PARTITION OF bars DEFAULT")


def upgrade() -> None:
    op.create_table(
        "instruments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("venue", sa.String(64), nullable=False, server_default=""),
        sa.Column("asset_class", sa.String(32), nullable=False, server_default="equity"),
        sa.Column("currency", sa.String(16), nullable=False, server_default="USD"),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("symbol", "venue", name="uq_instruments_symbol_venue"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _create_postgres_bars()
    else:
        op.create_table(
            "bars",
            sa.Column("instrument_id", sa.Integer, nullable=False),
            sa.Column("timeframe", sa.String(8), nullable=False),
            sa.Column("ts", UTC, nullable=False),
            sa.Column("open", sa.Float(53), nullable=False),
            sa.Column("high", sa.Float(53), nullable=False),
            sa.Column("low", sa.Float(53), nullable=False),
            sa.Column("close", sa.Float(53), nullable=False),
            sa.Column("volume", sa.Float(53), nullable=False),
            sa.PrimaryKeyConstraint("instrument_id", "timeframe", "ts", name="pk_bars"),
        )
    op.create_table(
        "bar_segments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("min_ts", sa.BigInteger, nullable=False),
        sa.Column("max_ts", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("path", name="uq_bar_segments_path"),
    )
    op.create_index("ix_bar_segments_timeframe", "bar_segments", ["timeframe"])
    op.create_table(
        "ingests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("instruments", sa.Integer, nullable=False),
        sa.Column("min_ts", UTC, nullable=True),
        sa.Column("max_ts", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "fetch_cursors",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("last_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("source", "symbol", "timeframe", name="pk_fetch_cursors"),
    )


def downgrade() -> None:
    op.drop_table("fetch_cursors")
    op.drop_table("ingests")
    op.drop_index("ix_bar_segments_timeframe", table_name="bar_segments")
    op.drop_table("bar_segments")
    op.execute("DROP TABLE IF EXISTS bars CASCADE" if op.get_bind().dialect.name == "postgresql"
               else "DROP TABLE bars")
    op.drop_table("instruments")
