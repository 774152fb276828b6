"""Parameter sweeps: grids, random search, ranking, out-of-sample split and walk-forward.

Two sweepers share one interface (`Sweeper`): given parameter sets and a bar window they
return one summary row per set (`SUMMARY_FIELDS`), and can replay a single set in full.

- `CrossoverSweeper` is the fast path for "line A crosses line B" strategies (SMA/EMA cross,
  price vs. moving average...). The caller gives a function from one parameter value to an
  indicator line; it is called **once per distinct value**, the lines are stacked into one 2-D
  array, and a ``prange`` numba kernel runs every (fast, slow) pair on all cores, deriving the
  crossovers and simulating without ever materialising more than one pair's arrays per thread.
- `SignalSweeper` runs any strategy: a function from a parameter dict to `Signals`; backtests
  run on a thread pool (the engine releases the GIL), so every core is used as well.

Ranking: by one summary field, best first (highest, except ``max_drawdown``: lowest); NaN
last; ties keep the order the parameter sets were given in, so results are deterministic.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from signalfactory.domain.backtest import _core
from signalfactory.domain.backtest.config import F_CASH, BacktestConfig
from signalfactory.domain.backtest.engine import BacktestResult, run_backtest
from signalfactory.domain.backtest.metrics import N_SUMMARY, SUMMARY_FIELDS, summary_nb
from signalfactory.domain.backtest.signals import Signals, crossings_into_nb
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.numba_setup import njit, prange

FloatArray = npt.NDArray[np.float64]
Params = dict[str, float]
LOWER_IS_BETTER = frozenset({"max_drawdown"})


def grid(constraint: Callable[[Params], bool] | None = None,
         **ranges: Sequence[float]) -> list[Params]:
    """Every combination of the given values (in the order given), optionally filtered."""
    names = list(ranges)
    out = [dict(zip(names, combo, strict=True))
           for combo in itertools.product(*(ranges[n] for n in names))]
    return [p for p in out if constraint is None or constraint(p)]


def random_search(space: Mapping[str, Sequence[float]], n: int, seed: int,
                  constraint: Callable[[Params], bool] | None = None) -> list[Params]:
    """``n`` distinct combinations drawn from the grid with a seeded generator (reproducible)."""
    candidates = grid(constraint, **space)
    rng = random.Random(seed)  # noqa: S311  # sampling parameters, not secrets
    return rng.sample(candidates, min(n, len(candidates)))


class Sweeper(Protocol):
    def summaries(self, params: Sequence[Params], start: int, end: int) -> FloatArray: ...

    def backtest(self, params: Params, start: int, end: int) -> BacktestResult: ...


@njit(cache=True, parallel=True)
def _crossover_sweep_nb(lines: np.ndarray, pairs: np.ndarray, open_: np.ndarray,
                        high: np.ndarray, low: np.ndarray, close: np.ndarray, fp: np.ndarray,
                        ip: np.ndarray, start: int, end: int, bars_per_year: float,
                        n_blocks: int, out: np.ndarray) -> None:
    """Pair j = pairs[j] (rows of ``lines``); its summary row goes to out[j].

    Pairs are dealt round-robin to ``n_blocks`` blocks run in parallel; each block allocates
    its scratch once, because fresh multi-megabyte arrays per pair cost more in page faults
    than the simulation itself.
    """
    n = close.shape[0]
    m = end - start
    no_atr = np.empty(0, dtype=np.float64)
    n_pairs = pairs.shape[0]
    for blk in prange(n_blocks):
        up = np.empty(n, dtype=np.bool_)
        down = np.empty(n, dtype=np.bool_)
        eq = np.empty(m, dtype=np.float64)
        for j in range(blk, n_pairs, n_blocks):
            crossings_into_nb(lines[pairs[j, 0]], lines[pairs[j, 1]], up, down)
            entries = 1
            for t in range(start, end):
                entries += up[t] + down[t]
            trades = np.empty((entries, _core.N_TRADE_COLS), dtype=np.float64)
            k, _ = _core.simulate_nb(open_, high, low, close, up, down, down, up, no_atr, fp,
                                     ip, start, end, eq, trades)
            summary_nb(eq, trades[:k], fp[F_CASH], bars_per_year, out[j])


@dataclass
class CrossoverSweeper:
    """Sweeps ``fast``/``slow`` line pairs; ``line(value)`` computes one indicator line."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    line: Callable[[float], FloatArray]
    config: BacktestConfig
    bars_per_year: float = 252.0

    def __post_init__(self) -> None:
        if self.config.needs_atr:
            raise BadInputError("the crossover sweep does not support risk (ATR) sizing",
                                rule="size")
        self._lines: dict[float, FloatArray] = {}

    def _matrix(self, values: Sequence[float]) -> tuple[FloatArray, dict[float, int]]:
        for v in values:
            if v not in self._lines:  # once per distinct parameter value, ever
                line = np.ascontiguousarray(self.line(v), dtype=np.float64)
                if line.shape != self.close.shape:
                    raise BadInputError(f"the line for {v} has shape {line.shape}, expected "
                                        f"{self.close.shape}")
                self._lines[v] = line
        distinct = sorted(set(values))
        return np.stack([self._lines[v] for v in distinct]), {v: i for i, v in
                                                             enumerate(distinct)}

    def summaries(self, params: Sequence[Params], start: int, end: int) -> FloatArray:
        _check_window(start, end, self.close.shape[0])
        values = [p["fast"] for p in params] + [p["slow"] for p in params]
        matrix, row = self._matrix(values)
        pairs = np.array([[row[p["fast"]], row[p["slow"]]] for p in params],
                         dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(params), N_SUMMARY), dtype=np.float64)
        fp, ip = self.config.kernel_params()
        blocks = min(len(params), 4 * (os.cpu_count() or 1))
        _crossover_sweep_nb(matrix, pairs, self.open, self.high, self.low, self.close, fp, ip,
                            start, end, float(self.bars_per_year), blocks, out)
        return out

    def backtest(self, params: Params, start: int, end: int) -> BacktestResult:
        matrix, row = self._matrix([params["fast"], params["slow"]])
        signals = Signals.crossover(matrix[row[params["fast"]]], matrix[row[params["slow"]]])
        return run_backtest(self.open, self.high, self.low, self.close, signals, self.config,
                            start=start, end=end)


