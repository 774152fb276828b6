"""Canary rows for the honest DR drill: ``ops_canaries(id, written_at, source)``.

A scheduled job writes one every ``canary_interval_seconds`` and ``dr drill`` writes one
before it restores; the newest canary found in a restored copy says how much recent data
that restore point lost (the drill's RPO).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_canaries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index("ix_ops_canaries_written_at", "ops_canaries", ["written_at"])


def downgrade() -> None:
    op.drop_index("ix_ops_canaries_written_at", table_name="ops_canaries")
    op.drop_table("ops_canaries")
