"""Backtests: results under a deterministic id, their trades and compressed equity curves.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "backtests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("data_range", sa.JSON, nullable=False),
        sa.Column("strategy_name", sa.String(100), nullable=False),
        sa.Column("strategy_version", sa.Integer, nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("per_symbol", sa.JSON, nullable=False),
        sa.Column("final_equity", sa.Float(53), nullable=False),
        sa.Column("n_trades", sa.Integer, nullable=False),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.Column("duration_seconds", sa.Float(53), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_backtests_tenant_created", "backtests", ["tenant_id", "created_at"])
    op.create_table(
        "backtest_trades",
        sa.Column("backtest_id", sa.String(64),
                  sa.ForeignKey("backtests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("entry_ts", UTC, nullable=False),
        sa.Column("exit_ts", UTC, nullable=False),
        sa.Column("size", sa.Float(53), nullable=False),
        sa.Column("entry_price", sa.Float(53), nullable=False),
        sa.Column("exit_price", sa.Float(53), nullable=False),
        sa.Column("pnl", sa.Float(53), nullable=False),
        sa.Column("return", sa.Float(53), nullable=False),
        sa.Column("fees", sa.Float(53), nullable=False),
        sa.Column("exit_reason", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("backtest_id", "seq", name="pk_backtest_trades"),
    )
    op.create_table(
        "backtest_equity",
        sa.Column("backtest_id", sa.String(64),
                  sa.ForeignKey("backtests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("n_points", sa.Integer, nullable=False),
        sa.Column("encoding", sa.String(32), nullable=False),
        sa.Column("ts", sa.LargeBinary, nullable=False),
        sa.Column("equity", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("backtest_id", "symbol", name="pk_backtest_equity"),
    )


def downgrade() -> None:
    op.drop_table("backtest_equity")
    op.drop_table("backtest_trades")
    op.drop_index("ix_backtests_tenant_created", table_name="backtests")
    op.drop_table("backtests")
