"""The tables the market-data, strategy, scan and backtest paths use: the first part of the
schema (``tables`` defines the rest on the same ``metadata``, in this order, and is the one
place every reader of the whole schema imports: migrations, backups, checksums, retention).

A command such as ``scan`` or ``backtest`` imports only this part; building the other tables
was a measurable part of its start-up. The order of definition is the schema's: each table
here refers only to tables defined before it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from signalfactory.domain.tenants import DEFAULT_TENANT_ID

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

UTCDateTime = sa.DateTime(timezone=True)

instruments = sa.Table(
    "instruments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("venue", sa.String(64), nullable=False, server_default=""),
    sa.Column("asset_class", sa.String(32), nullable=False, server_default="equity"),
    sa.Column("currency", sa.String(16), nullable=False, server_default="USD"),
    sa.Column("tags", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("symbol", "venue", name="uq_instruments_symbol_venue"),
)

# On PostgreSQL this table is range-partitioned by ts (or a TimescaleDB hypertable); the
# migration creates it with dialect-specific DDL. On SQLite the columnar store keeps bars in
# Arrow files and this table stays available for the 'sql' bar store setting.
bars = sa.Table(
    "bars", metadata,
    sa.Column("instrument_id", sa.Integer, nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("open", sa.Float(53), nullable=False),
    sa.Column("high", sa.Float(53), nullable=False),
    sa.Column("low", sa.Float(53), nullable=False),
    sa.Column("close", sa.Float(53), nullable=False),
    sa.Column("volume", sa.Float(53), nullable=False),
    sa.PrimaryKeyConstraint("instrument_id", "timeframe", "ts", name="pk_bars"),
)

bar_segments = sa.Table(
    "bar_segments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("timeframe", sa.String(8), nullable=False, index=True),
    sa.Column("path", sa.String(255), nullable=False, unique=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("min_ts", sa.BigInteger, nullable=False),
    sa.Column("max_ts", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
)

ingests = sa.Table(
    "ingests", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(512), nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("instruments", sa.Integer, nullable=False),
    sa.Column("min_ts", UTCDateTime, nullable=True),
    sa.Column("max_ts", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
)

fetch_cursors = sa.Table(
    "fetch_cursors", metadata,
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("last_ts", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.PrimaryKeyConstraint("source", "symbol", "timeframe", name="pk_fetch_cursors"),
)

# -- tenants own strategies, scans, backtests, keys; market data (instruments, bars) is shared --


tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("tier", sa.String(16), nullable=False, server_default="free"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
)

# -- strategies, signals, scans (issue: indicators, rule language, signals, scanner) ----------

strategies = sa.Table(
    "strategies", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "name", name="uq_strategies_tenant_name"),
)

strategy_versions = sa.Table(
    "strategy_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("rule_text", sa.Text, nullable=True),
    sa.Column("class_path", sa.String(512), nullable=True),
    # an uploaded Python strategy's source (0012): it only ever runs in the sandbox, and
    # class_path then names the class in it; code_hash is the source's sha256
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("parameters", sa.JSON, nullable=False, default=dict),
    sa.Column("timeframe", sa.String(8), nullable=False, server_default="1d"),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False, server_default="system"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("strategy_id", "version", name="uq_strategy_versions_version"),
)

signals = sa.Table(
    "signals", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
              nullable=False),
    sa.Column("instrument_id", sa.Integer, sa.ForeignKey("instruments.id"), nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("bar_ts", UTCDateTime, nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("score", sa.Float(53), nullable=True),
    sa.Column("price", sa.Float(53), nullable=False),
    sa.Column("values", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("strategy_version_id", "instrument_id", "timeframe", "bar_ts", "side",
                        name="uq_signals_identity"),
    sa.Index("ix_signals_bar_ts", "bar_ts"),
    sa.Index("ix_signals_instrument_page", "instrument_id", "id"),
    sa.Index("ix_signals_version_page", "strategy_version_id", "id"),
)

strategy_runs = sa.Table(
    "strategy_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
              nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("instruments", sa.Integer, nullable=False, server_default="0"),
    sa.Column("signals_written", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)

scans = sa.Table(
    "scans", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
              nullable=True),
    sa.Column("rule_text", sa.Text, nullable=True),
    sa.Column("universe", sa.String(128), nullable=True),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("as_of", UTCDateTime, nullable=True),
    sa.Column("top", sa.Integer, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("instruments", sa.Integer, nullable=False, server_default="0"),
    sa.Column("matches", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)

scan_results = sa.Table(
    "scan_results", metadata,
    sa.Column("scan_id", sa.Integer, sa.ForeignKey("scans.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("instrument_id", sa.Integer, sa.ForeignKey("instruments.id"), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("score", sa.Float(53), nullable=True),
    sa.Column("price", sa.Float(53), nullable=False),
    sa.Column("bar_ts", UTCDateTime, nullable=False),
    sa.Column("values", sa.JSON, nullable=False, default=dict),
    sa.PrimaryKeyConstraint("scan_id", "rank", name="pk_scan_results"),
)

# -- API keys, idempotency records, quota usage (issue: the service; migration 0003) ---------

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    # The first characters of the key ("sf_live_" + 8): what lists show and revoke accepts.
    sa.Column("prefix", sa.String(32), nullable=False, index=True),
    # SHA-256 hex of the whole key; the key itself is never stored.
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # in_flight | complete
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("response_headers", sa.JSON, nullable=True),
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("locked_at", UTCDateTime, nullable=True),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("tenant_id", "key", name="uq_idempotency_keys_tenant_key"),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

usage_counters = sa.Table(
    "usage_counters", metadata,
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint("tenant_id", "kind", "day", name="pk_usage_counters"),
)

# -- durable jobs (embedded runner and Celery): the row is the record, queues only carry ids ---

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False,
              server_default=str(DEFAULT_TENANT_ID)),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False, default=dict),
    # queued | running | succeeded | failed | cancelled | dead
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float(53), nullable=False, server_default="0"),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("dedupe_key", sa.String(200), nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("run_after", UTCDateTime, nullable=False),
    sa.Column("dispatched_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    # runs lost with their worker (lease expired): counted apart from attempts (0014)
    sa.Column("losses", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_losses", sa.Integer, nullable=False, server_default="10"),
    sa.UniqueConstraint("tenant_id", "dedupe_key", name="uq_jobs_tenant_dedupe_key"),
    sa.Index("ix_jobs_claim", "status", "priority", "created_at"),
    sa.Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
)

# A job split into chunk jobs (migration 0016): the counter row says how many chunks are done;
# a chunk row holds its result until the parent has assembled it; ``cut`` (migration 0020) is
# what the parent cut, as JSON, so that its second run need not read the bars again.
job_splits = sa.Table(
    "job_splits", metadata,
    sa.Column("parent_job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("cut", sa.Text, nullable=True),
)

job_split_chunks = sa.Table(
    "job_split_chunks", metadata,
    sa.Column("parent_job_id", sa.String(36),
              sa.ForeignKey("job_splits.parent_job_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("executions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result", sa.LargeBinary, nullable=True),
    sa.Column("seconds", sa.Float(53), nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)

def _trade_columns() -> list[sa.Column[Any]]:
    """One trade's columns (new objects each call: a column belongs to one table)."""
    return [
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("entry_ts", UTCDateTime, nullable=False),
        # for a trade still open at the end: the last bar's time (the mark), exit_reason "open"
        sa.Column("exit_ts", UTCDateTime, nullable=False),
        sa.Column("size", sa.Float(53), nullable=False),
        sa.Column("entry_price", sa.Float(53), nullable=False),
        sa.Column("exit_price", sa.Float(53), nullable=False),
        sa.Column("pnl", sa.Float(53), nullable=False),
        sa.Column("return", sa.Float(53), nullable=False),
        sa.Column("fees", sa.Float(53), nullable=False),
        sa.Column("exit_reason", sa.String(16), nullable=False),
    ]


