"""Stored signals in SQL (the ``SignalRepository`` port): idempotent inserts, pages.

An insert that stores anything new on PostgreSQL also sends ``NOTIFY signalfactory_signals``
(payload: the highest new id) in the same transaction; PostgreSQL delivers it at commit, so
a listening API process learns of signals stored by a worker or the CLI at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage import signal_pages
from signalfactory.adapters.storage.tables import (
    instruments,
    signals,
    strategies,
    strategy_versions,
    subscriptions,
)
from signalfactory.domain.signals import (
    NOTIFY_CHANNEL,
    InsertedSignal,
    NewSignal,
    SignalQuery,
    SignalRow,
    StoredSignal,
)
from signalfactory.domain.strategies.stored import BuiltinInterest

_IDENTITY = ["strategy_version_id", "instrument_id", "timeframe", "bar_ts", "side"]


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes that are UTC; compare instants, not spellings."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _key(version_id: int, instrument_id: int, timeframe: str, bar_ts: datetime,
         side: str) -> tuple[int, int, str, datetime, str]:
    return version_id, instrument_id, timeframe, _utc(bar_ts), side


class SqlSignalRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert_new(self, new: Sequence[NewSignal]) -> list[InsertedSignal]:
        if not new:
            return []
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        where = {_key(s.strategy_version_id, s.instrument_id, s.timeframe, s.bar_ts, s.side): i
                 for i, s in enumerate(new)}
        rows = [{"strategy_version_id": s.strategy_version_id,
                 "instrument_id": s.instrument_id, "timeframe": s.timeframe,
                 "bar_ts": s.bar_ts, "side": s.side, "score": s.score, "price": s.price,
                 "values": dict(s.values)} for s in new]
        # One statement executed with many parameter sets: its compiled form is cached, and
        # SQLAlchemy batches the rows into multi-row INSERTs ("insertmanyvalues"); RETURNING
        # names exactly the rows that were new (rowcount is unreliable for these).
        stmt = (dialect.insert(signals).on_conflict_do_nothing(index_elements=_IDENTITY)
                .returning(signals.c.id, signals.c.created_at, signals.c.strategy_version_id,
                           signals.c.instrument_id, signals.c.timeframe, signals.c.bar_ts,
                           signals.c.side))
        created = [InsertedSignal(int(r.id), r.created_at,
                                  where[_key(r.strategy_version_id, r.instrument_id,
                                             r.timeframe, r.bar_ts, r.side)])
                   for r in self.conn.execute(stmt, rows)]
        if created and self.conn.dialect.name == "postgresql":
            self.conn.execute(sa.select(sa.func.pg_notify(
                NOTIFY_CHANNEL, str(max(c.id for c in created)))))
        return created

    def page(self, query: SignalQuery) -> list[StoredSignal]:
        select = (sa.select(signals.c.id, signals.c.bar_ts, signals.c.side, signals.c.score,
                            signals.c.price, signals.c["values"], signals.c.timeframe,
                            signals.c.created_at, instruments.c.symbol,
                            strategies.c.name.label("strategy"),
                            strategy_versions.c.version.label("strategy_version"),
                            strategy_versions.c.code_hash)
                  .join(instruments, instruments.c.id == signals.c.instrument_id)
                  .join(strategy_versions,
                        strategy_versions.c.id == signals.c.strategy_version_id)
                  .join(strategies, strategies.c.id == strategy_versions.c.strategy_id)
                  .where(sa.or_(strategies.c.tenant_id == query.tenant_id,
                                strategies.c.builtin.is_(sa.true())))
                  .order_by(signals.c.id.desc() if query.newest_first else signals.c.id)
                  .limit(query.limit))
        conditions: list[sa.ColumnElement[bool]] = []
        if query.since is not None:
            conditions.append(signals.c.bar_ts >= query.since)
        if query.symbol is not None:
            conditions.append(instruments.c.symbol == query.symbol)
        if query.strategy is not None:
            conditions.append(strategies.c.name == query.strategy)
        if query.side is not None:
            conditions.append(signals.c.side == query.side)
        if query.min_score is not None:
            conditions.append(signals.c.score >= query.min_score)
        if query.after_id is not None:
            conditions.append(signals.c.id < query.after_id if query.newest_first
                              else signals.c.id > query.after_id)
        return [StoredSignal(id=int(r.id), bar_ts=r.bar_ts, symbol=r.symbol, side=r.side,
                             strategy=r.strategy, strategy_version=int(r.strategy_version),
                             timeframe=r.timeframe, score=r.score, price=r.price,
                             values=r._mapping["values"] or {},
                             created_at=r.created_at, code_hash=r.code_hash)
                for r in self.conn.execute(select.where(*conditions))]

    def page_rows(self, query: SignalQuery) -> list[SignalRow]:
        return signal_pages.page_rows(self.conn, query)

    def count_created_since(self, tenant_id: int, since: datetime) -> int:
        return int(self.conn.execute(
            sa.select(sa.func.count()).select_from(signals)
            .join(strategy_versions, strategy_versions.c.id == signals.c.strategy_version_id)
            .join(strategies, strategies.c.id == strategy_versions.c.strategy_id)
            .where(sa.or_(strategies.c.tenant_id == tenant_id,
                          strategies.c.builtin.is_(sa.true())),
                   signals.c.created_at >= since)).scalar_one())

    def builtin_interest(self) -> BuiltinInterest:
        names: set[str] = set()
        for (listed,) in self.conn.execute(sa.select(subscriptions.c.strategies)):
            if not listed:
                return BuiltinInterest(every=True)
            names.update(str(n) for n in listed)
        return BuiltinInterest(names=frozenset(names))