@dataclass
class SignalSweeper:
    """Sweeps any strategy: ``make_signals(params)`` builds its signals for all bars."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    make_signals: Callable[[Params], Signals]
    config: BacktestConfig
    bars_per_year: float = 252.0
    atr: FloatArray | None = None
    workers: int | None = None

    def summaries(self, params: Sequence[Params], start: int, end: int) -> FloatArray:
        _check_window(start, end, self.close.shape[0])
        out = np.empty((len(params), N_SUMMARY), dtype=np.float64)

        def one(j: int) -> None:
            result = self.backtest(params[j], start, end)
            rows = _trade_rows(result)
            summary_nb(result.equity, rows, self.config.initial_cash,
                       float(self.bars_per_year), out[j])

        workers = self.workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(len(params))))
        return out

    def backtest(self, params: Params, start: int, end: int) -> BacktestResult:
        return run_backtest(self.open, self.high, self.low, self.close,
                            self.make_signals(params), self.config, atr=self.atr,
                            start=start, end=end)


def _trade_rows(result: BacktestResult) -> FloatArray:
    t = result.trades
    rows = np.empty((len(t), _core.N_TRADE_COLS), dtype=np.float64)
    for col, name in ((_core.T_ENTRY_IDX, "entry_idx"), (_core.T_EXIT_IDX, "exit_idx"),
                      (_core.T_ENTRY_PRICE, "entry_price"), (_core.T_EXIT_PRICE, "exit_price"),
                      (_core.T_SIZE, "size"), (_core.T_PNL, "pnl"), (_core.T_RET, "ret"),
                      (_core.T_FEES, "fees"), (_core.T_REASON, "reason")):
        rows[:, col] = getattr(t, name)
    return rows


def _check_window(start: int, end: int, n: int) -> None:
    if not (0 <= start < end <= n):
        raise BadInputError(f"window {start}..{end} is not inside the {n} bars")


def rank(summary: FloatArray, metric: str) -> npt.NDArray[np.int64]:
    """Row order, best first (see the module docstring)."""
    if metric not in SUMMARY_FIELDS:
        raise BadInputError(f"unknown metric {metric!r}; use one of {', '.join(SUMMARY_FIELDS)}",
                            rule="metric")
    values = summary[:, SUMMARY_FIELDS.index(metric)]
    key = values if metric in LOWER_IS_BETTER else -values
    key = np.where(np.isnan(key), np.inf, key)
    order: npt.NDArray[np.int64] = np.argsort(key, kind="stable")
    return order


@dataclass(frozen=True)
class SweepResult:
    params: list[Params]
    summary: FloatArray
    metric: str
    order: npt.NDArray[np.int64]

    @property
    def best(self) -> Params:
        return self.params[int(self.order[0])]

    def row(self, i: int) -> dict[str, float]:
        return dict(zip(SUMMARY_FIELDS, (float(x) for x in self.summary[i]), strict=True))

    def table(self, top: int | None = None) -> list[dict[str, float]]:
        """Ranked rows: the parameters followed by their summary fields."""
        picked = self.order if top is None else self.order[:top]
        return [{**self.params[int(i)], **self.row(int(i))} for i in picked]


def optimise(sweeper: Sweeper, params: Sequence[Params], metric: str, start: int,
             end: int) -> SweepResult:
    if not params:
        raise BadInputError("the sweep has no parameter sets")
    summary = sweeper.summaries(params, start, end)
    return SweepResult(list(params), summary, metric, rank(summary, metric))


@dataclass(frozen=True)
class SplitResult:
    """The in-sample ranking and the top sets replayed on the unseen out-of-sample bars."""

    in_sample: SweepResult
    out_of_sample: SweepResult  # the top sets only, in in-sample order (order = 0..top-1)
    split: int

    @property
    def best(self) -> Params:
        return self.in_sample.best


def split_test(sweeper: Sweeper, params: Sequence[Params], metric: str, n_bars: int, *,
               in_sample: float = 0.7, top: int = 5) -> SplitResult:
    """Optimise on the first ``in_sample`` share of bars, replay the ``top`` sets after it."""
    if not 0 < in_sample < 1:
        raise BadInputError("the in-sample share must be between 0 and 1")
    split = int(n_bars * in_sample)
    ins = optimise(sweeper, params, metric, 0, split)
    picked = [ins.params[int(i)] for i in ins.order[:top]]
    oos_summary = sweeper.summaries(picked, split, n_bars)
    oos = SweepResult(picked, oos_summary, metric, np.arange(len(picked), dtype=np.int64))
    return SplitResult(ins, oos, split)


@dataclass(frozen=True)
class WalkForwardWindow:
    train: tuple[int, int]
    test: tuple[int, int]
    best: Params
    in_sample: dict[str, float]
    out_of_sample: dict[str, float]


@dataclass(frozen=True)
class WalkForwardResult:
    windows: list[WalkForwardWindow]
    equity: FloatArray  # the test windows chained: each restarts from the previous end
    summary: dict[str, float]  # of the chained out-of-sample curve and trades


def walk_forward(sweeper: Sweeper, params: Sequence[Params], metric: str, n_bars: int, *,
                 train: int, test: int, initial_cash: float,
                 bars_per_year: float) -> WalkForwardResult:
    """Rolling windows: optimise on ``train`` bars, trade the best set on the next ``test``
    bars, roll forward by ``test``; the out-of-sample pieces are chained into one curve."""
    if train <= 0 or test <= 0 or train + test > n_bars:
        raise BadInputError(f"train ({train}) and test ({test}) windows must fit in "
                            f"{n_bars} bars")
    windows: list[WalkForwardWindow] = []
    growth: list[FloatArray] = []
    trade_rows: list[FloatArray] = []
    s = 0
    while s + train < n_bars:
        t0, t1 = s + train, min(s + train + test, n_bars)
        ins = optimise(sweeper, params, metric, s, t0)
        result = sweeper.backtest(ins.best, t0, t1)
        oos_row = np.empty(N_SUMMARY)
        rows = _trade_rows(result)
        summary_nb(result.equity, rows, initial_cash, bars_per_year,
                   oos_row)
        windows.append(WalkForwardWindow(
            (s, t0), (t0, t1), ins.best, ins.row(int(ins.order[0])),
            dict(zip(SUMMARY_FIELDS, (float(x) for x in oos_row), strict=True))))
        growth.append(np.asarray(result.equity, dtype=np.float64) / initial_cash)
        # scale pnl to the chained capital so the summary's trade stats stay consistent
        scale = float(np.prod([g[-1] for g in growth[:-1]])) if len(growth) > 1 else 1.0
        rows[:, _core.T_PNL] *= scale
        trade_rows.append(rows)
        s += test
    chained = np.empty(0, dtype=np.float64)
    level = initial_cash
    parts = []
    for g in growth:
        parts.append(level * g)
        level = float(level * g[-1])
    chained = np.concatenate(parts) if parts else chained
    summary = np.empty(N_SUMMARY)
    all_rows = (np.concatenate(trade_rows) if trade_rows
                else np.empty((0, _core.N_TRADE_COLS)))
    summary_nb(chained, all_rows, initial_cash, bars_per_year,
               summary)
    return WalkForwardResult(windows, chained,
                             dict(zip(SUMMARY_FIELDS, (float(x) for x in summary), strict=True)))


__all__ = ["CrossoverSweeper", "SignalSweeper", "SplitResult", "SweepResult",
           "WalkForwardResult", "grid", "optimise", "random_search", "rank", "split_test",
           "walk_forward"]
