"""Bots in SQL (``BotRepository``): definition, run status, and the runner's bookkeeping.

A bot's trading state is the ``bot`` scope row of ``trading_states`` (absent: active), read
with the bot so there is one place it is kept.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.jobs import as_utc
from signalfactory.adapters.storage.tables_trading import bots, trading_states
from signalfactory.adapters.storage.trading_accounts import utc
from signalfactory.domain.errors import ConflictError
from signalfactory.domain.trading.bots import ACTIVE, BOT, RUNNING, Bot, RiskLimits
from signalfactory.domain.trading.records import BotRuntime, NewBot


def limits_to_json(limits: RiskLimits) -> dict[str, Any]:
    return dataclasses.asdict(limits)


def limits_from_json(value: dict[str, Any] | None) -> RiskLimits:
    known = {f.name for f in dataclasses.fields(RiskLimits)}
    return RiskLimits(**{k: v for k, v in (value or {}).items() if k in known})


_STATE = sa.func.coalesce(trading_states.c.state, ACTIVE).label("trading_state")
_SELECT = sa.select(bots, _STATE).select_from(bots.outerjoin(
    trading_states, sa.and_(trading_states.c.scope == BOT, trading_states.c.scope_id == bots.c.id)))


_BY_ACCOUNT = _SELECT.where(bots.c.account_id == sa.bindparam("account_id")).order_by(bots.c.id)


def _bot(row: sa.RowMapping) -> Bot:
    return Bot(id=int(row["id"]), tenant_id=int(row["tenant_id"]), name=row["name"],
               strategy_version_id=int(row["strategy_version_id"]),
               account_id=int(row["account_id"]), symbols=tuple(row["symbols"]),
               timeframe=row["timeframe"], allocation=float(row["allocation"]),
               sizing=row["sizing"], size_value=float(row["size_value"]),
               limits=limits_from_json(row["limits"]), status=row["status"],
               state=row["trading_state"], created_at=utc(row["created_at"]),
               updated_at=utc(row["updated_at"]), fee_pct=float(row["fee_pct"]),
               slippage_bps=float(row["slippage_bps"]), direction=row["direction"],
               fill=row["fill"], fee_fixed=float(row["fee_fixed"]),
               whole_units=bool(row["whole_units"]), atr_period=int(row["atr_period"]),
               atr_multiple=float(row["atr_multiple"]))


class SqlBotRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, bot: NewBot, now: datetime) -> Bot:
        try:
            with self.conn.begin_nested():
                inserted = self.conn.execute(bots.insert().values(
                    tenant_id=bot.tenant_id, name=bot.name,
                    strategy_version_id=bot.strategy_version_id, account_id=bot.account_id,
                    symbols=list(bot.symbols), timeframe=bot.timeframe,
                    allocation=bot.allocation, sizing=bot.sizing, size_value=bot.size_value,
                    limits=limits_to_json(bot.limits), fee_pct=bot.fee_pct,
                    slippage_bps=bot.slippage_bps, direction=bot.direction, fill=bot.fill,
                    fee_fixed=bot.fee_fixed, whole_units=bot.whole_units,
                    atr_period=bot.atr_period, atr_multiple=bot.atr_multiple, status="stopped",
                    created_at=now, updated_at=now, last_bar_ns=0))
                new_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            raise ConflictError(f"a bot named {bot.name!r} exists; choose another name"
                                ) from None
        found = self.get(bot.tenant_id, new_id)
        if found is None:
            raise ConflictError(f"bot {new_id} vanished while being stored")
        return found

    def get(self, tenant_id: int | None, bot_id: int) -> Bot | None:
        query = _SELECT.where(bots.c.id == bot_id)
        if tenant_id is not None:
            query = query.where(bots.c.tenant_id == tenant_id)
        row = self.conn.execute(query).mappings().first()
        return _bot(row) if row is not None else None

    def find(self, *, tenant_id: int | None = None, status: str | None = None,
             account_id: int | None = None) -> list[Bot]:
        if account_id is not None and tenant_id is None and status is None:  # the order path
            rows = self.conn.execute(_BY_ACCOUNT, {"account_id": account_id}).mappings()
            return [_bot(r) for r in rows]
        query = _SELECT.order_by(bots.c.id)
        if tenant_id is not None:
            query = query.where(bots.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(bots.c.status == status)
        if account_id is not None:
            query = query.where(bots.c.account_id == account_id)
        return [_bot(r) for r in self.conn.execute(query).mappings()]

    def set_status(self, bot_id: int, status: str, now: datetime) -> None:
        values: dict[str, object] = {"status": status, "updated_at": now}
        if status == RUNNING:
            values["started_at"] = now
        self.conn.execute(bots.update().where(bots.c.id == bot_id).values(**values))

    def runtime(self, bot_id: int) -> BotRuntime | None:
        row = self.conn.execute(sa.select(
            bots.c.id, bots.c.last_bar_ns, bots.c.lease_owner, bots.c.lease_until,
            bots.c.started_at, bots.c.reconciled_at).where(bots.c.id == bot_id)
        ).mappings().first()
        if row is None:
            return None
        return BotRuntime(bot_id=int(row["id"]), last_bar_ns=int(row["last_bar_ns"]),
                          lease_owner=row["lease_owner"],
                          lease_until=as_utc(row["lease_until"]),
                          started_at=as_utc(row["started_at"]),
                          reconciled_at=as_utc(row["reconciled_at"]))

    def acquire_lease(self, bot_id: int, owner: str, until: datetime, now: datetime) -> bool:
        # One conditional write: free, expired or our own. Two runners racing for it both
        # run this UPDATE; the database lets exactly one of them match.
        taken = self.conn.execute(bots.update().where(
            bots.c.id == bot_id,
            sa.or_(bots.c.lease_owner.is_(None), bots.c.lease_until < now,
                   bots.c.lease_owner == owner)).values(lease_owner=owner, lease_until=until))
        return taken.rowcount == 1

    def release_lease(self, bot_id: int, owner: str) -> None:
        self.conn.execute(bots.update().where(bots.c.id == bot_id, bots.c.lease_owner == owner)
                          .values(lease_owner=None, lease_until=None))

    def set_progress(self, bot_id: int, last_bar_ns: int) -> None:
        self.conn.execute(bots.update().where(bots.c.id == bot_id,
                                              bots.c.last_bar_ns < last_bar_ns)
                          .values(last_bar_ns=last_bar_ns))

    def set_reconciled(self, bot_id: int, now: datetime) -> None:
        self.conn.execute(bots.update().where(bots.c.id == bot_id).values(reconciled_at=now))
