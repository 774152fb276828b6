"""Indexes for the signal filters: ?symbol= and ?strategy= page by id within one of them.

Without them, a filtered page scans the signals table in id order until it has found a
page of matches (the whole table for a rare symbol).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_signals_instrument_page", "signals", ["instrument_id", "id"])
    op.create_index("ix_signals_version_page", "signals", ["strategy_version_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_signals_version_page", table_name="signals")
    op.drop_index("ix_signals_instrument_page", table_name="signals")
