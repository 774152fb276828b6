"""Evaluating strategies over stored bars and storing their signals, idempotently.

A signal is unique per (strategy version, instrument, timeframe, bar time, side): running
the same evaluation again inserts nothing new. Each evaluation is recorded as a strategy run;
a failing strategy is recorded as failed with its error, and the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import (
    instruments,
    signals,
    strategies,
    strategy_runs,
    strategy_versions,
)
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError, SignalFactoryError
from signalfactory.domain.strategies import SignalRecord, Strategy, signal_records
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.metrics import LOGIC_EXECUTIONS, SIGNALS_PRODUCED
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import StoredStrategy, get_strategy, list_strategies


def ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def datetime_to_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000


def _clean_values(values: Any) -> dict[str, float]:
    return {k: float(v) for k, v in dict(values).items()
            if isinstance(v, int | float) and math.isfinite(float(v))}


def evaluate_universe(strategy: Strategy, universe: BarUniverse) -> Any:
    if universe.n_bars == 0:
        raise BadInputError("no bars to evaluate; ingest data or run `signalfactory sample`")
    return strategy.evaluate(universe)


def signal_rows(records: Sequence[SignalRecord], universe: BarUniverse, version_id: int,
                timeframe: Timeframe) -> list[dict[str, Any]]:
    ids = universe.instrument_ids
    return [{"strategy_version_id": version_id, "instrument_id": int(ids[r.instrument]),
             "timeframe": timeframe.name, "bar_ts": ns_to_datetime(r.ts), "side": r.side,
             "score": r.score, "price": float(r.price), "values": _clean_values(r.values)}
            for r in records]


def insert_signals(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert, skipping any signal that already exists; returns how many were new."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    written = 0
    for start in range(0, len(rows), 2000):
        chunk = rows[start:start + 2000]
        stmt = insert(signals).values(chunk).on_conflict_do_nothing(
            index_elements=["strategy_version_id", "instrument_id", "timeframe", "bar_ts",
                            "side"]).returning(signals.c.id)
        # rowcount is unreliable for multi-row inserts on some drivers; RETURNING is exact.
        written += len(conn.execute(stmt).all())
    return written


@dataclass(frozen=True)
class RunReport:
    strategy: str
    version: int
    status: str
    instruments: int
    signals_found: int
    signals_written: int
    error: str | None = None
    run_id: int | None = None


def run_stored(platform: Platform, stored: StoredStrategy, *, universe_tag: str | None = None,
               symbols: Sequence[str] | None = None, since: datetime | None = None,
               until: datetime | None = None, universe: BarUniverse | None = None) -> RunReport:
    """Evaluate one stored strategy version and store its signals; failures are recorded."""
    started = datetime.now(UTC)
    timeframe = Timeframe.parse(stored.timeframe)
    status, error, found, written, n_inst = "succeeded", None, 0, 0, 0
    try:
        strategy = stored.instantiate()
        bars = universe if universe is not None else load_universe(
            platform, timeframe, symbols=symbols, tag=universe_tag, end=until)
        n_inst = bars.n_instruments
        evaluation = evaluate_universe(strategy, bars)
        records = signal_records(evaluation, since_ts=datetime_to_ns(since) if since else None)
        found = len(records)
        rows = signal_rows(records, bars, stored.version_id, timeframe)
        with platform.engine.begin() as conn:
            written = insert_signals(conn, rows)
            run_id = _record_run(conn, stored, timeframe, "succeeded", None, n_inst, written,
                                 started)
        SIGNALS_PRODUCED.labels(stored.name).inc(written)
        if written:
            platform.cache.invalidate("signals")
    except (SignalFactoryError, ValueError, ArithmeticError, KeyError, TypeError) as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        with platform.engine.begin() as conn:
            run_id = _record_run(conn, stored, timeframe, "failed", error, n_inst, 0, started)
    LOGIC_EXECUTIONS.labels(stored.name, status).inc()
    return RunReport(stored.name, stored.version, status, n_inst, found, written, error, run_id)


def _record_run(conn: Connection, stored: StoredStrategy, timeframe: Timeframe, status: str,
                error: str | None, n_inst: int, written: int, started: datetime) -> int:
    return int(conn.execute(strategy_runs.insert().values(
        strategy_version_id=stored.version_id, timeframe=timeframe.name, status=status,
        error=error, instruments=n_inst, signals_written=written, started_at=started,
        finished_at=datetime.now(UTC))).inserted_primary_key[0])


def run_all(platform: Platform, tenant_id: int, names: Sequence[str] | None = None,
            **kwargs: Any) -> list[RunReport]:
    """Evaluate several strategies; one failing never stops the others."""
    with platform.engine.connect() as conn:
        chosen = ([get_strategy(conn, tenant_id, n) for n in names] if names
                  else list_strategies(conn, tenant_id))
    return [run_stored(platform, s, **kwargs) for s in chosen]


def query_signals(conn: Connection, tenant_id: int, *, since: datetime | None = None,
                  symbol: str | None = None, strategy: str | None = None,
                  side: str | None = None, min_score: float | None = None,
                  after_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Signals visible to a tenant, newest id first when paginating backwards is not needed:
    ordered by id ascending so a cursor (``after_id``) pages forward without gaps."""
    query = (sa.select(signals.c.id, signals.c.bar_ts, signals.c.side, signals.c.score,
                       signals.c.price, signals.c["values"], signals.c.timeframe,
                       signals.c.created_at, instruments.c.symbol,
                       strategies.c.name.label("strategy"),
                       strategy_versions.c.version.label("strategy_version"))
             .join(instruments, instruments.c.id == signals.c.instrument_id)
             .join(strategy_versions, strategy_versions.c.id == signals.c.strategy_version_id)
             .join(strategies, strategies.c.id == strategy_versions.c.strategy_id)
             .where(sa.or_(strategies.c.tenant_id == tenant_id,
                           strategies.c.builtin.is_(sa.true())))
             .order_by(signals.c.id).limit(limit))
    if since is not None:
        query = query.where(signals.c.bar_ts >= since)
    if symbol is not None:
        query = query.where(instruments.c.symbol == symbol)
    if strategy is not None:
        query = query.where(strategies.c.name == strategy)
    if side is not None:
        query = query.where(signals.c.side == side)
    if min_score is not None:
        query = query.where(signals.c.score >= min_score)
    if after_id is not None:
        query = query.where(signals.c.id > after_id)
    out = []
    for row in conn.execute(query):
        item = dict(row._mapping)
        item["bar_ts"] = item["bar_ts"].isoformat() if item["bar_ts"] else None
        item["created_at"] = item["created_at"].isoformat() if item["created_at"] else None
        out.append(item)
    return out


def latest_bar_ts(universe: BarUniverse) -> int | None:
    return int(universe.ts.max()) if universe.n_bars else None
