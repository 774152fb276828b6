"""In-memory live windows: the recent bars of the instruments this process evaluates live.

Live evaluation needs, for every committed batch, the written instruments' last few hundred
bars. Reading them from the store on every batch was the largest cost between a bar's
arrival and its signal, so each process keeps them in memory, per timeframe, and reads the
store only on a miss (an instrument's first batch, a window reaching further back than the
one held, a window dropped as described below).

Invariant: for each instrument it holds, an entry has exactly the stored bars with
``ts >= floor`` of that instrument (``FULL``: its whole history). It is kept true by

* filling from a store read only when nothing was applied while the read ran
  (``generation``);
* merging every bar write this process commits (``write_bars`` calls :meth:`committed`),
  with the store's rule that a rewritten bar's newest value wins, but only when the write's
  ingest-journal id directly follows the last one this process saw. A gap means another
  writer (a worker, the CLI) committed bars in between: every window is dropped and refills
  from the store;
* trimming only upwards: a commit that appends a bar to every held instrument drops, in the
  copy its merge makes anyway, the bars before where the last window's reach puts the next
  window's start (when each instrument keeps what that window needs), and raises the floors
  to it. That window is then the held bars themselves, not a second copy of ~6 MB per
  500-symbol batch; a late bar from before the floors is read from the store;
* an age limit: an entry is dropped ``max_age`` seconds after its fill, and one filled less
  than ``_UNSETTLED_SECONDS`` after a gap lives only until then. On PostgreSQL a lower ingest
  id can commit after a higher one; a window filled before that straggler committed would
  otherwise miss its bars for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS
from signalfactory.domain.timeframes import Timeframe

FULL = -(2**63)
"""Floor of an instrument whose whole history is held."""

_COLUMNS = ("instrument_id", "ts", *FIELDS)
_UNSETTLED_SECONDS = 10.0
_MAX_ROWS = 5_000_000  # per timeframe; a larger window is dropped rather than kept growing

I64 = npt.NDArray[np.int64]


@dataclass
class _Entry:
    cols: BarColumns
    floors: dict[int, int]
    expires: float


def bars_before(cols: BarColumns, first_new: Mapping[int, int]) -> dict[int, int]:
    """Per instrument of ``cols``: how many of its bars lie before its ``first_new`` time."""
    if len(cols) == 0:
        return {}
    inst = cols.instrument_id
    starts = np.concatenate(([0], np.flatnonzero(inst[1:] != inst[:-1]) + 1))
    ids = inst[starts].tolist()
    lengths = np.diff(np.append(starts, len(cols)))
    cut = np.repeat(np.array([first_new.get(i, FULL) for i in ids], dtype=np.int64), lengths)
    counts = np.add.reduceat((cols.ts < cut).astype(np.int64), starts)
    return dict(zip(ids, counts.tolist(), strict=True))


class LiveWindows:
    """The windows of one process (``platform.live_windows``); thread-safe."""

    def __init__(self, max_age: float = 60.0) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._generation = 0
        self._last_ingest: int | None = None
        self._unsettled_until = 0.0
        self.hits = 0
        self.misses = 0
        # The last pending write merged by ``window``: its commit reuses the merge (and its
        # floors).
        self._pending: tuple[int, BarColumns, BarColumns, dict[int, int]] | None = None
        # Per timeframe, what the last window served asked for: (first new bar - start,
        # bars needed before the first new bar). A commit trims the held bars to where the
        # next window will start, in the copy the merge makes anyway (see ``_merged``).
        self._reach: dict[str, tuple[int, int]] = {}

    @property
    def generation(self) -> int:
        """Changes with every applied commit and fill; pass it back to :meth:`fill`."""
        return self._generation

    def held(self, timeframe: Timeframe) -> tuple[BarColumns, dict[int, int]] | None:
        """What is held for ``timeframe``: the bars and each instrument's floor."""
        with self._lock:
            entry = self._live_entry(timeframe)
            return None if entry is None else (entry.cols, dict(entry.floors))

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    # -- reads ---------------------------------------------------------------------------
    def holds(self, timeframe: Timeframe) -> bool:
        return timeframe.name in self._entries

    def window(self, timeframe: Timeframe, first_new: Mapping[int, int], start_ns: int,
               needed: int, pending: BarColumns | None = None) -> BarColumns | None:
        """The bars of ``first_new``'s instruments from ``start_ns`` on, or, when one of them
        has fewer than ``needed`` bars before its first new bar, their whole history; None
        when the windows held do not cover that (read the store, then :meth:`fill`).

        ``pending``: a write not committed yet, taken as if it were (evaluation overlapped
        with the commit; the caller checks that the commit then directly followed)."""
        with self._lock:  # the arrays are replaced, never changed: work on them unlocked
            held = self._live_entry(timeframe)
            generation = self._generation
            entry = None if held is None else _Entry(held.cols, dict(held.floors), held.expires)
        if entry is None:
            return self._counted(None)
        if pending is not None:
            merged, merged_floors = _merged(entry, pending, (start_ns, needed))
            entry = _Entry(merged, merged_floors, entry.expires)
            with self._lock:
                if generation == self._generation:
                    self._pending = (generation, pending, merged, merged_floors)
        floors = [entry.floors.get(i) for i in first_new]
        if any(f is None or f > start_ns for f in floors):
            return self._counted(None)
        every = len(entry.floors) == len(first_new)
        ids = None if every else np.array(sorted(first_new), dtype=np.int64)
        if every and all(f == start_ns for f in floors):
            cols = entry.cols  # trimmed to this start by the commit's merge: nothing to cut
        else:
            cols = entry.cols.filter(ids, start_ns, None)
        before = bars_before(cols, first_new)
        if len(before) != len(first_new):
            return self._counted(None)
        if min(before.values()) < needed:
            if any(f != FULL for f in floors):
                return self._counted(None)
            cols = entry.cols.filter(ids, None, None)
        elif first_new:
            with self._lock:
                self._reach[timeframe.name] = (min(first_new.values()) - start_ns, needed)
        return self._counted(cols)

    def _counted(self, cols: BarColumns | None) -> BarColumns | None:
        if cols is None:
            self.misses += 1
        else:
            self.hits += 1
        return cols

    def _live_entry(self, timeframe: Timeframe) -> _Entry | None:
        entry = self._entries.get(timeframe.name)
        if entry is not None and entry.expires <= time.monotonic():
            del self._entries[timeframe.name]
            return None
        return entry

    # -- writes --------------------------------------------------------------------------
    def fill(self, timeframe: Timeframe, generation: int, cols: BarColumns, ids: I64,
             start_ns: int | None) -> None:
        """Hold ``cols``, a store read of ``ids`` from ``start_ns`` on (None: everything),
        made after :attr:`generation` returned ``generation``."""
        with self._lock:
            if generation != self._generation or len(cols) > _MAX_ROWS:
                return  # a commit ran meanwhile: the read may lack its bars
            self._pending = None  # merged into the entry as it was before this fill
            self._generation += 1
            now = time.monotonic()
            entry = self._live_entry(timeframe)
            if entry is None:
                expires = now + self.max_age
                if now < self._unsettled_until:
                    expires = min(expires, self._unsettled_until)
                entry = self._entries[timeframe.name] = _Entry(BarColumns.empty(), {},
                                                               expires)
            floor = FULL if start_ns is None else start_ns
            if entry.floors:
                kept = entry.cols.take(~np.isin(entry.cols.instrument_id, ids))
                entry.cols = BarColumns.concat([kept, cols]).latest_wins()
            else:
                entry.cols = cols
            for ident in ids.tolist():
                entry.floors[ident] = floor

    def committed(self, timeframe: Timeframe, cols: BarColumns,
                  ingest_id: int | None) -> int | None:
        """A write of ``cols`` committed as ingest ``ingest_id`` (None: unknown). Returns the
        new generation when the write directly followed the last one seen (the windows held
        are exact with it merged), None when they were dropped."""
        with self._lock:
            pending, self._pending = self._pending, None
            self._generation += 1
            follows = (ingest_id is not None and self._last_ingest is not None
                       and ingest_id == self._last_ingest + 1)
            if ingest_id is not None:
                self._last_ingest = ingest_id
            if not follows:
                self._entries.clear()
                self._unsettled_until = time.monotonic() + _UNSETTLED_SECONDS
                return None
            entry = self._live_entry(timeframe)
            if entry is None or len(cols) == 0:
                return self._generation
            if pending is not None and pending[0] == self._generation - 1 and pending[1] is cols:
                entry.cols, entry.floors = pending[2], pending[3]
            else:
                reach = self._reach.get(timeframe.name)
                trim = None if reach is None else (int(cols.ts.min()) - reach[0], reach[1])
                entry.cols, entry.floors = _merged(entry, cols, trim)
            if len(entry.cols) > _MAX_ROWS:
                del self._entries[timeframe.name]
            return self._generation


