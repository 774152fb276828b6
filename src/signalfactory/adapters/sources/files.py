"""Reading CSV and Parquet bar files into unchecked columns (validation happens in the core).

Column names follow the common conventions in any case: date / datetime / timestamp / time,
open, high, low, close, volume, optionally adj close and symbol / ticker. Naive timestamps
are taken as UTC; ones with an offset are converted to UTC; integer epochs are read in
seconds, milliseconds, microseconds or nanoseconds by magnitude.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from signalfactory.adapters.sources.file_checks import (
    check_csv_text,
    check_flat_columns,
    column_list,
    first_bad_utf8,
)
from signalfactory.domain.bar_validation import RawBars
from signalfactory.domain.errors import BadInputError, excerpt

_TIME_NAMES = ("timestamp", "datetime", "date", "time", "open_time", "opentime", "ts")
_SYMBOL_NAMES = ("symbol", "ticker", "instrument")
_PRICE_NAMES = ("open", "high", "low", "close", "volume")
_ADJ_NAMES = ("adj_close", "adjclose", "adjusted_close")
FORMATS = ("csv", "parquet")
_MAX_TIMESTAMP_CHARS = 64

ProgressFn = Callable[[int], None]


def _norm(name: str) -> str:
    return re.sub(r"[\s\-\.]+", "_", name.strip().lower())


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise BadInputError(f"format {fmt!r} is not supported; use csv or parquet",
                                source=str(path))
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes or ".txt" in suffixes:
        return "csv"
    raise BadInputError("cannot tell the format from the file name; pass --format csv or "
                        "--format parquet", source=str(path))


def _map_columns(names: list[str], source: str) -> dict[str, str]:
    """Our field -> the file's column name."""
    by_norm = {_norm(n): n for n in names}
    mapping: dict[str, str] = {}
    for candidate in _TIME_NAMES:
        if candidate in by_norm:
            mapping["ts"] = by_norm[candidate]
            break
    for field in _PRICE_NAMES:
        if field in by_norm:
            mapping[field] = by_norm[field]
    for candidate in _SYMBOL_NAMES:
        if candidate in by_norm:
            mapping["symbol"] = by_norm[candidate]
            break
    for candidate in _ADJ_NAMES:
        if candidate in by_norm:
            mapping["adj_close"] = by_norm[candidate]
            break
    missing = [f for f in ("ts", *_PRICE_NAMES) if f not in mapping]
    if missing:
        wanted = ", ".join("date/datetime/timestamp" if f == "ts" else f for f in missing)
        raise BadInputError(
            f"missing column(s): {wanted}; the file has {column_list(names)}",
            source=source, row=1, rule="missing-column")
    return mapping


def _epoch_to_ns(values: np.ndarray) -> np.ndarray:
    mag = np.abs(values[values != 0]).min() if np.any(values != 0) else 0
    scale = 1_000_000_000 if mag < 1e11 else 1_000_000 if mag < 1e14 else (
        1_000 if mag < 1e17 else 1)
    return values.astype(np.int64) * scale


