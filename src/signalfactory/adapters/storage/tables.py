"""SQLAlchemy table definitions: the schema the migrations create, kept in one place.

The first tables (market data, strategies, scans, jobs, backtests) are defined in
``tables_core`` and re-exported here, so that a command importing only those skips the rest;
importing this module defines every table on ``metadata``, in the schema's order.
"""

from __future__ import annotations

import sqlalchemy as sa

from signalfactory.adapters.storage.tables_core import (
    UTCDateTime,
    api_keys,
    backtest_chunk_equity,
    backtest_chunk_trades,
    backtest_equity,
    backtest_trades,
    backtests,
    bar_segments,
    bars,
    fetch_cursors,
    idempotency_keys,
    ingests,
    instruments,
    job_schedules,
    job_split_chunks,
    job_splits,
    jobs,
    metadata,
    scan_results,
    scans,
    signals,
    strategies,
    strategy_runs,
    strategy_versions,
    tenants,
    usage_counters,
)
from signalfactory.domain.tenants import DEFAULT_TENANT_ID

#: every table, the metadata and the default tenant id; the first tables are ``tables_core``'s
__all__ = [
    "DEFAULT_TENANT_ID",
    "UTCDateTime",
    "api_keys",
    "audit_log",
    "backtest_chunk_equity",
    "backtest_chunk_trades",
    "backtest_equity",
    "backtest_trades",
    "backtests",
    "bar_segments",
    "bars",
    "campaigns",
    "daily_reports",
    "deliveries",
    "delivery_attempts",
    "endpoints",
    "fetch_cursors",
    "idempotency_keys",
    "ingests",
    "instruments",
    "job_schedules",
    "job_split_chunks",
    "job_splits",
    "jobs",
    "metadata",
    "ops_canaries",
    "sandbox_runs",
    "scan_results",
    "scans",
    "signals",
    "source_gaps",
    "sources",
    "strategies",
    "strategy_runs",
    "strategy_versions",
    "subscription_endpoints",
    "subscriptions",
    "tenants",
    "usage_counters",
    "web_sessions",
]

# -- live stream subscriptions (issue: the service; migration 0006) -------------------------

