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
once on PostgreSQL, where storing a signal sends ``NOTIFY signalfactory_signals``).
The signals, their delivery rows (the outbox) and the strategy runs that found them are
stored in one unit of work; the
publishers run after it commits. ``signalfactory_signal_latency_seconds`` is observed here,
once per new signal, when it is handed to the publishers: from the bars' arrival in
``write_bars`` to publish.

Only strategies whose timeframe equals the written timeframe are evaluated; a strategy on a
higher timeframe gets its signals from ``signals run`` or a scan (a half-built higher bar
would give signals that change).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.signals import NewSignal
from signalfactory.domain.strategies import SignalRecord, Strategy, signal_records
from signalfactory.domain.strategies.stored import StoredStrategy, StrategyRun
from signalfactory.domain.streaming import SignalEvent
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import LOGIC_EXECUTIONS, SIGNAL_LATENCY, SIGNALS_PRODUCED
from signalfactory.services.marketdata.bars import BarsWritten, first_new_times
from signalfactory.services.marketdata.live_window import bars_before
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.signals.evaluation import new_signals
from signalfactory.services.signals.store import store_signals
from signalfactory.services.strategies.catalog import instantiate

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
    """``overlapped``: evaluated while the bars committed (on the in-memory window)."""

    strategies: int
    instruments: int
    signals_new: int
    failed: tuple[str, ...] = ()
    overlapped: bool = False


def watched_strategies(uow: UnitOfWork, timeframe: Timeframe,
                       cache: dict[str, tuple[object, list[StoredStrategy]]] | None = None,
                       ) -> list[StoredStrategy]:
    """Newest versions of the strategies evaluated live on ``timeframe`` (see module doc).

    ``cache`` (``platform.live_watched``) keeps the answer with the stamp it was read at:
    the built-ins the subscriptions ask for and the strategy versions' stamp, which between
    them change with every change to the answer, whichever process makes it. On a write
    with neither changed, two small reads replace the join of every strategy with its
    newest version.
    """
    interest = uow.signals.builtin_interest()
    if cache is None:
        return uow.strategies.watched(timeframe.name, interest)
    stamp = (interest, uow.strategies.versions_stamp())
    held = cache.get(timeframe.name)
    if held is not None and held[0] == stamp:
        return list(held[1])
    watched = uow.strategies.watched(timeframe.name, interest)
    cache[timeframe.name] = (stamp, list(watched))
    return watched


def _instantiate(platform: Platform, stored: StoredStrategy) -> Strategy:
    """Strategy objects by version id: a version never changes, parsing it once is enough."""
    cache = platform.live_strategies
    strategy = cache.get(stored.version_id)
    if strategy is None:
        with _CACHE_LOCK:  # two writers may meet here; one parse is enough
            strategy = cache.get(stored.version_id)
            if strategy is None:
                strategy = cache[stored.version_id] = instantiate(stored, platform, "live")
    return strategy


def load_window(platform: Platform, written: BarsWritten, symbols: Mapping[int, str],
                lookback: int) -> BarUniverse:
    """Bars of the written instruments from ``warmup_bars(lookback)`` bars before their first
    new bar; instruments whose window holds too little history are read in full.

    A write that ``write_bars`` applied to ``platform.live_windows`` (``ingest_id`` set) is
    served from memory when the windows held cover it; otherwise the store is read, with a
    margin of an eighth of the warm-up before the start, so that a late bar a little behind
    the others still finds its window in memory until the next append trims what is held to
    its own window (see ``LiveWindows``; later batches start later anyway).
    """
    start = _window_start(written.timeframe, written.first_new, lookback)
    span = min(written.first_new.values()) - start
    windows = platform.live_windows if written.ingest_id is not None else None
    if windows is not None:
        held = windows.window(written.timeframe, written.first_new, start, lookback + 1)
        if held is not None:
            return held.to_universe(symbols)
        generation = windows.generation
    ids = np.array(sorted(written.first_new), dtype=np.int64)
    margin: int | None = start - span // 8 if windows is not None else start
    cols = read_columns(platform, written.timeframe, ids, margin)
    window = cols.filter(None, start, None)
    if _short_of_history(window, written.first_new, lookback + 1):
        margin = None
        window = cols = read_columns(platform, written.timeframe, ids, None)
    if windows is not None:
        windows.fill(written.timeframe, generation, cols, ids, margin)
    return window.to_universe(symbols)