def _parse_times(col: pa.ChunkedArray, source: str, row_offset: int) -> np.ndarray:
    """UTC int64 nanoseconds from a column of strings, datetimes or epoch numbers."""
    if pa.types.is_timestamp(col.type):
        ts_col = col if col.type.tz is None else pc.cast(col, pa.timestamp("ns", tz="UTC"))
        ts_col = pc.cast(ts_col, pa.timestamp("ns", tz=ts_col.type.tz))
        return _require_no_nulls(ts_col, source, row_offset).astype("int64")
    if pa.types.is_date(col.type):
        return _require_no_nulls(pc.cast(pc.cast(col, pa.timestamp("s")),
                                         pa.timestamp("ns")), source, row_offset).astype("int64")
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values = _require_no_nulls(col, source, row_offset)
        return _epoch_to_ns(values)
    strings = pc.utf8_trim_whitespace(col.cast(pa.string()))
    _require_no_nulls(strings, source, row_offset, allow_strings=True)
    if pc.all(pc.match_substring_regex(strings, r"^\d{9,19}$")).as_py():
        return _epoch_to_ns(pc.cast(strings, pa.int64()).to_numpy())
    for target in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):
        try:
            return np.asarray(pc.cast(strings, target).to_numpy().astype("datetime64[ns]"),
                              dtype=np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    values = strings.to_pandas()
    # No date is longer than this; the free-form parser takes seconds on a megabyte cell.
    too_long = pc.greater(pc.utf8_length(strings), _MAX_TIMESTAMP_CHARS)
    parsed = pd.to_datetime(values.where(~too_long.to_numpy(zero_copy_only=False), None),
                            utc=True, errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise BadInputError(
            f"timestamp {excerpt(str(values.iloc[i]))} cannot be parsed; use ISO 8601 such as "
            "2024-01-31 or 2024-01-31T09:30:00Z, or epoch seconds", source=source,
            row=i + 1 + row_offset, rule="bad-timestamp")
    return np.asarray(parsed.to_numpy(dtype="datetime64[ns]")).astype(np.int64)


def _require_no_nulls(col: pa.ChunkedArray | pa.Array, source: str, row_offset: int,
                      allow_strings: bool = False) -> np.ndarray:
    nulls = pc.is_null(col, nan_is_null=not allow_strings)
    if allow_strings:
        nulls = pc.or_(nulls, pc.equal(col, ""))
    if pc.any(nulls).as_py():
        i = int(np.flatnonzero(nulls.to_numpy(zero_copy_only=False))[0])
        raise BadInputError("timestamp is empty; every bar needs a timestamp", source=source,
                            row=i + 1 + row_offset, rule="missing-value")
    if allow_strings:
        return np.empty(0)
    return np.asarray(col.to_numpy() if isinstance(col, pa.ChunkedArray)
                      else col.to_numpy(zero_copy_only=False))


def _numbers(table: pa.Table, column: str, field: str, source: str,
             row_offset: int) -> np.ndarray:
    col = table.column(column)
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        return np.asarray(pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(),
                          dtype=np.float64)
    strings = pc.utf8_trim_whitespace(col.cast(pa.string()))
    values = pd.to_numeric(strings.to_pandas().replace("", None), errors="coerce")
    arr = np.asarray(values.to_numpy(dtype=np.float64), dtype=np.float64)
    bad = np.flatnonzero(np.isnan(arr) & ~pc.is_null(strings).to_numpy(zero_copy_only=False)
                         & (strings.to_pandas().fillna("").str.len().to_numpy() > 0)
                         & ~strings.to_pandas().fillna("").str.lower().isin(
                             ["nan", "na", "n/a", "null", "none"]).to_numpy())
    if bad.size:
        i = int(bad[0])
        raise BadInputError(
            f"{field} value {excerpt(str(strings[i].as_py()))} is not a number", source=source,
            row=i + 1 + row_offset, rule="bad-number")
    return arr


def _read_csv(path: Path, progress: ProgressFn | None) -> pa.Table:
    source = str(path)
    header_line = check_csv_text(path, source)
    names = [n.strip().strip('"') for n in header_line.rstrip("\r\n").split(",")]
    mapping = _map_columns(names, source) if header_line.strip() else _map_columns([], source)
    column_types = {mapping[f]: pa.float64() for f in _PRICE_NAMES}
    column_types[mapping["ts"]] = pa.string()
    if "symbol" in mapping:
        column_types[mapping["symbol"]] = pa.string()
    read_opts = pacsv.ReadOptions(block_size=16 << 20)
    convert = pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=False,
                                   null_values=["", "NaN", "nan", "NA", "N/A", "null", "None"])
    try:
        reader = pacsv.open_csv(path, read_options=read_opts, convert_options=convert)
        batches = []
        for batch in reader:
            batches.append(batch)
            if progress is not None:
                progress(batch.num_rows)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except pa.ArrowInvalid:
        pass
    # The typed read failed on some cell; read everything as text to name the culprit.
    try:
        return pacsv.read_csv(path, read_options=read_opts, convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=True,
            null_values=[""]))
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc):
            first_bad_utf8(path, source, names)
        # The reader's own words (a row with too many cells...), with the row's text cut
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"the file cannot be read as CSV: {excerpt(reason, 120)}; every "
                            "row needs one cell per header column, separated by commas",
                            source=source, rule="malformed-csv") from None


def read_bar_file(path: Path, *, fmt: str | None = None, symbol: str | None = None,
                  progress: ProgressFn | None = None) -> RawBars:
    """Columns of one file, ready for validation; raises BadInputError naming file and row."""
    source = str(path)
    if not path.exists():
        raise BadInputError("file does not exist", source=source)
    kind = detect_format(path, fmt)
    if kind == "csv":
        table = _read_csv(path, progress)
    else:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BadInputError(f"not a readable Parquet file: {excerpt(str(exc), 120)}",
                                source=source) from exc
        if progress is not None:
            progress(table.num_rows)
    return table_to_raw_bars(table, source, symbol=symbol, row_offset=1 if kind == "csv" else 0,
                             default_symbol=path.name.split(".")[0].upper())


def table_to_raw_bars(table: pa.Table, source: str, *, symbol: str | None, row_offset: int,
                      default_symbol: str) -> RawBars:
    """Columns of a parsed table (a file, an HTTP body), ready for validation: times to UTC
    nanoseconds, prices to floats; BadInputError naming the source and row otherwise."""
    mapping = _map_columns(table.column_names, source)
    check_flat_columns(table, mapping, source)
    if table.num_rows == 0:
        raise BadInputError("the file has no data rows; nothing to ingest", source=source,
                            rule="empty-file")
    ts = _parse_times(table.column(mapping["ts"]), source, row_offset)
    cols = {f: _numbers(table, mapping[f], f, source, row_offset) for f in _PRICE_NAMES}
    if symbol is not None:
        symbols: tuple[str, ...] = (symbol,)
        codes = np.zeros(table.num_rows, dtype=np.int64)
    elif "symbol" in mapping:
        try:
            sym_col = pc.utf8_trim_whitespace(table.column(mapping["symbol"]).cast(pa.string()))
        except pa.ArrowInvalid:  # binary cells of Parquet that are not UTF-8 text
            raise BadInputError("column symbol holds bytes that are not UTF-8 text; write "
                                "symbols as UTF-8 strings", source=source,
                                rule="bad-encoding") from None
        encoded = pc.fill_null(sym_col, "").combine_chunks().dictionary_encode()
        symbols = tuple(encoded.dictionary.to_pylist())
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        symbols = (default_symbol,)
        codes = np.zeros(table.num_rows, dtype=np.int64)
    return RawBars(source=source, ts=ts, symbol_codes=codes, symbols=symbols,
                   row_offset=row_offset, **cols)