# What a tenant wants pushed: signals of these strategies (empty list = every strategy the
# tenant can see) on these symbols (empty = all) scoring at least min_score (null = any).
subscriptions = sa.Table(
    "subscriptions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("strategies", sa.JSON, nullable=False, default=list),
    sa.Column("symbols", sa.JSON, nullable=False, default=list),
    sa.Column("min_score", sa.Float(53), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    # delivery controls (0008)
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("quiet_start", sa.SmallInteger, nullable=True),
    sa.Column("quiet_end", sa.SmallInteger, nullable=True),
    sa.Column("max_per_hour", sa.Integer, nullable=True),
    sa.Column("digest_minutes", sa.Integer, nullable=True),
    sa.Column("template", sa.Text, nullable=True),
    sa.UniqueConstraint("tenant_id", "name", name="uq_subscriptions_tenant_name"),
)


# -- delivery (0008) ---------------------------------------------------------------------------

endpoints = sa.Table(
    "endpoints", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("target_sealed", sa.LargeBinary, nullable=False),
    sa.Column("target_hint", sa.String(200), nullable=False),
    sa.Column("secrets_sealed", sa.LargeBinary, nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("disabled_reason", sa.String(500), nullable=True),
    sa.Column("max_per_second", sa.Float(53), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "name", name="uq_endpoints_tenant_name"),
)

subscription_endpoints = sa.Table(
    "subscription_endpoints", metadata,
    sa.Column("subscription_id", sa.Integer,
              sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
              primary_key=True),
)

campaigns = sa.Table(
    "campaigns", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("subscription_ids", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("enqueued", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("subscription_id", sa.Integer,
              sa.ForeignKey("subscriptions.id", ondelete="SET NULL"), nullable=True),
    sa.Column("signal_id", sa.BigInteger, sa.ForeignKey("signals.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    # the same signal never goes twice to the same destination
    sa.UniqueConstraint("endpoint_id", "signal_id", name="uq_deliveries_endpoint_signal"),
    # claims walk pending rows in (priority, id) order: real-time first, oldest first
    sa.Index("ix_deliveries_due", "status", "priority", "id"),
    sa.Index("ix_deliveries_tenant_id", "tenant_id", "id"),
)

delivery_attempts = sa.Table(
    "delivery_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(40), sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("latency_ms", sa.Float(53), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("response_excerpt", sa.Text, nullable=True),
)

# -- audit log (issue 11): append-only, each entry hashed over the previous one's hash -------

audit_log = sa.Table(
    "audit_log", metadata,
    # seq is given by the writer (newest + 1 under the append lock), never by the database:
    # it is part of the hashed entry and must have no gaps
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    # no foreign key: entries outlive the tenants they mention (a cascade would break the chain)
    sa.Column("tenant_id", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    # unique: two entries can never claim the same predecessor, so the chain cannot fork
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Index("ix_audit_log_tenant_id", "tenant_id", "seq"),
)

# -- daily trading reports (issue 11): the report's data, rendered to HTML when opened -------

daily_reports = sa.Table(
    "daily_reports", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("generated_at", UTCDateTime, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="SET NULL"),
              nullable=True),
    # one report per tenant and day: a re-run of the job finds it instead of sending twice
    sa.UniqueConstraint("tenant_id", "day", name="uq_daily_reports_tenant_day"),
)

# -- trading (0009): defined in their own module on this metadata; imported here so that
# every reader of ``metadata`` (backups, checksums, retention) sees them.
from signalfactory.adapters.storage import tables_trading as _trading  # noqa: E402,F401 - registers the trading tables on metadata; must follow its definition

# -- market-data sources and their collectors (issue 12) ------------------------------------
# Installation-wide like the bars they fill: no tenant. The breaker columns are the circuit
# breaker every process shares (services/sources/breaker.py).

sources = sa.Table(
    "sources", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(32), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("symbols", sa.JSON, nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("cron", sa.String(100), nullable=True),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_run_at", UTCDateTime, nullable=True),
    sa.Column("last_success_at", UTCDateTime, nullable=True),
    sa.Column("last_outcome", sa.String(16), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_job_id", sa.String(40), nullable=True),
    sa.Column("last_rows", sa.BigInteger, nullable=True),
    sa.Column("breaker_state", sa.String(16), nullable=False, server_default="closed"),
    sa.Column("breaker_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("breaker_successes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("breaker_opened_at", UTCDateTime, nullable=True),
)

source_gaps = sa.Table(
    "source_gaps", metadata,
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("start_ts", sa.BigInteger, nullable=False),
    sa.Column("end_ts", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("detected_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("source_id", "symbol", "timeframe", "start_ts",
                            name="pk_source_gaps"),
)


# Dashboard sessions and one-time sign-in links (migration 0013): the token's SHA-256 only.
web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("token_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)


# -- the strategy sandbox (0012): every call into it, the audit trail of uploaded code --------

sandbox_runs = sa.Table(
    "sandbox_runs", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("strategy_version_id", sa.Integer,
              sa.ForeignKey("strategy_versions.id", ondelete="CASCADE"), nullable=True),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),  # signals | live | scan | backtest
    sa.Column("instruments", sa.Integer, nullable=False),
    sa.Column("bars", sa.BigInteger, nullable=False),
    sa.Column("first_bar", UTCDateTime, nullable=True),
    sa.Column("last_bar", UTCDateTime, nullable=True),
    # when the run started (named so that retention can prune the table by age)
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("duration_ms", sa.Float(53), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # succeeded | failed
    sa.Column("limit_hit", sa.String(16), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("signals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("fresh_worker", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_sandbox_runs_tenant_id", "tenant_id", "id"),
    sa.Index("ix_sandbox_runs_version_id", "strategy_version_id", "id"),
)


# -- DR drill canaries (0015): the newest one in a restored copy measures the RPO -------------

ops_canaries = sa.Table(
    "ops_canaries", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("written_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # "schedule" | "drill"
    sa.Index("ix_ops_canaries_written_at", "written_at"),
)
