"""One collector run of a stored source: new closed bars of every symbol into the store.

Per symbol the run fetches everything after the symbol's cursor (the last bar stored from
this source, committed with the bars) up to the newest *closed* bar: a bar whose period has
not ended by the platform clock is never stored. It pages past the source's page limit, each
request retried (``resilience.with_retries``), and the whole run goes through the source's
circuit breaker.

Gaps: on a ``continuous`` source (a 24/7 market), a hole in the fetched bars (or between the
cursor and the first new bar) is asked for again, window by window. Bars that come back fill
it (a backfill); a period the source answers twice with nothing had no trades, and is
recorded as such (``source_gaps``, kind ``no-trades``), not as an error.

Storing: every symbol's window is validated on its own (the ingest rules: values, order,
spacing) and the windows go through ``write_bars`` (the ingest path: one unit of work, then
live evaluation) in batches of whole symbols, each batch committing its bars, the symbols'
cursors and their gaps together. A run killed anywhere leaves whole batches only, and the next
run starts from the cursors: nothing missing, nothing twice. Bad values in a symbol's window
store nothing of that window.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bar_validation import RawBars, validate
from signalfactory.domain.bars import FIELDS, BarSeries
from signalfactory.domain.errors import OperationalError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.sources import NO_TRADES, Source, SourceGap, missing_periods
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.observability.logging import get_logger
from signalfactory.services.marketdata.bars import SymbolBars, write_bars
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.sources.options import CollectorOptions
from signalfactory.services.sources.ports import BarSource
from signalfactory.services.sources.resilience import with_retries

log = get_logger("signalfactory.sources")

I64 = npt.NDArray[np.int64]
#: holes closer than this many bars are asked for again in one request
_REFETCH_SPAN_BARS = 500


class RunCancelled(Exception):  # noqa: N818 - a signal to stop, not an error
    """The job asked the run to stop; whole batches stored so far stay."""


@dataclass
class RunStats:
    requests: int = 0
    retries: int = 0
    rows: int = 0
    symbols_with_bars: int = 0
    backfilled: int = 0
    no_trade_gaps: int = 0
    batches: int = 0


@dataclass(frozen=True)
class RunReport:
    source: str
    timeframe: str
    symbols: int
    rows: int
    requests: int
    retries: int
    backfilled: int
    no_trade_gaps: int
    batches: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class _Window:
    """One symbol's validated new bars and the no-trade gaps found among them."""

    symbol: str
    bars: BarSeries
    gaps: list[SourceGap] = field(default_factory=list)


def _empty(symbol: str) -> BarSeries:
    none_f = np.zeros(0, dtype=np.float64)
    return BarSeries(symbol, np.zeros(0, dtype=np.int64), none_f, none_f, none_f, none_f,
                     none_f)


def _concat(symbol: str, parts: list[BarSeries]) -> BarSeries:
    if not parts:
        return _empty(symbol)
    if len(parts) == 1:
        return parts[0]
    return BarSeries(symbol, np.concatenate([p.ts for p in parts]),
                     *(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))


