"""How a backtest trades: direction, fills, costs, sizing and protective stops.

`BacktestConfig` is a frozen value object; it validates itself on construction (raising
`BadInputError` with a message that says what to change) and packs itself into the two small
arrays the numba kernels read (`kernel_params`), so the kernels never see Python objects.

Conventions (shared by every mode of the engine):

- **Fills.** ``fill="close"``: a signal computed on bar *t* fills at the close of *t*.
  ``fill="next_open"``: it fills at the open of *t + 1* (a signal on the last bar never fills).
- **Costs.** Slippage moves every fill price against the trader by ``slippage_bps`` basis points
  (buys pay more, sells receive less), stops included. Fees are ``fee_pct`` of the traded value
  (at the slipped price) plus ``fee_fixed`` per order; entries and exits are separate orders, so a
  position flip pays the fixed fee twice.
- **Sizing** (evaluated at the fill, on the equity at that moment; never more than the cash
  available, so there is no leverage):
  ``fraction``: spend ``size_value`` x equity (1.0 = all in, the default);
  ``cash``: spend ``size_value`` of cash; ``units``: ``size_value`` units;
  ``risk``: risk ``size_value`` x equity per trade, with ``atr x atr_multiple`` as the distance to
  the invalidation level, i.e. ``units = size_value * equity / (atr[t] * atr_multiple)``.
  Units are rounded down to whole units when ``whole_units`` (the default) and the order is
  skipped when that leaves zero units. Cash to spend includes the fees:
  ``units = (budget - fee_fixed) / (price * (1 + fee_pct))``.
- **Stops** are fractions of the entry fill price (``stop_loss=0.05`` = 5 % below a long's entry).
  The trailing stop trails the most favourable high (long) or low (short) seen by the end of the
  previous bar. Within a bar the engine cannot know whether the high or the low came first, so
  when both a loss-side level (stop-loss or trailing) and the take-profit are touched it takes
  the pessimistic outcome, the loss side. A bar that opens beyond a level fills at the open.
- **Shorts** are collateralised: opening a short sets aside its entry value from cash; its value
  is ``units * (2 * entry - price)``. Equity is cash plus position value, which is the same
  equity backtesting.py and vectorbt report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from signalfactory.domain.errors import BadInputError

DirectionName = Literal["long", "short", "both"]
FillName = Literal["close", "next_open"]
SizingName = Literal["fraction", "cash", "units", "risk"]


class Direction(IntEnum):
    LONG = 0
    SHORT = 1
    BOTH = 2


class Fill(IntEnum):
    CLOSE = 0
    NEXT_OPEN = 1


class Sizing(IntEnum):
    FRACTION = 0
    CASH = 1
    UNITS = 2
    RISK = 3


class ExitReason(IntEnum):
    """Why a trade ended; stored as int8 in the trades arrays."""

    SIGNAL = 0
    STOP_LOSS = 1
    TAKE_PROFIT = 2
    TRAILING_STOP = 3
    REVERSED = 4  # closed by an opposite entry (position flip)
    END = 5  # closed at the last bar because ``close_at_end``
    OPEN = 6  # still open at the last bar: marked to market, no exit fee
    LIQUIDATED = 7  # equity fell to zero or below; closed and trading stopped


# Layout of the float parameter vector read by the kernels (indices are part of the contract
# between this module and the kernels; keep them in sync).
F_FEE_PCT, F_FEE_FIXED, F_SLIPPAGE, F_SIZE, F_ATR_MULT, F_SL, F_TP, F_TRAIL, F_CASH = range(9)
N_FPARAMS = 9
I_DIRECTION, I_FILL, I_SIZING, I_WHOLE, I_CLOSE_AT_END = range(5)
N_IPARAMS = 5


@dataclass(frozen=True)
class BacktestConfig:
    """Every setting of one backtest; see the module docstring for the exact semantics."""

    direction: DirectionName = "long"
    fill: FillName = "close"
    initial_cash: float = 10_000.0
    fee_pct: float = 0.0
    fee_fixed: float = 0.0
    slippage_bps: float = 0.0
    sizing: SizingName = "fraction"
    size_value: float = 1.0
    atr_multiple: float = 1.0
    whole_units: bool = True
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    close_at_end: bool = False

    def __post_init__(self) -> None:
        def bad(message: str, rule: str) -> BadInputError:
            return BadInputError(message, rule=rule)

        if self.direction not in ("long", "short", "both"):
            raise bad(f"direction {self.direction!r} is not valid; use long, short or both",
                      "direction")
        if self.fill not in ("close", "next_open"):
            raise bad(f"fill {self.fill!r} is not valid; use close or next_open", "fill")
        if self.sizing not in ("fraction", "cash", "units", "risk"):
            raise bad(f"sizing {self.sizing!r} is not valid; use fraction, cash, units or risk",
                      "size")
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise bad("initial cash must be a positive number", "cash")
        if not (0.0 <= self.fee_pct < 0.1):
            raise bad("fee_pct is a fraction of traded value: use 0 <= fee < 0.1 "
                      "(0.001 = 0.1 %)", "fees")
        if not (math.isfinite(self.fee_fixed) and self.fee_fixed >= 0):
            raise bad("fee_fixed must be zero or a positive amount per order", "fees")
        if not (0.0 <= self.slippage_bps < 1000):
            raise bad("slippage is in basis points: use 0 <= slippage < 1000", "slippage")
        if not (math.isfinite(self.size_value) and self.size_value > 0):
            raise bad("the size value must be a positive number", "size")
        if self.sizing == "fraction" and self.size_value > 1:
            raise bad("a fraction of equity must be in (0, 1]; there is no leverage", "size")
        if self.sizing == "risk" and self.size_value >= 1:
            raise bad("risk per trade is a fraction of equity such as 0.01 (1 %)", "size")
        if not (math.isfinite(self.atr_multiple) and self.atr_multiple > 0):
            raise bad("atr_multiple must be a positive number", "size")
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            value = getattr(self, name)
            if value is not None and not (0 < value < 1 or (name == "take_profit" and value > 0)):
                raise bad(f"{name} is a fraction of the entry price, e.g. 0.05 for 5 %", name)

    @property
    def needs_atr(self) -> bool:
        return self.sizing == "risk"

    def kernel_params(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """The float and int parameter vectors the numba kernels read."""
        f = np.zeros(N_FPARAMS, dtype=np.float64)
        f[F_FEE_PCT] = self.fee_pct
        f[F_FEE_FIXED] = self.fee_fixed
        f[F_SLIPPAGE] = self.slippage_bps / 10_000.0
        f[F_SIZE] = self.size_value
        f[F_ATR_MULT] = self.atr_multiple
        f[F_SL] = self.stop_loss if self.stop_loss is not None else 0.0
        f[F_TP] = self.take_profit if self.take_profit is not None else 0.0
        f[F_TRAIL] = self.trailing_stop if self.trailing_stop is not None else 0.0
        f[F_CASH] = self.initial_cash
        i = np.zeros(N_IPARAMS, dtype=np.int64)
        i[I_DIRECTION] = Direction[self.direction.upper()]
        i[I_FILL] = Fill[self.fill.upper()]
        i[I_SIZING] = Sizing[self.sizing.upper()]
        i[I_WHOLE] = int(self.whole_units)
        i[I_CLOSE_AT_END] = int(self.close_at_end)
        return f, i
