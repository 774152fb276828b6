"""Jobs split into chunk jobs: a counter row per split parent and a row per chunk.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_splits",
        sa.Column("parent_job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
    )
    op.create_table(
        "job_split_chunks",
        sa.Column("parent_job_id", sa.String(36),
                  sa.ForeignKey("job_splits.parent_job_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("executions", sa.Integer, nullable=False, server_default="0"),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("seconds", sa.Float(53), nullable=True),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("job_split_chunks")
    op.drop_table("job_splits")
