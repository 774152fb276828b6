"""A split backtest's trades and equity curves, held by its chunks until the parent stores
the backtest (see adapters/storage/backtests.py).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def _chunk_key(table: str) -> list[sa.Column[object] | sa.ForeignKeyConstraint]:
    return [sa.Column("parent_job_id", sa.String(36), nullable=False),
            sa.Column("idx", sa.Integer, nullable=False),
            sa.ForeignKeyConstraint(["parent_job_id", "idx"],
                                    ["job_split_chunks.parent_job_id", "job_split_chunks.idx"],
                                    ondelete="CASCADE", name=f"fk_{table}_chunk")]


def upgrade() -> None:
    op.create_table(
        "backtest_chunk_trades",
        *_chunk_key("backtest_chunk_trades"),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("entry_ts", UTC_DATETIME, nullable=False),
        sa.Column("exit_ts", UTC_DATETIME, nullable=False),
        sa.Column("size", sa.Float(53), nullable=False),
        sa.Column("entry_price", sa.Float(53), nullable=False),
        sa.Column("exit_price", sa.Float(53), nullable=False),
        sa.Column("pnl", sa.Float(53), nullable=False),
        sa.Column("return", sa.Float(53), nullable=False),
        sa.Column("fees", sa.Float(53), nullable=False),
        sa.Column("exit_reason", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("parent_job_id", "idx", "seq", name="pk_backtest_chunk_trades"),
    )
    op.create_table(
        "backtest_chunk_equity",
        *_chunk_key("backtest_chunk_equity"),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("n_points", sa.Integer, nullable=False),
        sa.Column("encoding", sa.String(32), nullable=False),
        sa.Column("ts", sa.LargeBinary, nullable=False),
        sa.Column("equity", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("parent_job_id", "idx", "symbol",
                                name="pk_backtest_chunk_equity"),
    )


def downgrade() -> None:
    op.drop_table("backtest_chunk_equity")
    op.drop_table("backtest_chunk_trades")
