"""Market-data sources, their breaker state and recorded gaps in SQL (``SourceRepository``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.jobs import as_utc
from signalfactory.adapters.storage.tables import source_gaps, sources
from signalfactory.domain.errors import ConflictError, NotFoundError
from signalfactory.domain.sources import (
    BreakerCounter,
    BreakerState,
    NewSource,
    RunState,
    Source,
    SourceGap,
)


def _utc(value: datetime | None) -> datetime:
    found = as_utc(value)
    if found is None:  # NOT NULL columns
        raise NotFoundError("a stored source has no time stamp")
    return found


def _source(row: sa.RowMapping) -> Source:
    return Source(
        id=int(row["id"]), name=row["name"], kind=row["kind"], params=dict(row["params"]),
        symbols=tuple(row["symbols"]), timeframe=row["timeframe"], cron=row["cron"],
        paused=bool(row["paused"]), created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        run=RunState(last_run_at=as_utc(row["last_run_at"]),
                     last_success_at=as_utc(row["last_success_at"]),
                     last_outcome=row["last_outcome"], last_error=row["last_error"],
                     last_job_id=row["last_job_id"],
                     last_rows=None if row["last_rows"] is None else int(row["last_rows"])),
        breaker=_breaker(row))


def _breaker(row: sa.RowMapping) -> BreakerState:
    return BreakerState(state=row["breaker_state"], failures=int(row["breaker_failures"]),
                        successes=int(row["breaker_successes"]),
                        opened_at=as_utc(row["breaker_opened_at"]))


_COUNTERS = {"failures": sources.c.breaker_failures, "successes": sources.c.breaker_successes}


class SqlSourceRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, new: NewSource, now: datetime) -> Source:
        try:
            # A savepoint: a taken name leaves the caller's transaction usable.
            with self.conn.begin_nested():
                self.conn.execute(sources.insert().values(
                    name=new.name, kind=new.kind, params=new.params,
                    symbols=list(new.symbols), timeframe=new.timeframe, cron=new.cron,
                    paused=new.paused, created_at=now, updated_at=now))
        except IntegrityError:
            raise ConflictError(f"a source named {new.name!r} exists; choose another name "
                                "or remove it first") from None
        found = self.get(new.name)
        if found is None:  # cannot happen inside one transaction; keeps the type honest
            raise ConflictError(f"source {new.name!r} vanished while being stored")
        return found

    def get(self, name: str) -> Source | None:
        row = self.conn.execute(sa.select(sources).where(sources.c.name == name)
                                ).mappings().first()
        return _source(row) if row is not None else None

    def all(self) -> list[Source]:
        rows = self.conn.execute(sa.select(sources).order_by(sources.c.name)).mappings()
        return [_source(r) for r in rows]

    def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        done = self.conn.execute(sources.update().where(sources.c.name == name)
                                 .values(paused=paused, updated_at=now))
        return done.rowcount > 0

    def delete(self, name: str) -> bool:
        # SQLite enforces no foreign keys unless asked: remove the gaps explicitly.
        owned = sa.select(sources.c.id).where(sources.c.name == name)
        self.conn.execute(source_gaps.delete().where(source_gaps.c.source_id.in_(owned)))
        return self.conn.execute(sources.delete().where(sources.c.name == name)).rowcount > 0

    def record_run(self, name: str, run: RunState) -> None:
        values: dict[str, object] = {
            key: value for key, value in (
                ("last_run_at", run.last_run_at), ("last_success_at", run.last_success_at),
                ("last_outcome", run.last_outcome), ("last_job_id", run.last_job_id),
                ("last_rows", run.last_rows)) if value is not None}
        values["last_error"] = run.last_error
        self.conn.execute(sources.update().where(sources.c.name == name).values(**values))

    # -- the circuit breaker ------------------------------------------------------------
    def breaker(self, name: str) -> BreakerState:
        row = self.conn.execute(sa.select(
            sources.c.breaker_state, sources.c.breaker_failures, sources.c.breaker_successes,
            sources.c.breaker_opened_at).where(sources.c.name == name)).mappings().first()
        if row is None:
            raise NotFoundError(f"no source {name!r}")
        return _breaker(row)

    def set_breaker_state(self, name: str, state: str, *, expect: str | None = None,
                          opened_at: datetime | None = None) -> bool:
        query = sources.update().where(sources.c.name == name)
        if expect is not None:
            query = query.where(sources.c.breaker_state == expect)
        values: dict[str, object] = {"breaker_state": state}
        if opened_at is not None:
            values["breaker_opened_at"] = opened_at
        return self.conn.execute(query.values(**values)).rowcount > 0

    def bump_breaker(self, name: str, counter: BreakerCounter) -> None:
        column = _COUNTERS[counter]
        self.conn.execute(sources.update().where(sources.c.name == name)
                          .values({column: column + 1}))

    def reset_breaker(self, name: str, counter: BreakerCounter) -> None:
        column = _COUNTERS[counter]
        # Only when not zero: a healthy source's every run would otherwise write the row.
        self.conn.execute(sources.update().where(sources.c.name == name, column != 0)
                          .values({column: 0}))

    # -- gaps ---------------------------------------------------------------------------
    def add_gaps(self, name: str, gaps: Sequence[SourceGap], now: datetime) -> int:
        if not gaps:
            return 0
        source_id = self.conn.execute(sa.select(sources.c.id).where(sources.c.name == name)
                                      ).scalar()
        if source_id is None:
            raise NotFoundError(f"no source {name!r}")
        known = {(r.symbol, r.timeframe, int(r.start_ts)) for r in self.conn.execute(
            sa.select(source_gaps.c.symbol, source_gaps.c.timeframe, source_gaps.c.start_ts)
            .where(source_gaps.c.source_id == source_id,
                   source_gaps.c.symbol.in_({g.symbol for g in gaps})))}
        fresh = [g for g in gaps if (g.symbol, g.timeframe, g.start_ns) not in known]
        unique = list({(g.symbol, g.timeframe, g.start_ns): g for g in fresh}.values())
        if unique:
            self.conn.execute(source_gaps.insert(), [
                {"source_id": source_id, "symbol": g.symbol, "timeframe": g.timeframe,
                 "start_ts": g.start_ns, "end_ts": g.end_ns, "kind": g.kind,
                 "detected_at": now} for g in unique])
        return len(unique)

    def gaps(self, name: str, *, symbol: str | None = None,
             timeframe: str | None = None) -> list[SourceGap]:
        query = (sa.select(source_gaps).join(sources, sources.c.id == source_gaps.c.source_id)
                 .where(sources.c.name == name))
        if symbol is not None:
            query = query.where(source_gaps.c.symbol == symbol)
        if timeframe is not None:
            query = query.where(source_gaps.c.timeframe == timeframe)
        rows = self.conn.execute(query.order_by(source_gaps.c.symbol, source_gaps.c.start_ts)
                                 ).mappings()
        return [SourceGap(symbol=r["symbol"], timeframe=r["timeframe"],
                          start_ns=int(r["start_ts"]), end_ns=int(r["end_ts"]), kind=r["kind"])
                for r in rows]
