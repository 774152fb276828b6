"""Evaluating strategies over stored bars and storing their signals, idempotently.

A signal is unique per (strategy version, instrument, timeframe, bar time, side): running
the same evaluation again inserts nothing new. Each evaluation is recorded as a strategy run
in the same unit of work as its signals; a failing strategy is recorded as failed with its
error, and the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError, SignalFactoryError
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.signals import NewSignal, SignalQuery, SignalRow, StoredSignal
from signalfactory.domain.strategies import SignalRecord, Strategy, signal_records
from signalfactory.domain.strategies.stored import StoredStrategy, StrategyRun
from signalfactory.domain.symbols import check_symbol
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns, ns_to_datetime
from signalfactory.observability.recording import metrics
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.signals.store import store_signals
from signalfactory.services.strategies.catalog import get_strategy, instantiate, list_strategies


def finite_values(values: Mapping[str, float]) -> dict[str, float]:
    """The values that decided a signal, without NaN or infinities (JSON has neither)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and math.isfinite(float(v))}


def evaluate_universe(strategy: Strategy, universe: BarUniverse) -> Evaluation:
    if universe.n_bars == 0:
        raise BadInputError("no bars to evaluate; ingest data or run `signalfactory sample`")
    return strategy.evaluate(universe)


def new_signals(records: Sequence[SignalRecord], universe: BarUniverse, version_id: int,
                timeframe: Timeframe) -> list[NewSignal]:
    """The records as signals of one strategy version, ready to store."""
    ids = universe.instrument_ids
    return [NewSignal(strategy_version_id=version_id, instrument_id=int(ids[r.instrument]),
                      symbol=r.symbol, timeframe=timeframe.name, bar_ts=ns_to_datetime(r.ts),
                      side=r.side, score=r.score, price=float(r.price),
                      values=finite_values(r.values))
            for r in records]


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
    started = platform.clock.now()
    timeframe = Timeframe.parse(stored.timeframe)
    status, error, found, written, n_inst = "succeeded", None, 0, 0, 0
    try:
        strategy = instantiate(stored, platform, "signals")
        bars = universe if universe is not None else load_universe(
            platform, timeframe, symbols=symbols, tag=universe_tag, end=until)
        n_inst = bars.n_instruments
        evaluation = evaluate_universe(strategy, bars)
        records = signal_records(evaluation, since_ts=datetime_to_ns(since) if since else None)
        found = len(records)
        signals = new_signals(records, bars, stored.version_id, timeframe)
        with platform.database.write() as uow:
            written = len(store_signals(platform, uow,
                                        [(stored, s) for s in signals]).inserted)
            run_id = _record_run(platform, uow, stored, timeframe, "succeeded", None, n_inst,
                                 written, started)
        if (m := metrics()) is not None:
            m.SIGNALS_PRODUCED.labels(stored.name).inc(written)
        if written:
            platform.cache.invalidate("signals")
    except (SignalFactoryError, ValueError, ArithmeticError, KeyError, TypeError) as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        with platform.database.write() as uow:
            run_id = _record_run(platform, uow, stored, timeframe, "failed", error, n_inst, 0,
                                 started)
    if (m := metrics()) is not None:
        m.LOGIC_EXECUTIONS.labels(stored.name, status).inc()
    return RunReport(stored.name, stored.version, status, n_inst, found, written, error, run_id)


def _record_run(platform: Platform, uow: UnitOfWork, stored: StoredStrategy,
                timeframe: Timeframe, status: str, error: str | None, n_inst: int,
                written: int, started: datetime) -> int:
    return uow.strategies.record_run(StrategyRun(
        strategy_version_id=stored.version_id, timeframe=timeframe.name, status=status,
        error=error, instruments=n_inst, signals_written=written, started_at=started,
        finished_at=platform.clock.now()))


def run_all(platform: Platform, tenant_id: int, names: Sequence[str] | None = None, *,
            universe_tag: str | None = None, symbols: Sequence[str] | None = None,
            since: datetime | None = None, until: datetime | None = None) -> list[RunReport]:
    """Evaluate several strategies; one failing never stops the others."""
    with platform.database.read(primary=True) as uow:
        chosen = ([get_strategy(uow, tenant_id, n) for n in names] if names
                  else list_strategies(uow, tenant_id))
    return [run_stored(platform, s, universe_tag=universe_tag, symbols=symbols, since=since,
                       until=until) for s in chosen]


def query_signals(uow: UnitOfWork, tenant_id: int, *, since: datetime | None = None,
                  symbol: str | None = None, strategy: str | None = None,
                  side: str | None = None, min_score: float | None = None,
                  after_id: int | None = None, limit: int = 100) -> list[StoredSignal]:
    """Signals visible to a tenant in id order, so a cursor (``after_id``) pages forward
    without gaps."""
    if symbol is not None:
        check_symbol(symbol)
    return uow.signals.page(SignalQuery(tenant_id=tenant_id, since=since, symbol=symbol,
                                        strategy=strategy, side=side, min_score=min_score,
                                        after_id=after_id, limit=limit))


def signal_page_rows(uow: UnitOfWork, tenant_id: int, *, since: datetime | None = None,
                     symbol: str | None = None, strategy: str | None = None,
                     side: str | None = None, min_score: float | None = None,
                     after_id: int | None = None, limit: int = 100) -> list[SignalRow]:
    """``query_signals``' page read lean for serving (the API serialises the rows as they
    are)."""
    if symbol is not None:
        check_symbol(symbol)
    return uow.signals.page_rows(SignalQuery(tenant_id=tenant_id, since=since, symbol=symbol,
                                             strategy=strategy, side=side,
                                             min_score=min_score, after_id=after_id,
                                             limit=limit))
