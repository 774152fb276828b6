"""Market-data sources (collectors): the sources and the no-trade gaps they found.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("symbols", sa.JSON, nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("cron", sa.String(100), nullable=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("last_run_at", UTC_DATETIME, nullable=True),
        sa.Column("last_success_at", UTC_DATETIME, nullable=True),
        sa.Column("last_outcome", sa.String(16), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_job_id", sa.String(40), nullable=True),
        sa.Column("last_rows", sa.BigInteger, nullable=True),
        sa.Column("breaker_state", sa.String(16), nullable=False, server_default="closed"),
        sa.Column("breaker_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("breaker_successes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("breaker_opened_at", UTC_DATETIME, nullable=True),
        sa.UniqueConstraint("name", name="uq_sources_name"),
    )
    op.create_table(
        "source_gaps",
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("start_ts", sa.BigInteger, nullable=False),
        sa.Column("end_ts", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detected_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("source_id", "symbol", "timeframe", "start_ts",
                                name="pk_source_gaps"),
    )


def downgrade() -> None:
    op.drop_table("source_gaps")
    op.drop_table("sources")
