"""Ingest: read every file, validate every rule, then write everything in one transaction."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from signalfactory.adapters.sources.files import ProgressFn, read_bar_file
from signalfactory.domain.bar_validation import RawBars, validate
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, WriteReport, write_bars
from signalfactory.services.platform import Platform


def _split_by_symbol(raw: RawBars, order: np.ndarray) -> list[tuple[str, np.ndarray]]:
    codes = raw.symbol_codes[order]
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1, [len(order)]))
    return [(raw.symbols[int(codes[a])], order[a:b]) for a, b in itertools.pairwise(starts)]


def prepare_files(paths: Sequence[Path], *, symbol: str | None = None,
                  timeframe: str | None = None, fmt: str | None = None,
                  progress: ProgressFn | None = None) -> tuple[Timeframe, list[SymbolBars]]:
    """Read and validate every file; nothing is written here."""
    if not paths:
        raise BadInputError("give at least one file to ingest")
    declared = Timeframe.parse(timeframe) if timeframe else None
    resolved: Timeframe | None = declared
    batches: list[SymbolBars] = []
    seen: dict[str, str] = {}
    for path in paths:
        raw = read_bar_file(Path(path), fmt=fmt, symbol=symbol, progress=progress)
        order, tf = validate(raw, declared)
        if resolved is None:
            resolved = tf
        elif tf != resolved:
            raise BadInputError(
                f"bars are of timeframe {tf.name} but an earlier file holds {resolved.name}; "
                "ingest each timeframe separately", source=raw.source, rule="mixed-timeframes")
        for sym, rows in _split_by_symbol(raw, order):
            if sym in seen:
                raise BadInputError(
                    f"symbol {sym} also appears in {seen[sym]}; give each symbol's bars in one "
                    "file per ingest", source=raw.source, rule="duplicate-timestamp")
            seen[sym] = raw.source
            batches.append(SymbolBars(
                spec=InstrumentSpec(symbol=sym), ts=raw.ts[rows], open=raw.open[rows],
                high=raw.high[rows], low=raw.low[rows], close=raw.close[rows],
                volume=raw.volume[rows]))
    if resolved is None:  # unreachable: validate() infers a timeframe when none is declared
        raise BadInputError("cannot tell the timeframe of the bars; pass --timeframe")
    return resolved, batches


def ingest_files(platform: Platform, paths: Sequence[Path], *, symbol: str | None = None,
                 timeframe: str | None = None, fmt: str | None = None,
                 progress: ProgressFn | None = None) -> WriteReport:
    tf, batches = prepare_files(paths, symbol=symbol, timeframe=timeframe, fmt=fmt,
                                progress=progress)
    return write_bars(platform, tf, batches, source=source_label(paths))


def source_label(paths: Sequence[Path]) -> str:
    """How the ingest journal names what was ingested."""
    return "files:" + ", ".join(str(p) for p in paths)
