"""A deterministic synthetic market: something to scan and backtest with no network.

Each symbol follows a geometric random walk whose drift (trend) and volatility switch between
regimes by a Markov chain, so scans and strategies see trends, ranges and volatility bursts.
Bars follow realistic relations: open near the previous close (with gaps), high/low beyond
both open and close, volume rising with absolute returns. Dates are business days (Mon-Fri).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarSeries

SECTORS: tuple[str, ...] = ("technology", "financials", "healthcare", "energy", "industrials",
                            "consumer", "utilities", "materials")
_DAY_NS = 86400 * 1_000_000_000
# 2015-01-05 was a Monday: a stable, business-day-aligned default start.
DEFAULT_START_NS = 1420416000 * 1_000_000_000


@dataclass(frozen=True)
class SyntheticSymbol:
    symbol: str
    sector: str
    bars: BarSeries


def business_days(start_ns: int, n: int) -> np.ndarray:
    """n weekday timestamps (UTC midnight) from start (which is moved to a weekday)."""
    start_day = start_ns // _DAY_NS
    weeks = n // 5 + 2
    days = start_day + np.arange(weeks * 7, dtype=np.int64)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    days = days[weekday < 5][:n]
    return days * _DAY_NS


def _symbol_name(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    name = ""
    k = i
    for _ in range(3):
        name = letters[k % 26] + name
        k //= 26
    return f"S{name}{i // 17576}" if i >= 17576 else f"S{name}"


def generate_symbol(rng: np.random.Generator, symbol: str, ts: np.ndarray) -> BarSeries:
    n = ts.shape[0]
    # Regimes: 0 calm uptrend, 1 calm downtrend, 2 volatile range, 3 volatile uptrend.
    drift = np.array([0.0006, -0.0005, 0.0, 0.001])
    vol = np.array([0.010, 0.012, 0.025, 0.020])
    stay = 0.985
    switches: npt.NDArray[np.bool_] = np.asarray(rng.random(n) > stay)
    choices: npt.NDArray[np.int64] = np.asarray(rng.integers(0, 4, size=n), dtype=np.int64)
    switches[0] = True  # the first bar draws the starting regime
    last_switch = np.maximum.accumulate(np.where(switches, np.arange(n), 0))
    regime = choices[last_switch]
    sigma = vol[regime] * rng.uniform(0.6, 1.4)
    rets = drift[regime] + sigma * rng.standard_t(5, size=n) / np.sqrt(5 / 3)
    start_price = float(np.exp(rng.uniform(np.log(5), np.log(500))))
    close = start_price * np.exp(np.cumsum(rets))
    prev_close = np.concatenate(([start_price], close[:-1]))
    gap = 1 + sigma * 0.3 * rng.standard_normal(n)
    open_ = prev_close * gap
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * (1 + np.abs(rng.normal(0, sigma * 0.5, n)))
    low = bottom * (1 - np.minimum(np.abs(rng.normal(0, sigma * 0.5, n)), 0.5))
    base_volume = float(rng.uniform(2e5, 5e6))
    volume = np.round(base_volume * (1 + 25 * np.abs(rets)) * rng.lognormal(0, 0.3, n))
    return BarSeries(symbol=symbol, ts=ts, open=np.round(open_, 4),
                     high=np.round(high, 4) + 0.0, low=np.round(low, 4),
                     close=np.round(close, 4), volume=volume)


def generate_universe(n_symbols: int, n_bars: int, seed: int,
                      start_ns: int = DEFAULT_START_NS) -> list[SyntheticSymbol]:
    """The same arguments always give the same universe."""
    ts = business_days(start_ns, n_bars)
    out = []
    for i in range(n_symbols):
        rng = np.random.default_rng([seed, i])
        symbol = _symbol_name(i)
        bars = generate_symbol(rng, symbol, ts)
        # Rounding may nudge open/close a hair past high/low; keep the OHLC relations exact.
        high = np.maximum(bars.high, np.maximum(bars.open, bars.close))
        low = np.minimum(bars.low, np.minimum(bars.open, bars.close))
        fixed = BarSeries(symbol, bars.ts, bars.open, high, low, bars.close, bars.volume)
        out.append(SyntheticSymbol(symbol=symbol, sector=SECTORS[i % len(SECTORS)], bars=fixed))
    return out
