"""The backtest's cost model as one value: slippage against the trader, fees per order.

Same arithmetic, operation for operation, as the engine's kernels (`domain.backtest._core`), so
a paper fill and a backtest fill of the same order agree to the last bit:
``price * (1 + slip)`` for buys, ``price * (1 - slip)`` for sells, ``slip = bps / 10_000``;
fee ``|amount| * fill_price * fee_pct + fee_fixed``, in the quote currency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from signalfactory.domain.backtest.config import BacktestConfig
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.orders import Side


@dataclass(frozen=True)
class CostModel:
    fee_pct: float = 0.0
    fee_fixed: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.fee_pct < 0.1):
            raise BadInputError("fee_pct is a fraction of traded value: use 0 <= fee < 0.1",
                                rule="fees")
        if not (math.isfinite(self.fee_fixed) and self.fee_fixed >= 0):
            raise BadInputError("fee_fixed must be zero or a positive amount per order",
                                rule="fees")
        if not (0.0 <= self.slippage_bps < 1000):
            raise BadInputError("slippage is in basis points: use 0 <= slippage < 1000",
                                rule="slippage")

    @classmethod
    def of(cls, config: BacktestConfig) -> CostModel:
        return cls(config.fee_pct, config.fee_fixed, config.slippage_bps)

    def fill_price(self, price: float, side: Side) -> float:
        """The price a market order of ``side`` gets when the market is at ``price``."""
        slip = self.slippage_bps / 10_000.0
        return price * (1.0 + slip) if side == "buy" else price * (1.0 - slip)

    def fee(self, amount: float, fill_price: float) -> float:
        """Fee of one order of ``amount`` filled at ``fill_price``."""
        return abs(amount) * fill_price * self.fee_pct + self.fee_fixed


FREE = CostModel()
