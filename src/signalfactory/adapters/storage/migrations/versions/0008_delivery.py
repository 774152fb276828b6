"""Delivery: endpoints, subscription delivery controls, the outbox, attempts, campaigns.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)
SIGNAL_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False,
                                   server_default="UTC"))
        batch.add_column(sa.Column("quiet_start", sa.SmallInteger, nullable=True))
        batch.add_column(sa.Column("quiet_end", sa.SmallInteger, nullable=True))
        batch.add_column(sa.Column("max_per_hour", sa.Integer, nullable=True))
        batch.add_column(sa.Column("digest_minutes", sa.Integer, nullable=True))
        batch.add_column(sa.Column("template", sa.Text, nullable=True))
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target_sealed", sa.LargeBinary, nullable=False),
        sa.Column("target_hint", sa.String(200), nullable=False),
        sa.Column("secrets_sealed", sa.LargeBinary, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("max_per_second", sa.Float(53), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("tenant_id", "name", name="uq_endpoints_tenant_name"),
    )
    op.create_index("ix_endpoints_tenant_id", "endpoints", ["tenant_id"])
    op.create_table(
        "subscription_endpoints",
        sa.Column("subscription_id", sa.Integer,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("endpoint_id", sa.Integer,
                  sa.ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("subscription_ids", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("enqueued", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UTC_DATETIME, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_campaigns_tenant_id", "campaigns", ["tenant_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("subscription_id", sa.Integer,
                  sa.ForeignKey("subscriptions.id", ondelete="SET NULL"), nullable=True),
        sa.Column("signal_id", SIGNAL_ID, sa.ForeignKey("signals.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("campaign_id", sa.Integer,
                  sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=True),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", UTC_DATETIME, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
        sa.UniqueConstraint("endpoint_id", "signal_id", name="uq_deliveries_endpoint_signal"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "priority", "id"])
    op.create_index("ix_deliveries_tenant_id", "deliveries", ["tenant_id", "id"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(40),
                  sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Float(53), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("response_excerpt", sa.Text, nullable=True),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_delivery_id", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_deliveries_tenant_id", table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_campaigns_tenant_id", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_table("subscription_endpoints")
    op.drop_index("ix_endpoints_tenant_id", table_name="endpoints")
    op.drop_table("endpoints")
    with op.batch_alter_table("subscriptions") as batch:
        for column in ("template", "digest_minutes", "max_per_hour", "quiet_end",
                       "quiet_start", "timezone"):
            batch.drop_column(column)
