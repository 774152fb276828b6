"""Jobs count runs lost with their worker apart from attempts: ``losses`` and ``max_losses``.

A worker killed mid-run used to spend one of the job's attempts, so a job whose workers were
killed a few times went to the dead letter without ever failing. Existing jobs get no losses
and the default bound.

Revision ID: 0014
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("losses", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_losses", sa.Integer, nullable=False,
                                   server_default="10"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("max_losses")
        batch.drop_column("losses")