def _merged(entry: _Entry, cols: BarColumns,
            trim: tuple[int, int] | None = None) -> tuple[BarColumns, dict[int, int]]:
    """``entry``'s bars with the held instruments' written bars at or above their floor, and
    the floors that go with them.

    ``trim`` (start, needed): where the next window starts and how many bars it needs before
    the new ones. When the write appends a bar to every held instrument and each keeps at
    least ``needed`` bars from ``start`` on, the bars before ``start`` are left out of the
    merged copy and the floors rise to ``start``: the window is then the held bars as they
    are, with no second copy. Otherwise nothing is trimmed (an instrument held whole because
    its history is short stays whole).
    """
    floors = entry.floors
    held = np.fromiter(floors, dtype=np.int64, count=len(floors))
    new = cols.take(np.isin(cols.instrument_id, held))
    if len(new) == 0:
        return entry.cols, floors
    ids, first = np.unique(new.instrument_id, return_index=True)
    lengths = np.diff(np.append(first, len(new)))
    floor = np.repeat(np.array([floors[i] for i in ids.tolist()], dtype=np.int64), lengths)
    new = new.take(new.ts >= floor)
    if len(new) == 0:
        return entry.cols, floors
    old = entry.cols
    at = np.searchsorted(old.instrument_id, new.instrument_id, "right")
    prev = at - 1
    appends = bool(np.all(prev >= 0)) and bool(np.all(
        (old.instrument_id[prev] == new.instrument_id) & (old.ts[prev] < new.ts)))
    if appends:  # the usual live case: every written bar is its instrument's newest
        if trim is not None and len(ids) == len(floors):
            trimmed = _trimmed(old, ids, at, trim)
            if trimmed is not None:
                return _inserted(old, at, new, trimmed), {
                    i: max(f, trim[0]) for i, f in floors.items()}
        return _inserted(old, at, new), floors
    # Late, rewritten or out-of-order bars: the store's own rule, newest write wins.
    return BarColumns.concat([old, new]).latest_wins(), floors


