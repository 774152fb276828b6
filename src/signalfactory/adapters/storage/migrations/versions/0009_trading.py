"""Trading: exchange accounts and sealed credentials, bots, orders, fills, positions, trading
states and kill switches per scope, equity marks.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)
MONEY = sa.Float(53)
BAR_TIME = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _tenant() -> sa.Column[int]:
    return sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                     nullable=False)


def _account(primary_key: bool = False) -> sa.Column[int]:
    return sa.Column("account_id", sa.Integer,
                     sa.ForeignKey("exchange_accounts.id", ondelete="CASCADE"),
                     nullable=False, primary_key=primary_key)


def _bot(nullable: bool = False, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column("bot_id", sa.Integer, sa.ForeignKey("bots.id", ondelete="CASCADE"),
                     nullable=nullable, primary_key=primary_key)


def upgrade() -> None:
    op.create_table(
        "exchange_accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _tenant(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("exchange", sa.String(64), nullable=False),
        sa.Column("quote_currency", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("initial_cash", MONEY, nullable=False, server_default="0"),
        sa.Column("created_at", UTC_DATETIME, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("tenant_id", "name", name="uq_exchange_accounts_tenant_name"),
    )
    op.create_index("ix_exchange_accounts_tenant_id", "exchange_accounts", ["tenant_id"])
    op.create_table(
        "exchange_credentials",
        _account(primary_key=True),
        sa.Column("slot", sa.SmallInteger, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("key_hint", sa.String(16), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("changed_at", UTC_DATETIME, nullable=False),
    )
    op.create_table(
        "bots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _tenant(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
                  nullable=False),
        _account(),
        sa.Column("symbols", sa.JSON, nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("allocation", MONEY, nullable=False),
        sa.Column("sizing", sa.String(16), nullable=False),
        sa.Column("size_value", MONEY, nullable=False),
        sa.Column("limits", sa.JSON, nullable=False),
        sa.Column("fee_pct", MONEY, nullable=False, server_default="0"),
        sa.Column("slippage_bps", MONEY, nullable=False, server_default="0"),
        sa.Column("direction", sa.String(8), nullable=False, server_default="long"),
        sa.Column("fill", sa.String(12), nullable=False, server_default="close"),
        sa.Column("fee_fixed", MONEY, nullable=False, server_default="0"),
        sa.Column("whole_units", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("atr_period", sa.Integer, nullable=False, server_default="14"),
        sa.Column("atr_multiple", MONEY, nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False, server_default="stopped"),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("last_bar_ns", BAR_TIME, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", UTC_DATETIME, nullable=True),
        sa.Column("started_at", UTC_DATETIME, nullable=True),
        sa.Column("reconciled_at", UTC_DATETIME, nullable=True),
        sa.UniqueConstraint("tenant_id", "name", name="uq_bots_tenant_name"),
    )
    op.create_index("ix_bots_tenant_id", "bots", ["tenant_id"])
    op.create_index("ix_bots_account_id", "bots", ["account_id"])
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _tenant(),
        _bot(nullable=True),
        _account(),
        sa.Column("client_order_id", sa.String(40), nullable=False),
        sa.Column("exchange_order_id", sa.String(64), nullable=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("limit_price", MONEY, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_quantity", MONEY, nullable=False, server_default="0"),
        sa.Column("average_price", MONEY, nullable=True),
        sa.Column("fee", MONEY, nullable=False, server_default="0"),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("bar_ns", BAR_TIME, nullable=False, server_default="0"),
        sa.Column("reference_price", MONEY, nullable=False, server_default="0"),
        sa.Column("reserved", MONEY, nullable=False, server_default="0"),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("account_id", "client_order_id",
                            name="uq_orders_account_client_id"),
    )
    op.create_index("ix_orders_tenant_id", "orders", ["tenant_id", "id"])
    op.create_index("ix_orders_bot_id", "orders", ["bot_id", "id"])
    op.create_index("ix_orders_status", "orders", ["status", "account_id"])
    op.create_table(
        "fills",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _account(),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("trade_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=False),
        sa.Column("fee_currency", sa.String(16), nullable=False),
        sa.Column("executed_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("account_id", "trade_id", name="uq_fills_account_trade_id"),
    )
    op.create_index("ix_fills_order_id", "fills", ["order_id"])
    op.create_table(
        "positions",
        _bot(primary_key=True),
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("average_price", MONEY, nullable=False),
        sa.Column("realised_pnl", MONEY, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    op.create_table(
        "trading_states",
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("scope_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("monitor", sa.JSON, nullable=True),
        sa.Column("changed_at", UTC_DATETIME, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "kill_switches",
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("scope_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("engaged", sa.Boolean, nullable=False),
        sa.Column("rearmed", sa.Boolean, nullable=False),
        sa.Column("flatten", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_at", UTC_DATETIME, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "bot_marks",
        _bot(primary_key=True),
        sa.Column("ts", UTC_DATETIME, primary_key=True),
        sa.Column("equity", MONEY, nullable=False),
        sa.Column("cash", MONEY, nullable=False),
        sa.Column("exposure", MONEY, nullable=False),
        sa.Column("realised_pnl", MONEY, nullable=False),
        sa.Column("unrealised_pnl", MONEY, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bot_marks")
    op.drop_table("kill_switches")
    op.drop_table("trading_states")
    op.drop_table("positions")
    op.drop_index("ix_fills_order_id", table_name="fills")
    op.drop_table("fills")
    for index in ("ix_orders_status", "ix_orders_bot_id", "ix_orders_tenant_id"):
        op.drop_index(index, table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_bots_account_id", table_name="bots")
    op.drop_index("ix_bots_tenant_id", table_name="bots")
    op.drop_table("bots")
    op.drop_table("exchange_credentials")
    op.drop_index("ix_exchange_accounts_tenant_id", table_name="exchange_accounts")
    op.drop_table("exchange_accounts")
