"""Stored signals as live-stream events (``SignalEventSource``), read on the primary."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from signalfactory.adapters.storage.tables import (
    instruments,
    signals,
    strategies,
    strategy_versions,
)
from signalfactory.adapters.storage.unit_of_work import translated_errors
from signalfactory.domain.streaming import SignalEvent, StreamFilter, iso_utc


def _event_query() -> sa.Select[tuple[object, ...]]:
    return (sa.select(signals.c.id, signals.c.bar_ts, signals.c.side, signals.c.score,
                      signals.c.price, signals.c["values"], signals.c.timeframe,
                      signals.c.created_at, instruments.c.symbol,
                      strategies.c.name.label("strategy"),
                      strategy_versions.c.version.label("strategy_version"),
                      strategy_versions.c.code_hash, strategies.c.tenant_id, strategies.c.builtin)
            .join(instruments, instruments.c.id == signals.c.instrument_id)
            .join(strategy_versions, strategy_versions.c.id == signals.c.strategy_version_id)
            .join(strategies, strategies.c.id == strategy_versions.c.strategy_id)
            .order_by(signals.c.id))


def event_from_row(row: Row[tuple[object, ...]]) -> SignalEvent:
    m = row._mapping
    payload = {"id": int(m["id"]), "bar_ts": iso_utc(m["bar_ts"]), "symbol": m["symbol"],
               "side": m["side"], "strategy": m["strategy"],
               "strategy_version": int(m["strategy_version"]), "code_hash": m["code_hash"],
               "timeframe": m["timeframe"],
               "score": m["score"], "price": m["price"], "values": dict(m["values"] or {}),
               "created_at": iso_utc(m["created_at"])}
    return SignalEvent(payload, tenant_id=int(m["tenant_id"]), builtin=bool(m["builtin"]))


class SqlSignalEventSource:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def commits_in_id_order(self) -> bool:
        # SQLite has one writer at a time; PostgreSQL hands out ids before commit.
        return self.engine.dialect.name == "sqlite"

    def _read(self, query: sa.Select[tuple[object, ...]]) -> list[SignalEvent]:
        with translated_errors(), self.engine.connect() as conn:
            return [event_from_row(r) for r in conn.execute(query)]

    def max_id(self) -> int:
        with translated_errors(), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(signals.c.id))).scalar() or 0)

    def events_after(self, after_id: int, ranges: Iterable[tuple[int, int]] = (), *,
                     limit: int = 5000) -> list[SignalEvent]:
        where = [signals.c.id > after_id,
                 *(signals.c.id.between(lo, hi) for lo, hi in ranges)]
        return self._read(_event_query().where(sa.or_(*where)).limit(limit))

    def replay(self, flt: StreamFilter, after_id: int, *,
               limit: int = 1000) -> list[SignalEvent]:
        query = (_event_query().where(signals.c.id > after_id,
                                      sa.or_(strategies.c.tenant_id == flt.tenant_id,
                                             strategies.c.builtin.is_(sa.true())))
                 .limit(limit))
        if flt.strategies is not None:
            query = query.where(strategies.c.name.in_(sorted(flt.strategies)))
        if flt.symbols is not None:
            query = query.where(instruments.c.symbol.in_(sorted(flt.symbols)))
        if flt.min_score is not None:
            query = query.where(signals.c.score >= flt.min_score)
        return self._read(query)