def _trimmed(old: BarColumns, ids: I64, at: I64,
             trim: tuple[int, int]) -> tuple[npt.NDArray[np.bool_], I64] | None:
    """Which of ``old``'s rows lie from ``trim``'s start on, and their running count; None
    when an instrument of ``ids`` (every held one) would keep fewer than it needs."""
    start, needed = trim
    keep = old.ts >= start
    kept: I64 = np.cumsum(keep, dtype=np.int64)
    ends = np.unique(at)  # one past each instrument's last held row
    begins = np.searchsorted(old.instrument_id, ids, "left")
    counts: I64 = kept[ends - 1] - np.where(begins > 0, kept[np.maximum(begins - 1, 0)], 0)
    if len(counts) != len(ids) or int(counts.min()) < needed:
        return None
    return keep, kept


def _inserted(old: BarColumns, at: I64, new: BarColumns,
              trimmed: tuple[npt.NDArray[np.bool_], I64] | None = None) -> BarColumns:
    """``np.insert(column, at, new column)`` for every column (``at`` non-decreasing), the
    rows' places worked out once rather than once per column; with ``trimmed`` (the old rows
    to keep and their running count, see ``_trimmed``), only those old rows, in the same
    gather."""
    if trimmed is None:
        total = len(old) + len(new)
        new_rows = at + np.arange(len(new), dtype=np.int64)
        old_rows = np.ones(total, dtype=bool)
        old_rows[new_rows] = False
        columns = []
        for name in _COLUMNS:
            held = getattr(old, name)
            column = np.empty(total, dtype=held.dtype)
            column[new_rows] = getattr(new, name)
            column[old_rows] = held
            columns.append(column)
        return BarColumns(*columns)
    # One index into [old rows, new rows] per output row, then one take per column.
    keep, kept = trimmed
    before = np.where(at > 0, kept[np.maximum(at - 1, 0)], 0)
    new_rows = before + np.arange(len(new), dtype=np.int64)
    total = int(kept[-1]) + len(new)
    source = np.empty(total, dtype=np.int64)
    is_new = np.zeros(total, dtype=bool)
    is_new[new_rows] = True
    source[new_rows] = len(old) + np.arange(len(new), dtype=np.int64)
    source[~is_new] = np.flatnonzero(keep)
    return BarColumns(*(np.concatenate((getattr(old, name), getattr(new, name))).take(source)
                        for name in _COLUMNS))
