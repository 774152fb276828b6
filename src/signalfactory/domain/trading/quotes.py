"""The price a paper exchange fills market orders at, and where it comes from.

A paper exchange asks a `PriceSource` for the current price of a symbol. Replaying stored
bars, the bar-stepping session (`domain.trading.paper_session`) sets a `BarQuotes` to the
price it acts at: the close of the signal bar (``fill="close"``) or the open of the bar after
it (``fill="next_open"``), which is how the paper exchange follows the backtest's fill model.
Live, a source can read the newest stored bar or a ticker instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timestamps import ns_to_datetime


@dataclass(frozen=True)
class Quote:
    """A price and when it was the price (fills are stamped with this time)."""

    price: float
    at: datetime


PriceSource = Callable[[str], Quote | None]


class BarQuotes:
    """A `PriceSource` whose prices are set explicitly (one per symbol)."""

    def __init__(self) -> None:
        self._quotes: dict[str, Quote] = {}

    def set(self, symbol: str, price: float, ns: int) -> None:
        if not (math.isfinite(price) and price > 0):
            raise BadInputError(f"{symbol}: a price must be a positive number, got {price}")
        self._quotes[symbol] = Quote(price, ns_to_datetime(ns))

    def __call__(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)
