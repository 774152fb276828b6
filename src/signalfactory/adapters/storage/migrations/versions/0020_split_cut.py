"""What a split parent cut, kept on its counter row: its second run assembles from it without
reading the bars again (see services/backtests/split.py).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_splits") as batch:
        batch.add_column(sa.Column("cut", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_splits") as batch:
        batch.drop_column("cut")
