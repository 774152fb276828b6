"""Single-instrument backtests: typed entry point over the numba core in `_core.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from signalfactory.domain.backtest import _core
from signalfactory.domain.backtest.config import BacktestConfig, ExitReason
from signalfactory.domain.backtest.signals import Signals
from signalfactory.domain.errors import BadInputError

if TYPE_CHECKING:
    from signalfactory.domain.backtest.metrics import Metrics

FloatArray = npt.NDArray[np.float64]
EquityArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
EMPTY_F64: FloatArray = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True)
class Trades:
    """Closed (and, last, possibly one still open) trades as columns.

    ``size`` is signed (negative = short); ``pnl`` is net of both orders' fees;
    ``ret = pnl / (|size| * entry_price)`` (backtesting.py's ``ReturnPct``).
    Bar indices are positions in the arrays the backtest ran on.
    """

    entry_idx: IntArray
    exit_idx: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    size: FloatArray
    pnl: FloatArray
    ret: FloatArray
    fees: FloatArray
    reason: npt.NDArray[np.int8]

    @classmethod
    def from_records(cls, rec: FloatArray) -> Trades:
        c = _core
        return cls(
            entry_idx=rec[:, c.T_ENTRY_IDX].astype(np.int64),
            exit_idx=rec[:, c.T_EXIT_IDX].astype(np.int64),
            entry_price=rec[:, c.T_ENTRY_PRICE].copy(),
            exit_price=rec[:, c.T_EXIT_PRICE].copy(),
            size=rec[:, c.T_SIZE].copy(),
            pnl=rec[:, c.T_PNL].copy(),
            ret=rec[:, c.T_RET].copy(),
            fees=rec[:, c.T_FEES].copy(),
            reason=rec[:, c.T_REASON].astype(np.int8),
        )

    def __len__(self) -> int:
        return int(self.entry_idx.shape[0])

    @property
    def is_open(self) -> npt.NDArray[np.bool_]:
        result: npt.NDArray[np.bool_] = self.reason == ExitReason.OPEN
        return result

    def closed(self) -> Trades:
        keep = ~self.is_open
        return Trades(*(getattr(self, f)[keep] for f in _TRADE_FIELDS))

    def as_rows(self) -> list[dict[str, float | int | str]]:
        """One dict per trade (for JSON output and reports)."""
        return [
            {
                "entry_idx": int(self.entry_idx[i]), "exit_idx": int(self.exit_idx[i]),
                "entry_price": float(self.entry_price[i]),
                "exit_price": float(self.exit_price[i]), "size": float(self.size[i]),
                "pnl": float(self.pnl[i]), "return": float(self.ret[i]),
                "fees": float(self.fees[i]),
                "exit_reason": ExitReason(int(self.reason[i])).name.lower(),
            }
            for i in range(len(self))
        ]


_TRADE_FIELDS = ("entry_idx", "exit_idx", "entry_price", "exit_price", "size", "pnl", "ret",
                 "fees", "reason")


@dataclass(frozen=True)
class BacktestResult:
    config: BacktestConfig
    equity: EquityArray  # per bar of the window, marked at the close (empty if not recorded)
    trades: Trades
    final_equity: float
    start: int
    n_bars: int

    def metrics(self, close: FloatArray, bars_per_year: float,
                ts: IntArray | None = None) -> Metrics:
        """Metrics of the run; ``close``/``ts`` are the full arrays the backtest ran on."""
        from signalfactory.domain.backtest.metrics import compute_metrics

        if self.equity.shape[0] != self.n_bars:
            raise BadInputError("metrics need the equity curve; run with record_equity=True")
        window = slice(self.start, self.start + self.n_bars)
        return compute_metrics(self.equity, self.trades, close[window], bars_per_year,
                               initial_cash=self.config.initial_cash,
                               ts=None if ts is None else ts[window], bar_offset=self.start)


def as_price(x: npt.ArrayLike, name: str, n: int | None = None) -> FloatArray:
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise BadInputError(f"{name} must be a 1-D array of {n} prices, got shape {arr.shape}")
    return arr


def prepare_inputs(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                   close: npt.ArrayLike, signals: Signals, atr: npt.ArrayLike | None,
                   config: BacktestConfig) -> tuple[FloatArray, FloatArray, FloatArray,
                                                    FloatArray, FloatArray]:
    c = as_price(close, "close")
    n = c.shape[0]
    o = as_price(open_, "open", n)
    h = as_price(high, "high", n)
    lo = as_price(low, "low", n)
    if len(signals) != n:
        raise BadInputError(f"signals cover {len(signals)} bars but prices cover {n}")
    if config.needs_atr:
        if atr is None:
            raise BadInputError("risk sizing needs an ATR array (one value per bar)",
                                rule="size")
        a = as_price(atr, "atr", n)
    else:
        a = EMPTY_F64
    if not (np.isfinite(c).all() and np.isfinite(o).all()):
        raise BadInputError("prices contain NaN or infinite values; clean the bars first")
    return o, h, lo, c, a


def run_backtest(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                 close: npt.ArrayLike, signals: Signals, config: BacktestConfig, *,
                 atr: npt.ArrayLike | None = None, start: int = 0, end: int | None = None,
                 record_equity: bool = True,
                 equity_dtype: type[np.floating[Any]] = np.float64) -> BacktestResult:
    """Backtest one instrument over bars ``start..end-1`` (indices into the given arrays).

    Signals and ATR must be computed from data up to their own bar only (indicators such as
    TA-Lib's are); the engine itself never reads ahead, see `_core`.
    """
    o, h, lo, c, a = prepare_inputs(open_, high, low, close, signals, atr, config)
    n = c.shape[0]
    stop = n if end is None else end
    if not (0 <= start <= stop <= n):
        raise BadInputError(f"window {start}..{stop} is outside the {n} bars")
    fp, ip = config.kernel_params()
    capacity = signals.entry_count() + 1
    trades = np.empty((capacity, _core.N_TRADE_COLS), dtype=np.float64)
    equity: EquityArray = (
        np.empty(stop - start, dtype=equity_dtype) if record_equity else EMPTY_F64)
    k, final = _core.simulate_nb(o, h, lo, c, signals.long_entry, signals.long_exit,
                                 signals.short_entry, signals.short_exit, a, fp, ip,
                                 start, stop, equity, trades)
    return BacktestResult(config=config, equity=equity,
                          trades=Trades.from_records(trades[: int(k)]),
                          final_equity=float(final), start=start, n_bars=stop - start)