def read_columns(platform: Platform, timeframe: Timeframe, ids: npt.NDArray[np.int64],
                 start_ns: int | None) -> BarColumns:
    """Bars of ``ids`` from ``start_ns`` on, read on the primary (they were just written)."""
    with platform.database.read(primary=True) as uow:
        return uow.bars.read_columns(timeframe, ids, start_ns)


def _short_of_history(window: BarColumns, first_new: dict[int, int], needed: int) -> bool:
    """Has an instrument fewer than ``needed`` bars before its first new bar?"""
    before = bars_before(window, first_new)
    return bool(before) and min(before.values()) < needed


def new_records(strategy: Strategy, universe: BarUniverse,
                first_new: dict[int, int]) -> list[SignalRecord]:
    """The strategy's signals on the new bars only (per instrument)."""
    evaluation = strategy.evaluate(universe)
    since = min(first_new.values())
    ids = universe.instrument_ids
    return [r for r in signal_records(evaluation, since_ts=since)
            if r.ts >= first_new[int(ids[r.instrument])]]


def evaluate_new_bars(platform: Platform, written: BarsWritten) -> LiveReport | None:
    """The bar subscriber. Never raises: the bars are already committed."""
    try:
        return _evaluate(platform, written)
    except Exception as exc:  # logged; the write itself succeeded
        log.error("live evaluation failed", error=f"{type(exc).__name__}: {exc}",
                  source=written.source, timeframe=written.timeframe.name)
        return None


@dataclass(frozen=True)
class _Outcome:
    """One watched strategy's evaluation of the window."""

    stored: StoredStrategy
    error: str | None
    signals: tuple[NewSignal, ...] = ()


@dataclass(frozen=True)
class _Evaluated:
    """The watched strategies' outcomes on one write's window (``instruments`` 0: nothing
    to evaluate, no strategy watched or no bars)."""

    watched: list[StoredStrategy]
    outcomes: list[_Outcome]
    instruments: int
    started: datetime


def _window_start(timeframe: Timeframe, first_new: Mapping[int, int], lookback: int) -> int:
    # Calendar time for the warm-up, widened for weekends and holidays (5 of 7 days trade).
    span = (warmup_bars(lookback) * 3 // 2 + 7) * timeframe.nanoseconds
    return min(first_new.values()) - span


def _run_watched(platform: Platform, watched: list[StoredStrategy], timeframe: Timeframe,
                 first_new: dict[int, int], started: datetime,
                 window: Callable[[int], BarUniverse | None]) -> _Evaluated | None:
    """Evaluate ``watched`` on ``window(lookback)``; None when ``window`` gives none."""
    outcomes: list[_Outcome] = []
    loaded: list[tuple[StoredStrategy, Strategy, int]] = []
    for s in watched:
        try:  # an uploaded strategy learns its lookback by loading in the sandbox
            obj = _instantiate(platform, s)
            loaded.append((s, obj, int(getattr(obj, "required_lookback", 0) or 0)))
        except Exception as exc:  # one strategy that cannot load never stops the others
            outcomes.append(_Outcome(s, f"{type(exc).__name__}: {exc}"))
    universe = window(max((lb for _s, _obj, lb in loaded), default=0))
    if universe is None:
        return None
    if universe.n_bars == 0:
        return _Evaluated(watched, [], 0, started)
    for stored, strategy, _lookback in loaded:
        try:
            records = new_records(strategy, universe, first_new)
        except Exception as exc:  # one failing strategy never stops the others
            outcomes.append(_Outcome(stored, f"{type(exc).__name__}: {exc}"))
            continue
        outcomes.append(_Outcome(stored, None, tuple(new_signals(
            records, universe, stored.version_id, timeframe))))
    return _Evaluated(watched, outcomes, universe.n_instruments, started)


# -- evaluation overlapped with the bar commit ----------------------------------------------

_POOL_LOCK = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool  # one small pool per process, made on first use
    with _POOL_LOCK:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="live-prepare")
        return _pool


