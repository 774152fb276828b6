"""A local Binance spot REST API: the real ccxt client is tested against it over loopback.

See :class:`ExchangeSimulator`. Imports only the standard library and numpy.
"""

from signalfactory.testing.exchange_simulator.market import Bars, SymbolSpec, synthetic_bars
from signalfactory.testing.exchange_simulator.simulator import ExchangeSimulator

__all__ = ["Bars", "ExchangeSimulator", "SymbolSpec", "synthetic_bars"]
