"""Tenants; strategies with versions, signals, strategy runs, scans and scan results.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False, server_default="free"),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    # The tenant that owns what the CLI creates on a single-user install.
    op.bulk_insert(tenants, [{"id": 1, "name": "default", "tier": "enterprise"}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('tenants', 'id'), 1)")
    op.create_table(
        "strategies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("tenant_id", "name", name="uq_strategies_tenant_name"),
    )
    op.create_table(
        "strategy_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("rule_text", sa.Text, nullable=True),
        sa.Column("class_path", sa.String(512), nullable=True),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False, server_default="1d"),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False, server_default="system"),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("strategy_id", "version", name="uq_strategy_versions_version"),
    )
    op.create_table(
        "signals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
                  nullable=False),
        sa.Column("instrument_id", sa.Integer, sa.ForeignKey("instruments.id"),
                  nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("bar_ts", UTC, nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("score", sa.Float(53), nullable=True),
        sa.Column("price", sa.Float(53), nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("strategy_version_id", "instrument_id", "timeframe", "bar_ts",
                            "side", name="uq_signals_identity"),
    )
    op.create_index("ix_signals_bar_ts", "signals", ["bar_ts"])
    op.create_table(
        "strategy_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
                  nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("instruments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("signals_written", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
    )
    op.create_table(
        "scans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
                  nullable=True),
        sa.Column("rule_text", sa.Text, nullable=True),
        sa.Column("universe", sa.String(128), nullable=True),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("as_of", UTC, nullable=True),
        sa.Column("top", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("instruments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("matches", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", UTC, nullable=True),
    )
    op.create_table(
        "scan_results",
        sa.Column("scan_id", sa.Integer, sa.ForeignKey("scans.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("instrument_id", sa.Integer, sa.ForeignKey("instruments.id"),
                  nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("score", sa.Float(53), nullable=True),
        sa.Column("price", sa.Float(53), nullable=False),
        sa.Column("bar_ts", UTC, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("scan_id", "rank", name="pk_scan_results"),
    )


def downgrade() -> None:
    op.drop_table("scan_results")
    op.drop_table("scans")
    op.drop_table("strategy_runs")
    op.drop_index("ix_signals_bar_ts", table_name="signals")
    op.drop_table("signals")
    op.drop_table("strategy_versions")
    op.drop_table("strategies")
    op.drop_table("tenants")
