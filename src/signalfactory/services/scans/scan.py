"""The scanner: evaluate a strategy over a universe as of a date and rank today's signals.

Ranking is by score, highest first (a rule's ``score:`` expression, or the default strength
of the firing condition); ties are broken by symbol so a scan is reproducible. Only signals
on each instrument's last bar at or before ``as_of`` count: those are the recommendations
for that day. A scan of a stored strategy also stores those signals (idempotently).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.rules import check_enough_bars, check_rule
from signalfactory.domain.scans import NewScan, ScanResult, StoredScan
from signalfactory.domain.strategies import RuleStrategy, StrategyParam, signal_records
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import ns_to_datetime
from signalfactory.observability.recording import metrics
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.signals.evaluation import (
    evaluate_universe,
    finite_values,
    new_signals,
)
from signalfactory.services.signals.store import store_signals
from signalfactory.services.strategies.catalog import resolve

Progress = Callable[[float], None]


@dataclass(frozen=True)
class ScanRequest:
    tenant_id: int
    strategy: str | None = None
    rule: str | None = None
    universe: str | None = None
    as_of: datetime | None = None
    top: int | None = None
    timeframe: str | None = None
    parameters: Mapping[str, StrategyParam] | None = None
    side: str | None = None


# Bar times are int64 nanoseconds: the dates they can name.
EARLIEST_AS_OF = datetime(1678, 1, 1, tzinfo=UTC)
LATEST_AS_OF = datetime(2262, 4, 10, tzinfo=UTC)


def check_request(request: ScanRequest) -> None:
    """What can be checked without the database; ``run_scan`` checks it first too."""
    if request.as_of is not None:
        as_of = request.as_of if request.as_of.tzinfo else request.as_of.replace(tzinfo=UTC)
        if not EARLIEST_AS_OF <= as_of <= LATEST_AS_OF:
            raise BadInputError(f"as_of {request.as_of.date()} is out of range; give a date "
                                "between 1678-01-01 and 2262-04-10")
    if request.top is not None and not 1 <= request.top <= 10_000:
        raise BadInputError(f"top must be between 1 and 10000, got {request.top}")
    if request.side is not None and request.side not in ("long", "short", "exit"):
        raise BadInputError(f"side must be long, short or exit, got {request.side!r}")
    if request.timeframe is not None:
        Timeframe.parse(request.timeframe)
    if request.rule is not None:
        check_rule(request.rule)


def _rank_key(score: float | None) -> float:
    """Highest score first; no score (or a NaN) ranks last."""
    return -(score if score is not None and math.isfinite(score) else -math.inf)


def run_scan(platform: Platform, request: ScanRequest,
             progress: Progress | None = None,
             on_store: Callable[[UnitOfWork], None] | None = None) -> StoredScan:
    """Run and store a scan; bad input raises before anything is stored. ``on_store`` runs
    in the transaction that stores it (the API takes the day's quota there)."""
    check_request(request)
    with platform.database.read(primary=True) as uow:
        strategy, stored = resolve(uow, request.tenant_id, request.strategy, request.rule,
                                   request.parameters, platform=platform, purpose="scan")
    timeframe = Timeframe.parse(request.timeframe or (stored.timeframe if stored else "1d"))
    as_of = request.as_of
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    # An as-of date means "by the end of that day".
    end = as_of + timedelta(days=1) - timedelta(microseconds=1) if (
        as_of is not None and as_of == as_of.replace(hour=0, minute=0, second=0,
                                                     microsecond=0)) else as_of
    bars = load_universe(platform, timeframe, tag=request.universe, end=end)
    if bars.n_instruments == 0:
        where = f" tagged {request.universe!r}" if request.universe else ""
        raise NotFoundError(f"no instruments{where} have {timeframe.name} bars"
                            + (f" up to {as_of.date()}" if as_of else ""))
    if isinstance(strategy, RuleStrategy):
        check_enough_bars(strategy.rule, int(bars.lengths().max()))
    if progress is not None:
        progress(0.3)
    name = stored.name if stored else "adhoc"
    try:
        evaluation = evaluate_universe(strategy, bars)
    except BadInputError:
        raise
    except Exception as exc:  # the strategy's own failure: stored as a failed scan
        _count_execution(name, "failed")
        return _store_failed(platform, request, stored, timeframe, bars.n_instruments, exc,
                             on_store)
    _count_execution(name, "succeeded")
    records = signal_records(evaluation, last_bar_only=True)
    if request.side is not None:
        records = [r for r in records if r.side == request.side]
    records.sort(key=lambda r: (_rank_key(r.score), r.symbol, r.side))
    ranked = records[: request.top] if request.top else records
    if progress is not None:
        progress(0.8)
    ids = bars.instrument_ids
    # A built-in run with overridden parameters is code no stored version names.
    version = stored if stored is not None and not request.parameters else None
    written = 0
    with platform.database.write() as uow:
        if on_store is not None:
            on_store(uow)
        scan_id = uow.scans.add(NewScan(
            tenant_id=request.tenant_id,
            strategy_version_id=version.version_id if version else None,
            rule_text=strategy.text if isinstance(strategy, RuleStrategy) else None,
            universe=request.universe, timeframe=timeframe.name, as_of=as_of,
            top=request.top, status="succeeded", instruments=bars.n_instruments,
            matches=len(records), finished_at=platform.clock.now()),
            [ScanResult(rank=i + 1, instrument_id=int(ids[r.instrument]), symbol=r.symbol,
                        side=r.side, score=r.score, price=r.price,
                        bar_ts=ns_to_datetime(r.ts), values=finite_values(r.values))
             for i, r in enumerate(ranked)])
        if version is not None:
            written = len(store_signals(platform, uow, [
                (version, s) for s in new_signals(records, bars, version.version_id,
                                                  timeframe)]).inserted)
            if (m := metrics()) is not None:
                m.SIGNALS_PRODUCED.labels(version.name).inc(written)
    if written:
        platform.cache.invalidate("signals")
    return get_scan(platform, request.tenant_id, scan_id, primary=True)


def _count_execution(strategy: str, status: str) -> None:
    if (m := metrics()) is not None:
        m.LOGIC_EXECUTIONS.labels(strategy, status).inc()


def _store_failed(platform: Platform, request: ScanRequest, stored: StoredStrategy | None,
                  timeframe: Timeframe, n_inst: int, exc: Exception,
                  on_store: Callable[[UnitOfWork], None] | None) -> StoredScan:
    with platform.database.write() as uow:
        if on_store is not None:
            on_store(uow)
        scan_id = uow.scans.add(NewScan(
            tenant_id=request.tenant_id,
            strategy_version_id=stored.version_id if stored else None, rule_text=request.rule,
            universe=request.universe, timeframe=timeframe.name, as_of=request.as_of,
            top=request.top, status="failed", error=f"{type(exc).__name__}: {exc}",
            instruments=n_inst, matches=0, finished_at=platform.clock.now()))
    return get_scan(platform, request.tenant_id, scan_id, primary=True)


def get_scan(platform: Platform, tenant_id: int, scan_id: int, *,
             primary: bool = False) -> StoredScan:
    """A stored scan; ``primary`` reads it from the primary (right after storing it, when a
    read replica may not have it yet)."""
    with platform.database.read(primary=primary) as uow:
        scan = uow.scans.get(tenant_id, scan_id)
    if scan is None:
        raise NotFoundError(f"no scan {scan_id}")
    return scan