# A split backtest's rows while it is computed (migration 0019): each chunk stores its trades
# (``seq`` in the chunk's order) and its instruments' encoded equity curves in the transaction
# that counts it done; the parent copies them into backtest_trades / backtest_equity when it
# stores the backtest, and deletes them.
backtest_chunk_trades = sa.Table(
    "backtest_chunk_trades", metadata,
    sa.Column("parent_job_id", sa.String(36), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    *_trade_columns(),
    sa.PrimaryKeyConstraint("parent_job_id", "idx", "seq", name="pk_backtest_chunk_trades"),
    sa.ForeignKeyConstraint(["parent_job_id", "idx"], ["job_split_chunks.parent_job_id",
                                                       "job_split_chunks.idx"],
                            ondelete="CASCADE", name="fk_backtest_chunk_trades_chunk"),
)

backtest_chunk_equity = sa.Table(
    "backtest_chunk_equity", metadata,
    sa.Column("parent_job_id", sa.String(36), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("n_points", sa.Integer, nullable=False),
    sa.Column("encoding", sa.String(32), nullable=False),
    sa.Column("ts", sa.LargeBinary, nullable=False),
    sa.Column("equity", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("parent_job_id", "idx", "symbol", name="pk_backtest_chunk_equity"),
    sa.ForeignKeyConstraint(["parent_job_id", "idx"], ["job_split_chunks.parent_job_id",
                                                       "job_split_chunks.idx"],
                            ondelete="CASCADE", name="fk_backtest_chunk_equity_chunk"),
)

# The last cron slot each schedule fired for, so a restarted scheduler neither repeats nor
# back-fills a slot; the job's dedupe key (schedule:NAME:SLOT) stops two schedulers racing.
job_schedules = sa.Table(
    "job_schedules", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("last_slot", UTCDateTime, nullable=False),
    sa.Column("last_job_id", sa.String(36), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# -- backtests (issue 4; migration 0005): a result is stored once under a deterministic id ------

# The id is the sha256 of the canonical JSON of what decides the numbers (tenant, engine
# settings, data range and content digest, strategy code hash and parameters): the same
# request maps to the same row, so re-running it returns the stored result.
backtests = sa.Table(
    "backtests", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # single | universe | portfolio
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("data_range", sa.JSON, nullable=False),
    sa.Column("strategy_name", sa.String(100), nullable=False),
    sa.Column("strategy_version", sa.Integer, nullable=True),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("per_symbol", sa.JSON, nullable=False),
    sa.Column("final_equity", sa.Float(53), nullable=False),
    sa.Column("n_trades", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("duration_seconds", sa.Float(53), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_backtests_tenant_created", "tenant_id", "created_at"),
)

backtest_trades = sa.Table(
    "backtest_trades", metadata,
    sa.Column("backtest_id", sa.String(64), sa.ForeignKey("backtests.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    *_trade_columns(),
    sa.PrimaryKeyConstraint("backtest_id", "seq", name="pk_backtest_trades"),
)

# One row per curve: symbol '' is the portfolio (or, for a universe run, the equal-weighted
# aggregate). ``ts`` and ``equity`` are zlib-compressed little-endian arrays (int64 ns,
# delta-encoded; float64), see adapters/storage/backtests.py; ``encoding`` names that layout.
backtest_equity = sa.Table(
    "backtest_equity", metadata,
    sa.Column("backtest_id", sa.String(64), sa.ForeignKey("backtests.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("n_points", sa.Integer, nullable=False),
    sa.Column("encoding", sa.String(32), nullable=False),
    sa.Column("ts", sa.LargeBinary, nullable=False),
    sa.Column("equity", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("backtest_id", "symbol", name="pk_backtest_equity"),
)