def prepare_new_bars(platform: Platform, timeframe: Timeframe, cols: BarColumns,
                     symbols: Mapping[int, str]) -> Future[tuple[int, _Evaluated] | None] | None:
    """The bar preparer: starts evaluating a write on the in-memory windows while it commits.

    Only when the windows hold this timeframe (live evaluation has run here before). The
    result counts only if the commit then directly followed the windows' generation read
    here (no other commit, no other writer); otherwise the subscriber evaluates as usual.
    """
    windows = platform.live_windows
    if len(cols) == 0 or not windows.holds(timeframe):
        return None
    first_new = first_new_times(cols)
    generation = windows.generation  # before the window is read: a commit after it shows

    def run() -> tuple[int, _Evaluated] | None:
        started = platform.clock.now()
        with platform.database.read(primary=True) as uow:
            watched = watched_strategies(uow, timeframe, platform.live_watched)
        if not watched:
            return generation, _Evaluated(watched, [], 0, started)

        def window(lookback: int) -> BarUniverse | None:
            held = windows.window(timeframe, first_new, _window_start(timeframe, first_new,
                                                                      lookback),
                                  lookback + 1, pending=cols)
            return None if held is None else held.to_universe(symbols)

        evaluated = _run_watched(platform, watched, timeframe, first_new, started, window)
        return None if evaluated is None else (generation, evaluated)

    return _executor().submit(run)


def _prepared(written: BarsWritten) -> _Evaluated | None:
    """The overlapped evaluation of ``written``, when there is one and it is still exact."""
    future = written.prepared.get(prepare_new_bars)
    if not isinstance(future, Future) or written.window_generation is None:
        return None
    try:
        done = future.result()
    except Exception as exc:  # the subscriber evaluates again, from the store if need be
        log.warning("overlapped live evaluation failed", error=f"{type(exc).__name__}: {exc}")
        return None
    if not isinstance(done, tuple) or done[0] + 1 != written.window_generation:
        return None
    evaluated: _Evaluated = done[1]
    return evaluated


def _evaluate(platform: Platform, written: BarsWritten) -> LiveReport | None:
    if not written.first_new:
        return None
    evaluated = _prepared(written)
    overlapped = evaluated is not None
    if evaluated is None:
        started = platform.clock.now()
        with platform.database.read(primary=True) as uow:
            watched = watched_strategies(uow, written.timeframe, platform.live_watched)
            if not watched:
                return None
            symbols = (written.symbols if written.first_new.keys() <= written.symbols.keys()
                       else uow.instruments.symbols(written.first_new))
        evaluated = _run_watched(
            platform, watched, written.timeframe, written.first_new, started,
            lambda lookback: load_window(platform, written, symbols, lookback))
    if evaluated is None or evaluated.instruments == 0:
        return None
    outcomes, started = evaluated.outcomes, evaluated.started
    batch = [(o.stored, signal) for o in outcomes for signal in o.signals]
    with platform.database.write() as uow:
        result = store_signals(platform, uow, batch, arrival_ns=written.arrival_ns)
        new_by_version: dict[int, int] = {}
        for inserted in result.inserted:
            version_id = batch[inserted.index][0].version_id
            new_by_version[version_id] = new_by_version.get(version_id, 0) + 1
        finished = platform.clock.now()
        uow.strategies.record_runs([StrategyRun(
            strategy_version_id=o.stored.version_id, timeframe=written.timeframe.name,
            status="failed" if o.error else "succeeded", error=o.error,
            instruments=evaluated.instruments,
            signals_written=new_by_version.get(o.stored.version_id, 0),
            started_at=started, finished_at=finished) for o in outcomes])
    # Committed: count, invalidate and publish.
    for o in outcomes:
        LOGIC_EXECUTIONS.labels(o.stored.name, "failed" if o.error else "succeeded").inc()
        if o.error is not None:
            log.warning("live strategy evaluation failed", strategy=o.stored.name,
                        version=o.stored.version, error=o.error)
        elif new_by_version.get(o.stored.version_id):
            SIGNALS_PRODUCED.labels(o.stored.name).inc(new_by_version[o.stored.version_id])
    events = result.events
    if events:
        platform.cache.invalidate("signals")
    publish(platform, events)
    return LiveReport(len(evaluated.watched), evaluated.instruments, len(events),
                      tuple(o.stored.name for o in outcomes if o.error), overlapped)


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
