"""The sample universe: deterministic synthetic bars stored like any ingest."""

from __future__ import annotations

from collections.abc import Callable

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.synthetic import generate_universe
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, WriteReport, write_bars
from signalfactory.services.platform import Platform


def store_sample(platform: Platform, *, symbols: int, bars: int, seed: int,
                 progress: Callable[[int], None] | None = None) -> WriteReport:
    if symbols < 1 or symbols > 100_000:
        raise BadInputError(f"--symbols must be between 1 and 100000, got {symbols}")
    if bars < 2 or bars > 1_000_000:
        raise BadInputError(f"--bars must be between 2 and 1000000, got {bars}")
    batches = []
    for item in generate_universe(symbols, bars, seed):
        b = item.bars
        batches.append(SymbolBars(
            spec=InstrumentSpec(symbol=item.symbol, venue="SYNTH", asset_class="equity",
                                currency="USD",
                                tags={"sector": item.sector, "universe": "sample"}),
            ts=b.ts, open=b.open, high=b.high, low=b.low, close=b.close, volume=b.volume))
        if progress is not None:
            progress(1)
    return write_bars(platform, Timeframe.parse("1d"), batches,
                      source=f"sample(symbols={symbols}, bars={bars}, seed={seed})")
