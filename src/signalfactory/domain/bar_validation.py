"""Validation of incoming bars, before anything is written.

Every rule has a stable id that appears in the error message, so an operator can grep for it
and a test can assert on it. The first failing row (1-based, counting the header as row 1 the
way a spreadsheet shows it) is named; the message says how many rows break the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.symbols import check_symbol, symbol_problem
from signalfactory.domain.timeframes import NS_PER_SECOND, Timeframe, infer_timeframe

RULES: dict[str, str] = {
    "missing-column": "a required column is absent",
    "empty-file": "the file has no data rows",
    "bad-number": "a price or volume cell is not a number",
    "bad-timestamp": "a timestamp cell cannot be parsed as a date or time",
    "missing-value": "a cell is empty or NaN",
    "non-positive-price": "open, high, low and close must be > 0",
    "high-below-low": "high must be >= low",
    "open-outside-range": "open must lie within [low, high]",
    "close-outside-range": "close must lie within [low, high]",
    "negative-volume": "volume must be >= 0",
    "duplicate-timestamp": "each symbol has at most one bar per timestamp",
    "unsorted-timestamps": "timestamps must increase down the file",
    "mixed-timeframes": "all bars must be of one timeframe",
    "bad-symbol": "a symbol is not 1..64 plain ASCII characters, or looks like a path",
    "bad-encoding": "the file is not UTF-8 text (another encoding, binary or compressed)",
    "malformed-csv": "a row does not have one cell per header column",
    "unsupported-column-type": "a Parquet column holds lists or records, not single values",
}

# Daily and longer bars stamped at local midnight move by an hour across DST changes.
_DST_TOLERANCE_NS = 3600 * NS_PER_SECOND
_HEADER_ROWS = 1


@dataclass(frozen=True)
class RawBars:
    """Parsed but unchecked columns of one source file (rows in file order)."""

    source: str
    ts: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    symbol_codes: npt.NDArray[np.int64]
    symbols: tuple[str, ...]
    row_offset: int = _HEADER_ROWS

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def _fail(raw: RawBars, mask: npt.NDArray[np.bool_], rule: str, describe: str,
          show: tuple[str, ...] = ()) -> None:
    bad = np.flatnonzero(mask)
    if bad.size == 0:
        return
    first = int(bad[0])
    values = ", ".join(f"{name}={getattr(raw, name)[first]:g}" for name in show)
    shown = f" ({values})" if values else ""
    more = f"; {bad.size - 1} more rows break this rule" if bad.size > 1 else ""
    raise BadInputError(describe + shown + more, source=raw.source,
                        row=first + 1 + raw.row_offset, rule=rule)


def validate_values(raw: RawBars) -> None:
    """Check each row on its own: presence, positivity and the OHLC relations."""
    if len(raw) == 0:
        raise BadInputError("the file has no data rows; nothing to ingest",
                            source=raw.source, rule="empty-file")
    for name in ("open", "high", "low", "close", "volume"):
        col = getattr(raw, name)
        _fail(raw, ~np.isfinite(col), "missing-value",
              f"{name} is empty, NaN or infinite; every bar needs a finite {name}")
    o, h, lo, c, v = raw.open, raw.high, raw.low, raw.close, raw.volume
    for name, col in (("open", o), ("high", h), ("low", lo), ("close", c)):
        _fail(raw, col <= 0, "non-positive-price", f"{name} must be greater than zero",
              (name,))
    _fail(raw, h < lo, "high-below-low", "high is below low; swap or correct them",
          ("high", "low"))
    _fail(raw, (o < lo) | (o > h), "open-outside-range", "open lies outside [low, high]",
          ("open", "low", "high"))
    _fail(raw, (c < lo) | (c > h), "close-outside-range", "close lies outside [low, high]",
          ("close", "low", "high"))
    _fail(raw, v < 0, "negative-volume", "volume is negative", ("volume",))


def _rows_in_file_order(raw: RawBars) -> npt.NDArray[np.int64]:
    """Row indices grouped by symbol, each group keeping file order (a stable sort)."""
    codes = raw.symbol_codes
    if codes.size < 2 or bool(np.all(codes[1:] >= codes[:-1])):
        return np.arange(codes.size, dtype=np.int64)  # already grouped: the common case
    return np.argsort(codes, kind="stable").astype(np.int64)


def validate_order(raw: RawBars) -> npt.NDArray[np.int64]:
    """Check per-symbol time order; return the row order grouped by symbol, then time."""
    order = _rows_in_file_order(raw)
    codes = raw.symbol_codes[order]
    ts = raw.ts[order]
    same = codes[1:] == codes[:-1]
    step = np.diff(ts)
    dup = same & (step == 0)
    if dup.any():
        i = int(order[1:][dup][0])
        raise BadInputError(
            f"timestamp repeats the previous bar of {raw.symbols[raw.symbol_codes[i]]}; "
            "remove the duplicate row", source=raw.source, row=i + 1 + raw.row_offset,
            rule="duplicate-timestamp")
    back = same & (step < 0)
    if back.any():
        i = int(order[1:][back][0])
        raise BadInputError(
            "timestamp is earlier than the row before it; sort the file by time",
            source=raw.source, row=i + 1 + raw.row_offset, rule="unsorted-timestamps")
    return order


def resolve_timeframe(raw: RawBars, order: npt.NDArray[np.int64],
                      declared: Timeframe | None) -> Timeframe:
    """The declared timeframe, checked against the bar spacing, or the one inferred from it."""
    codes = raw.symbol_codes[order]
    ts = raw.ts[order]
    same = codes[1:] == codes[:-1]
    steps = np.diff(ts)[same]
    if declared is None:
        if steps.size == 0:
            raise BadInputError(
                "cannot infer the timeframe from a single bar; pass --timeframe",
                source=raw.source, rule="mixed-timeframes")
        # The median spacing is the bar length: gaps (nights, weekends) are the minority, and
        # a median needs no sort of millions of steps.
        typical = int(np.median(steps)) // NS_PER_SECOND
        inferred = infer_timeframe(typical)
        if inferred is None:
            # No standard median: fall back to the most common spacing, to name a row.
            values, counts = np.unique(steps, return_counts=True)
            typical = int(values[np.argmax(counts)]) // NS_PER_SECOND
            inferred = infer_timeframe(typical)
        if inferred is None and 82800 <= typical <= 90000:
            inferred = Timeframe.parse("1d")
        if inferred is None:
            positions = np.flatnonzero(same)[steps == typical * NS_PER_SECOND]
            i = int(order[1:][positions[0]])
            raise BadInputError(
                f"this bar is {typical} s after the previous one, which is no standard "
                "timeframe, and the file holds no dominant bar spacing; make all bars one "
                "timeframe or pass --timeframe", source=raw.source,
                row=i + 1 + raw.row_offset, rule="mixed-timeframes")
        declared = inferred
    tf_ns = declared.nanoseconds
    tolerance = _DST_TOLERANCE_NS if declared.seconds >= 86400 else 0
    too_close = steps < tf_ns - tolerance
    if declared.seconds < 86400:
        too_close |= (steps % tf_ns) != 0
    if too_close.any():
        positions = np.flatnonzero(same)[too_close]
        i = int(order[1:][positions[0]])
        gap = int(steps[too_close][0]) // NS_PER_SECOND
        raise BadInputError(
            f"this bar is {gap} s after the previous one, which does not fit timeframe "
            f"{declared.name}; a file must hold bars of one timeframe",
            source=raw.source, row=i + 1 + raw.row_offset, rule="mixed-timeframes")
    return declared


def validate_symbols(raw: RawBars) -> None:
    """Every symbol follows the symbol rule (``domain.symbols``); the first row of the first
    bad one is named (a file's symbols are checked in the order they first appear)."""
    bad = [code for code, sym in enumerate(raw.symbols) if symbol_problem(sym) is not None]
    if not bad:
        return
    first_rows = [int(np.flatnonzero(raw.symbol_codes == code)[:1].sum()) for code in bad]
    row, code = min(zip(first_rows, bad, strict=True))
    in_rows = bool(np.any(raw.symbol_codes == code))
    check_symbol(raw.symbols[code], source=raw.source,
                 row=row + 1 + raw.row_offset if in_rows else None)


def validate(raw: RawBars, declared: Timeframe | None) -> tuple[npt.NDArray[np.int64], Timeframe]:
    """Run every rule; return (row order by symbol then time, timeframe) or raise."""
    validate_symbols(raw)
    validate_values(raw)
    order = validate_order(raw)
    return order, resolve_timeframe(raw, order, declared)
