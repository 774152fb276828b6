"""The scanner: evaluate a strategy over a universe as of a date and rank today's signals.

Ranking is by score, highest first (a rule's ``score:`` expression, or the default strength
of the firing condition); ties are broken by symbol so a scan is reproducible. Only signals
on each instrument's last bar at or before ``as_of`` count: those are the recommendations
for that day. A scan of a stored strategy also stores those signals (idempotently).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from signalfactory.adapters.storage.tables import scan_results, scans
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.rules import check_enough_bars
from signalfactory.domain.strategies import RuleStrategy, signal_records
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.metrics import LOGIC_EXECUTIONS, SIGNALS_PRODUCED
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform
from signalfactory.services.signals.evaluation import (
    evaluate_universe,
    insert_signals,
    ns_to_datetime,
    signal_rows,
)
from signalfactory.services.strategies.catalog import resolve


@dataclass(frozen=True)
class ScanRequest:
    tenant_id: int
    strategy: str | None = None
    rule: str | None = None
    universe: str | None = None
    as_of: datetime | None = None
    top: int | None = None
    timeframe: str | None = None
    parameters: Mapping[str, Any] | None = None
    side: str | None = None


# Bar times are int64 nanoseconds: the dates they can name.
EARLIEST_AS_OF = datetime(1678, 1, 1, tzinfo=UTC)
LATEST_AS_OF = datetime(2262, 4, 10, tzinfo=UTC)


def _check(request: ScanRequest) -> None:
    if request.as_of is not None:
        as_of = request.as_of if request.as_of.tzinfo else request.as_of.replace(tzinfo=UTC)
        if not EARLIEST_AS_OF <= as_of <= LATEST_AS_OF:
            raise BadInputError(f"as_of {request.as_of.date()} is out of range; give a date "
                                "between 1678-01-01 and 2262-04-10")
    if request.top is not None and not 1 <= request.top <= 10_000:
        raise BadInputError(f"top must be between 1 and 10000, got {request.top}")
    if request.side is not None and request.side not in ("long", "short", "exit"):
        raise BadInputError(f"side must be long, short or exit, got {request.side!r}")


def run_scan(platform: Platform, request: ScanRequest,
             progress: Any | None = None) -> dict[str, Any]:
    """Run and store a scan; bad input raises before anything is stored."""
    _check(request)
    with platform.engine.connect() as conn:
        strategy, stored = resolve(conn, request.tenant_id, request.strategy, request.rule,
                                   request.parameters)
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
    except Exception as exc:
        LOGIC_EXECUTIONS.labels(name, "failed").inc()
        return _store_failed(platform, request, stored, timeframe, bars.n_instruments, exc)
    LOGIC_EXECUTIONS.labels(name, "succeeded").inc()
    records = signal_records(evaluation, last_bar_only=True)
    if request.side is not None:
        records = [r for r in records if r.side == request.side]
    records.sort(key=lambda r: (-(r.score if r.score is not None and math.isfinite(r.score)
                                  else -math.inf), r.symbol, r.side))
    ranked = records[: request.top] if request.top else records
    if progress is not None:
        progress(0.8)
    written = 0
    with platform.engine.begin() as conn:
        scan_id = int(conn.execute(scans.insert().values(
            tenant_id=request.tenant_id,
            strategy_version_id=stored.version_id if stored and not request.parameters
            else None,
            rule_text=getattr(strategy, "text", None), universe=request.universe,
            timeframe=timeframe.name, as_of=as_of, top=request.top, status="succeeded",
            instruments=bars.n_instruments, matches=len(records),
            finished_at=datetime.now(UTC))).inserted_primary_key[0])
        ids = bars.instrument_ids
        if ranked:
            conn.execute(scan_results.insert(), [
                {"scan_id": scan_id, "rank": i + 1, "instrument_id": int(ids[r.instrument]),
                 "symbol": r.symbol, "side": r.side, "score": r.score, "price": r.price,
                 "bar_ts": ns_to_datetime(r.ts),
                 "values": {k: float(v) for k, v in r.values.items() if math.isfinite(v)}}
                for i, r in enumerate(ranked)])
        if stored is not None and not request.parameters:
            written = insert_signals(conn, signal_rows(records, bars, stored.version_id,
                                                       timeframe))
            SIGNALS_PRODUCED.labels(stored.name).inc(written)
    if written:
        platform.cache.invalidate("signals")
    return get_scan(platform, request.tenant_id, scan_id, primary=True)


def _store_failed(platform: Platform, request: ScanRequest, stored: Any, timeframe: Timeframe,
                  n_inst: int, exc: Exception) -> dict[str, Any]:
    with platform.engine.begin() as conn:
        scan_id = int(conn.execute(scans.insert().values(
            tenant_id=request.tenant_id,
            strategy_version_id=stored.version_id if stored else None, rule_text=request.rule,
            universe=request.universe, timeframe=timeframe.name, as_of=request.as_of,
            top=request.top, status="failed", error=f"{type(exc).__name__}: {exc}",
            instruments=n_inst, finished_at=datetime.now(UTC))).inserted_primary_key[0])
    return get_scan(platform, request.tenant_id, scan_id, primary=True)


def get_scan(platform: Platform, tenant_id: int, scan_id: int, *,
             primary: bool = False) -> dict[str, Any]:
    """A stored scan; ``primary`` reads it from the primary (right after storing it, when a
    read replica may not have it yet)."""
    with (platform.engine if primary else platform.reader).connect() as conn:
        row = conn.execute(sa.select(scans).where(scans.c.id == scan_id,
                                                  scans.c.tenant_id == tenant_id)).first()
        if row is None:
            raise NotFoundError(f"no scan {scan_id}")
        results = conn.execute(sa.select(scan_results).where(scan_results.c.scan_id == scan_id)
                               .order_by(scan_results.c.rank)).all()
    scan = dict(row._mapping)
    for key in ("as_of", "created_at", "finished_at"):
        scan[key] = scan[key].isoformat() if scan[key] else None
    scan.pop("tenant_id", None)
    scan["results"] = [
        {"rank": r.rank, "symbol": r.symbol, "side": r.side, "score": r.score,
         "price": r.price, "bar_ts": r.bar_ts.isoformat(), "values": r.values}
        for r in results]
    return scan