def _take(bars: BarSeries, rows: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> BarSeries:
    return BarSeries(bars.symbol, bars.ts[rows], *(getattr(bars, f)[rows] for f in FIELDS))


def _validated(name: str, bars: BarSeries, timeframe: Timeframe) -> None:
    """The ingest rules on one symbol's window; BadInputError names the bar (1-based)."""
    if len(bars) == 0:
        return
    raw = RawBars(source=f"{name}:{bars.symbol}", ts=bars.ts, open=bars.open,
                  high=bars.high, low=bars.low, close=bars.close, volume=bars.volume,
                  symbol_codes=np.zeros(len(bars), dtype=np.int64), symbols=(bars.symbol,),
                  row_offset=0)
    validate(raw, timeframe)


def _refetch_windows(holes: list[tuple[int, int]], step: int) -> Iterator[tuple[int, int]]:
    """Holes grouped into request windows ``[start, end]`` of at most a few hundred bars."""
    start = end = None
    for first, last in holes:
        if start is not None and end is not None and last - start <= _REFETCH_SPAN_BARS * step:
            end = last
            continue
        if start is not None and end is not None:
            yield start, end
        start, end = first, last
    if start is not None and end is not None:
        yield start, end


class CollectorRun:
    """Fetches, checks and stores one run of one source (see the module docstring)."""

    def __init__(self, platform: Platform, source: Source, options: CollectorOptions,
                 adapter: BarSource, *,
                 progress: Callable[[float], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> None:
        self.platform = platform
        self.source = source
        self.options = options
        self.adapter = adapter
        self.timeframe = Timeframe.parse(source.timeframe)
        self.step = self.timeframe.nanoseconds
        self.progress = progress
        self.cancelled = cancelled
        self.stats = RunStats()
        now_ns = platform.clock.time_ns()
        #: bars opening before this have closed: ts + step <= now
        self.until_ns = now_ns - self.step + 1
        if options.start is not None:
            self.first_since = datetime_to_ns(options.start)
        else:
            self.first_since = (now_ns // self.step - options.lookback_bars) * self.step

    # -- fetching ------------------------------------------------------------------------
    def _request(self, symbol: str, since: int, until: int) -> tuple[BarSeries, int]:
        def on_retry(_error: BaseException) -> None:
            self.stats.retries += 1

        page = with_retries(
            lambda: self.adapter.fetch_page(symbol, self.timeframe, since, until),
            what=f"{self.source.name} {symbol}", attempts=self.options.retry_attempts,
            initial=self.options.retry_initial_seconds,
            maximum=self.options.retry_max_seconds, on_retry=on_retry)
        self.stats.requests += 1
        return page.bars, page.covered_until_ns

    def _span(self, symbol: str, since: int, until: int) -> BarSeries:
        """Every bar in ``[since, until)``, page after page."""
        parts: list[BarSeries] = []
        while since < until:
            if self.cancelled is not None and self.cancelled():
                raise RunCancelled
            bars, covered = self._request(symbol, since, until)
            if len(bars):
                parts.append(bars)
            if covered <= since:
                raise OperationalError(
                    f"{self.source.name} {symbol}: the source answered a full page that "
                    "does not move past the requested start; check its page_limit")
            since = covered
        return _concat(symbol, parts)

    def _fill_gaps(self, window: BarSeries, cursor: int | None) -> _Window:
        """Ask again for the holes of a continuous source; record what stays empty."""
        symbol = window.symbol
        holes = missing_periods(window.ts, self.step, cursor)
        if not holes or not self.adapter.continuous:
            return _Window(symbol, window)
        found: list[BarSeries] = []
        for start, end in _refetch_windows(holes, self.step):
            again = self._span(symbol, start, end + 1)
            fresh = again.ts[~np.isin(again.ts, window.ts)]
            if fresh.size:
                found.append(_take(again, ~np.isin(again.ts, window.ts)))
        merged = window
        if found:
            extra = _concat(symbol, found)
            _validated(self.source.name, extra, self.timeframe)
            both = _concat(symbol, [window, extra])
            merged = _take(both, np.argsort(both.ts, kind="stable"))
            self.stats.backfilled += len(extra)
        gaps = [SourceGap(symbol, self.timeframe.name, a, b, NO_TRADES)
                for a, b in missing_periods(merged.ts, self.step, cursor)]
        self.stats.no_trade_gaps += len(gaps)
        return _Window(symbol, merged, gaps)

    def fetch_symbol(self, symbol: str, cursor: int | None) -> _Window:
        since = self.first_since if cursor is None else cursor + 1
        window = self._span(symbol, since, self.until_ns)
        # The source's answer as it came, checked before anything is merged into it.
        _validated(self.source.name, window, self.timeframe)
        closed = window.ts < self.until_ns  # ts + step <= now: the bar's period is over
        if not bool(np.all(closed)):  # a source that ignored the requested end
            window = _take(window, closed)
        return self._fill_gaps(window, cursor)

    # -- storing -------------------------------------------------------------------------
    def _store(self, windows: list[_Window]) -> None:
        batches = [SymbolBars(InstrumentSpec(w.symbol, tags={"source": self.source.name}),
                              w.bars.ts, w.bars.open, w.bars.high, w.bars.low, w.bars.close,
                              w.bars.volume) for w in windows if len(w.bars)]
        gaps = [g for w in windows for g in w.gaps]
        if not batches and not gaps:
            return
        name, timeframe, now = self.source.name, self.timeframe, self.platform.clock.now()
        last = {w.symbol: int(w.bars.ts[-1]) for w in windows if len(w.bars)}

        def cursors_and_gaps(uow: UnitOfWork) -> None:
            for symbol, ts in last.items():
                uow.bars.advance_cursor(name, symbol, timeframe, ts)
            uow.sources.add_gaps(name, gaps, now)

        write_bars(self.platform, timeframe, batches, source=f"{name}:collector",
                   extra=cursors_and_gaps)
        self.stats.rows += sum(len(b.ts) for b in batches)
        self.stats.symbols_with_bars += len(batches)
        self.stats.batches += 1

    def run(self) -> RunReport:
        started = time.perf_counter()
        symbols = list(self.source.symbols)
        with self.platform.database.read(primary=True) as uow:
            cursors = {s: uow.bars.cursor(self.source.name, s, self.timeframe)
                       for s in symbols}
        pending: list[_Window] = []
        pending_bars = done = 0
        with ThreadPoolExecutor(max_workers=self.options.concurrency,
                                thread_name_prefix=f"collect-{self.source.name}") as pool:
            # A bounded window of symbols in flight: memory stays flat on a big universe,
            # and a failure stops the run without fetching the rest.
            ahead = self.options.concurrency * 2
            todo = iter(symbols)
            flight: list[Future[_Window]] = [pool.submit(self.fetch_symbol, s, cursors[s])
                                             for s in itertools.islice(todo, ahead)]
            try:
                while flight:
                    window = flight.pop(0).result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        flight.append(pool.submit(self.fetch_symbol, nxt, cursors[nxt]))
                    pending.append(window)
                    pending_bars += len(window.bars)
                    done += 1
                    if pending_bars >= self.options.batch_bars:
                        self._store(pending)
                        pending, pending_bars = [], 0
                    if self.progress is not None:
                        self.progress(done / max(len(symbols), 1))
                self._store(pending)
            finally:
                for future in flight:
                    future.cancel()
        return RunReport(source=self.source.name, timeframe=self.timeframe.name,
                         symbols=len(symbols), rows=self.stats.rows,
                         requests=self.stats.requests, retries=self.stats.retries,
                         backfilled=self.stats.backfilled,
                         no_trade_gaps=self.stats.no_trade_gaps, batches=self.stats.batches,
                         seconds=round(time.perf_counter() - started, 3))
