"""The strategy sandbox: uploaded Python source on strategy versions, and every sandbox run.

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("strategy_versions") as batch:
        batch.add_column(sa.Column("source", sa.Text, nullable=True))
    op.create_table(
        "sandbox_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("strategy_version_id", sa.Integer,
                  sa.ForeignKey("strategy_versions.id", ondelete="CASCADE"), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("instruments", sa.Integer, nullable=False),
        sa.Column("bars", sa.BigInteger, nullable=False),
        sa.Column("first_bar", UTC_DATETIME, nullable=True),
        sa.Column("last_bar", UTC_DATETIME, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("duration_ms", sa.Float(53), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("limit_hit", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("signals", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fresh_worker", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_sandbox_runs_tenant_id", "sandbox_runs", ["tenant_id", "id"])
    op.create_index("ix_sandbox_runs_version_id", "sandbox_runs",
                    ["strategy_version_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_sandbox_runs_version_id", table_name="sandbox_runs")
    op.drop_index("ix_sandbox_runs_tenant_id", table_name="sandbox_runs")
    op.drop_table("sandbox_runs")
    with op.batch_alter_table("strategy_versions") as batch:
        batch.drop_column("source")
