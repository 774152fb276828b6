"""Live evaluation: new bars in, new signals stored and published.

``write_bars`` calls :func:`evaluate_new_bars` after every commit (ingest, sample, collector
pages, in whatever process writes). It evaluates the *watched* strategies on a window of the
written instruments only — enough history for each strategy's lookback, plus the new bars —
keeps the signals on the new bars, stores them idempotently and publishes the ones that are
new.

Which strategies are watched (evaluated live):

* every tenant's own stored strategy (its newest version) of the written timeframe: a tenant
  that adds a strategy wants its signals;
* a built-in strategy only when some subscription names it, or when some subscription has an
  empty strategy list (meaning "everything I can see"). Built-ins are shared by all tenants;
  evaluating all of them on every write for nobody would be waste.

A stream connection with ad-hoc filters receives what the watched strategies produce; to get a
built-in's live signals, create a subscription that names it.

Publishing: each process keeps its publishers in ``platform.signal_publishers``
(the API's stream hub registers one). Other processes (a worker, the CLI) publish into the
table only; the API process picks their signals up by polling the table by id (and wakes at
once on PostgreSQL, where this module sends ``NOTIFY signalfactory_signals``).
``signalfactory_signal_latency_seconds`` is observed here, once per new signal, when it is
handed to the publishers: from the bars' arrival in ``write_bars`` to publish.

Only strategies whose timeframe equals the written timeframe are evaluated; a strategy on a
higher timeframe gets its signals from ``signals run`` or a scan (a half-built higher bar
would give signals that change).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import (
    instruments,
    signals,
    strategies,
    strategy_runs,
    strategy_versions,
    subscriptions,
)
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.strategies import SignalRecord, Strategy, signal_records
from signalfactory.domain.streaming import NOTIFY_CHANNEL, SignalEvent, iso_utc
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import LOGIC_EXECUTIONS, SIGNAL_LATENCY, SIGNALS_PRODUCED
from signalfactory.services.marketdata.bars import BarsWritten
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import StoredStrategy

log = get_logger("signalfactory.live")

_CACHE_LOCK = threading.Lock()


def warmup_bars(lookback: int) -> int:
    """Bars of history loaded before the first new bar.

    Windowed indicators (SMA, Bollinger, Donchian) need only the lookback and then match a
    full-history evaluation exactly. Recursive ones (EMA, MACD, RSI) remember their start;
    four lookbacks shrink the start's weight to a few parts per thousand (EMA 200: 0.2 %,
    RSI 14: 0.1 %), so a crossing decided by less than that may differ from ``signals run``
    over the whole history (which itself depends on where the stored history begins).
    """
    return 4 * max(lookback, 1) + 50


@dataclass(frozen=True)
class LiveReport:
    strategies: int
    instruments: int
    signals_new: int
    failed: tuple[str, ...] = ()


def watched_strategies(conn: Connection, timeframe: Timeframe) -> list[StoredStrategy]:
    """Newest versions of the strategies evaluated live on ``timeframe`` (see module doc)."""
    builtin_names: set[str] = set()
    every_builtin = False
    for (names,) in conn.execute(sa.select(subscriptions.c.strategies)):
        if not names:
            every_builtin = True
            break
        builtin_names.update(str(n) for n in names)
    newest = (sa.select(strategy_versions.c.strategy_id,
                        sa.func.max(strategy_versions.c.version).label("v"))
              .group_by(strategy_versions.c.strategy_id).subquery())
    wanted: sa.ColumnElement[bool] = strategies.c.builtin.is_(sa.false())
    if every_builtin:
        wanted = sa.true()
    elif builtin_names:
        wanted = sa.or_(wanted, strategies.c.name.in_(sorted(builtin_names)))
    query = (sa.select(strategies.c.id, strategies.c.tenant_id, strategies.c.name,
                       strategies.c.kind, strategies.c.builtin, strategies.c.description,
                       strategy_versions.c.id.label("version_id"), strategy_versions.c.version,
                       strategy_versions.c.rule_text, strategy_versions.c.class_path,
                       strategy_versions.c.parameters, strategy_versions.c.timeframe,
                       strategy_versions.c.code_hash, strategy_versions.c.created_by,
                       strategy_versions.c.created_at)
             .join(strategy_versions, strategy_versions.c.strategy_id == strategies.c.id)
             .join(newest, sa.and_(newest.c.strategy_id == strategies.c.id,
                                   newest.c.v == strategy_versions.c.version))
             .where(wanted, strategy_versions.c.timeframe == timeframe.name)
             .order_by(strategy_versions.c.id))
    return [StoredStrategy(
        id=r.id, version_id=r.version_id, tenant_id=r.tenant_id, name=r.name, kind=r.kind,
        version=r.version, rule_text=r.rule_text, class_path=r.class_path,
        parameters=r.parameters or {}, timeframe=r.timeframe, code_hash=r.code_hash,
        created_by=r.created_by, created_at=r.created_at, builtin=bool(r.builtin),
        description=r.description or "") for r in conn.execute(query)]


def _instantiate(platform: Platform, stored: StoredStrategy) -> Strategy:
    """Strategy objects by version id: a version never changes, parsing it once is enough."""
    cache = platform.live_strategies
    strategy = cache.get(stored.version_id)
    if strategy is None:
        with _CACHE_LOCK:  # two writers may meet here; one parse is enough
            strategy = cache.get(stored.version_id)
            if strategy is None:
                strategy = cache[stored.version_id] = stored.instantiate()
    return strategy


def load_window(platform: Platform, conn: Connection, written: BarsWritten,
                lookback: int) -> BarUniverse:
    """Bars of the written instruments from ``warmup_bars(lookback)`` bars before their first
    new bar; instruments whose window holds too little history are read in full."""
    ids = np.array(sorted(written.first_new), dtype=np.int64)
    names = {int(r.id): r.symbol for r in conn.execute(
        sa.select(instruments.c.id, instruments.c.symbol)
        .where(instruments.c.id.in_(ids.tolist())))}
    tf_ns = written.timeframe.nanoseconds
    # Calendar time for the warm-up, widened for weekends and holidays (5 of 7 days trade).
    span = (warmup_bars(lookback) * 3 // 2 + 7) * tf_ns
    start = min(written.first_new.values()) - span
    universe = platform.bars.load(conn, written.timeframe, names, ids, start, None)
    short = _short_of_history(universe, written.first_new, lookback + 1)
    if short.size:
        universe = platform.bars.load(conn, written.timeframe, names, ids, None, None)
    return universe


def _short_of_history(universe: BarUniverse, first_new: dict[int, int],
                      needed: int) -> np.ndarray:
    """Instruments with fewer than ``needed`` bars before their first new bar."""
    short = []
    for k, ident in enumerate(universe.instrument_ids.tolist()):
        a, b = int(universe.offsets[k]), int(universe.offsets[k + 1])
        before = int(np.searchsorted(universe.ts[a:b], first_new[ident], "left"))
        if before < needed:
            short.append(ident)
    return np.array(short, dtype=np.int64)


def new_records(strategy: Strategy, universe: BarUniverse,
                first_new: dict[int, int]) -> list[SignalRecord]:
    """The strategy's signals on the new bars only (per instrument)."""
    evaluation = strategy.evaluate(universe)
    since = min(first_new.values())
    ids = universe.instrument_ids
    return [r for r in signal_records(evaluation, since_ts=since)
            if r.ts >= first_new[int(ids[r.instrument])]]


