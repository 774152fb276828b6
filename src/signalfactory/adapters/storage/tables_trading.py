"""Trading tables (migration 0009): exchange accounts and their sealed credentials, bots,
orders, fills, positions, trading states and kill switches per scope, and equity marks.

Defined on the one ``metadata`` of ``tables`` (imported at its end), so backups, checksums and
retention see them like every other table.

Idempotency lives in the unique keys: an order is one row per (account, client order id) and
a fill one row per (account, exchange trade id), so a decision made again after a crash and a
trade fetched twice both find the row that is already there.
"""

from __future__ import annotations

import sqlalchemy as sa

from signalfactory.adapters.storage.tables import UTCDateTime, metadata

Money = sa.Float(53)
#: nanosecond timestamps of bars (BIGINT; SQLite's INTEGER is 64-bit already)
BarTime = sa.BigInteger().with_variant(sa.Integer, "sqlite")

exchange_accounts = sa.Table(
    "exchange_accounts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("exchange", sa.String(64), nullable=False),
    sa.Column("quote_currency", sa.String(16), nullable=False),
    sa.Column("options", sa.JSON, nullable=False, default=dict),
    sa.Column("initial_cash", Money, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "name", name="uq_exchange_accounts_tenant_name"),
)

# Two slots per account; the key, secret and password are sealed together (AES-256-GCM).
exchange_credentials = sa.Table(
    "exchange_credentials", metadata,
    sa.Column("account_id", sa.Integer,
              sa.ForeignKey("exchange_accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("slot", sa.SmallInteger, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("key_hint", sa.String(16), nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("changed_at", UTCDateTime, nullable=False),
)

bots = sa.Table(
    "bots", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("strategy_version_id", sa.Integer, sa.ForeignKey("strategy_versions.id"),
              nullable=False),
    sa.Column("account_id", sa.Integer,
              sa.ForeignKey("exchange_accounts.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("symbols", sa.JSON, nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("allocation", Money, nullable=False),
    sa.Column("sizing", sa.String(16), nullable=False),
    sa.Column("size_value", Money, nullable=False),
    sa.Column("limits", sa.JSON, nullable=False),
    sa.Column("fee_pct", Money, nullable=False, server_default="0"),
    sa.Column("slippage_bps", Money, nullable=False, server_default="0"),
    sa.Column("direction", sa.String(8), nullable=False, server_default="long"),
    sa.Column("fill", sa.String(12), nullable=False, server_default="close"),
    sa.Column("fee_fixed", Money, nullable=False, server_default="0"),
    sa.Column("whole_units", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("atr_period", sa.Integer, nullable=False, server_default="14"),
    sa.Column("atr_multiple", Money, nullable=False, server_default="1"),
    sa.Column("status", sa.String(16), nullable=False, server_default="stopped"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # the runner's bookkeeping: progress, lease (one active runner per bot). A bot's cash is
    # not kept: it follows from its allocation and positions (domain.trading.capital).
    sa.Column("last_bar_ns", BarTime, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("reconciled_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("tenant_id", "name", name="uq_bots_tenant_name"),
)

orders = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("bot_id", sa.Integer, sa.ForeignKey("bots.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("account_id", sa.Integer,
              sa.ForeignKey("exchange_accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("client_order_id", sa.String(40), nullable=False),
    sa.Column("exchange_order_id", sa.String(64), nullable=True),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("type", sa.String(8), nullable=False),
    sa.Column("quantity", Money, nullable=False),
    sa.Column("limit_price", Money, nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("filled_quantity", Money, nullable=False, server_default="0"),
    sa.Column("average_price", Money, nullable=True),
    sa.Column("fee", Money, nullable=False, server_default="0"),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("bar_ns", BarTime, nullable=False, server_default="0"),
    sa.Column("reference_price", Money, nullable=False, server_default="0"),
    sa.Column("reserved", Money, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # one row per decision: the id is derived from the intent and written before sending
    sa.UniqueConstraint("account_id", "client_order_id", name="uq_orders_account_client_id"),
    sa.Index("ix_orders_tenant_id", "tenant_id", "id"),
    sa.Index("ix_orders_bot_id", "bot_id", "id"),
    # reconciliation and reservations walk the orders that have not ended
    sa.Index("ix_orders_status", "status", "account_id"),
)

fills = sa.Table(
    "fills", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.Integer,
              sa.ForeignKey("exchange_accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("trade_id", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity", Money, nullable=False),
    sa.Column("price", Money, nullable=False),
    sa.Column("fee", Money, nullable=False),
    sa.Column("fee_currency", sa.String(16), nullable=False),
    sa.Column("executed_at", UTCDateTime, nullable=False),
    # an exchange trade is stored once, however often it is fetched
    sa.UniqueConstraint("account_id", "trade_id", name="uq_fills_account_trade_id"),
)

positions = sa.Table(
    "positions", metadata,
    sa.Column("bot_id", sa.Integer, sa.ForeignKey("bots.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("quantity", Money, nullable=False),
    sa.Column("average_price", Money, nullable=False),
    sa.Column("realised_pnl", Money, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# scope: global (scope_id 0), tenant (tenant id), bot (bot id)
trading_states = sa.Table(
    "trading_states", metadata,
    sa.Column("scope", sa.String(8), primary_key=True),
    sa.Column("scope_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # what the loss limits remember between marks (risk.LossMonitor), NULL before the first
    sa.Column("monitor", sa.JSON, nullable=True),
    sa.Column("changed_at", UTCDateTime, nullable=False),
    sa.Column("changed_by", sa.String(200), nullable=False),
)

kill_switches = sa.Table(
    "kill_switches", metadata,
    sa.Column("scope", sa.String(8), primary_key=True),
    sa.Column("scope_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("engaged", sa.Boolean, nullable=False),
    sa.Column("rearmed", sa.Boolean, nullable=False),
    sa.Column("flatten", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("changed_at", UTCDateTime, nullable=False),
    sa.Column("changed_by", sa.String(200), nullable=False),
)

bot_marks = sa.Table(
    "bot_marks", metadata,
    sa.Column("bot_id", sa.Integer, sa.ForeignKey("bots.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("ts", UTCDateTime, primary_key=True),
    sa.Column("equity", Money, nullable=False),
    sa.Column("cash", Money, nullable=False),
    sa.Column("exposure", Money, nullable=False),
    sa.Column("realised_pnl", Money, nullable=False),
    sa.Column("unrealised_pnl", Money, nullable=False),
)