def _row(record: SignalRecord, universe: BarUniverse, stored: StoredStrategy,
         timeframe: Timeframe) -> dict[str, Any]:
    values = {k: float(v) for k, v in record.values.items() if math.isfinite(float(v))}
    return {"strategy_version_id": stored.version_id,
            "instrument_id": int(universe.instrument_ids[record.instrument]),
            "timeframe": timeframe.name,
            "bar_ts": datetime.fromtimestamp(record.ts / 1e9, tz=UTC), "side": record.side,
            "score": record.score, "price": float(record.price), "values": values}


def insert_new(conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[int, Any, int]]:
    """Insert, skipping signals that exist; (id, created_at, index into rows) of new ones."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    where = {(r["strategy_version_id"], r["instrument_id"], iso_utc(r["bar_ts"]), r["side"]): i
             for i, r in enumerate(rows)}
    # One statement executed with many parameter sets: its compiled form is cached, and
    # SQLAlchemy batches the rows into multi-row INSERTs ("insertmanyvalues").
    stmt = (insert(signals)
            .on_conflict_do_nothing(index_elements=["strategy_version_id", "instrument_id",
                                                    "timeframe", "bar_ts", "side"])
            .returning(signals.c.id, signals.c.created_at, signals.c.strategy_version_id,
                       signals.c.instrument_id, signals.c.bar_ts, signals.c.side))
    out: list[tuple[int, Any, int]] = []
    for r in conn.execute(stmt, rows):
        key = (r.strategy_version_id, r.instrument_id, iso_utc(r.bar_ts), r.side)
        out.append((int(r.id), r.created_at, where[key]))
    return out


def evaluate_new_bars(platform: Platform, written: BarsWritten) -> LiveReport | None:
    """The ``on_bars_written`` hook. Never raises: the bars are already committed."""
    try:
        return _evaluate(platform, written)
    except Exception as exc:  # logged; the write itself succeeded
        log.error("live evaluation failed", error=f"{type(exc).__name__}: {exc}",
                  source=written.source, timeframe=written.timeframe.name)
        return None


def _evaluate(platform: Platform, written: BarsWritten) -> LiveReport | None:
    if not written.first_new:
        return None
    started = datetime.now(UTC)
    with platform.engine.connect() as conn:
        watched = watched_strategies(conn, written.timeframe)
        if not watched:
            return None
        loaded = [(s, _instantiate(platform, s)) for s in watched]
        lookback = max(int(getattr(obj, "required_lookback", 0) or 0) for _s, obj in loaded)
        universe = load_window(platform, conn, written, lookback)
    if universe.n_bars == 0:
        return None
    rows: list[dict[str, Any]] = []
    owners: list[tuple[StoredStrategy, SignalRecord]] = []
    runs: list[tuple[StoredStrategy, str, str | None, int]] = []
    for stored, strategy in loaded:
        try:
            records = new_records(strategy, universe, written.first_new)
        except Exception as exc:  # one failing strategy never stops the others
            runs.append((stored, "failed", f"{type(exc).__name__}: {exc}", 0))
            continue
        for record in records:
            rows.append(_row(record, universe, stored, written.timeframe))
            owners.append((stored, record))
        runs.append((stored, "succeeded", None, len(records)))
    with platform.engine.begin() as conn:
        created = insert_new(conn, rows)
        new_by_version: dict[int, int] = {}
        for _id, _at, index in created:
            version_id = owners[index][0].version_id
            new_by_version[version_id] = new_by_version.get(version_id, 0) + 1
        for stored, status, error, _found in runs:
            conn.execute(strategy_runs.insert().values(
                strategy_version_id=stored.version_id, timeframe=written.timeframe.name,
                status=status, error=error, instruments=universe.n_instruments,
                signals_written=new_by_version.get(stored.version_id, 0), started_at=started,
                finished_at=datetime.now(UTC)))
        if created and conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL,
                                                     str(max(c[0] for c in created)))))
    for stored, status, error, _found in runs:
        LOGIC_EXECUTIONS.labels(stored.name, status).inc()
        if error is not None:
            log.warning("live strategy evaluation failed", strategy=stored.name,
                        version=stored.version, error=error)
        elif new_by_version.get(stored.version_id):
            SIGNALS_PRODUCED.labels(stored.name).inc(new_by_version[stored.version_id])
    events = [_event(ident, created_at, rows[index], *owners[index], universe,
                     written.arrival_ns) for ident, created_at, index in created]
    events.sort(key=lambda e: e.id)
    if events:
        platform.cache.invalidate("signals")
    publish(platform, events)
    return LiveReport(len(loaded), universe.n_instruments, len(events),
                      tuple(s.name for s, status, _e, _f in runs if status == "failed"))


def _event(ident: int, created_at: Any, row: dict[str, Any], stored: StoredStrategy,
           record: SignalRecord, universe: BarUniverse, arrival_ns: int) -> SignalEvent:
    payload = {"id": ident, "bar_ts": iso_utc(row["bar_ts"]),
               "symbol": universe.symbols[record.instrument], "side": row["side"],
               "strategy": stored.name, "strategy_version": stored.version,
               "timeframe": row["timeframe"], "score": row["score"], "price": row["price"],
               "values": row["values"], "created_at": iso_utc(created_at)}
    return SignalEvent(payload, tenant_id=stored.tenant_id, builtin=stored.builtin,
                       arrival_ns=arrival_ns)


def publish(platform: Platform, events: Sequence[SignalEvent]) -> None:
    """Hand new signals to this process's publishers and record their latency."""
    if not events:
        return
    batch = list(events)
    for publisher in list(platform.signal_publishers):
        try:
            publisher(batch)
        except Exception as exc:  # a broken publisher must not stop the rest
            log.error("signal publisher failed", error=f"{type(exc).__name__}: {exc}")
    now = time.time_ns()
    for event in batch:
        if event.arrival_ns is not None:
            SIGNAL_LATENCY.observe(max(0, now - event.arrival_ns) / 1e9)
