"""Bars as CSV or JSON over HTTP (httpx), with a column mapping: any vendor or in-house
service that answers a URL per symbol.

Parameters (``sources add --kind http --param ...``):

- ``url`` (required): a template with ``{symbol}`` and optionally ``{timeframe}``,
  ``{since_ms}``/``{since_s}``/``{since_iso}`` and ``{until_ms}``/``{until_s}``/``{until_iso}``.
  With a ``{since...}`` placeholder the collector pages: an answer of ``page_limit`` rows or
  more covers only up to its last bar and the next request starts after it.
- ``format``: ``csv`` or ``json`` (default: from the answer's Content-Type, else the URL).
- ``records``: for JSON, the dotted path to the rows (``data.bars``); rows are objects, or
  the value is an object of equal-length arrays.
- ``columns``: our field -> the answer's column, e.g. ``{"ts": "t", "open": "o"}``; fields not
  named are found by the usual names (date/time/timestamp, open, high, low, close, volume).
- ``time_unit``: ``auto`` (epoch by magnitude, or ISO 8601 text), ``s``, ``ms``, ``us``, ``ns``.
- ``page_limit`` (default 1000), ``timeout_seconds`` (default 10), ``headers`` (not secret).

What happens on failure: a timeout, a dropped connection, a body shorter than its
Content-Length or one that does not parse, a 429 (with its ``Retry-After``) or a 5xx raise
``SourceTemporaryError`` (retried by the collector); any other 4xx raises
``SourceRefusedError``. Rows with bad values fail validation in the collector, which then
stores nothing of the batch.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from signalfactory.adapters.sources.answers import classify_status, empty_page
from signalfactory.adapters.sources.files import table_to_raw_bars
from signalfactory.domain.bars import BarSeries
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.sources import FetchedPage, SourceTemporaryError
from signalfactory.domain.timeframes import Timeframe

_FIELDS = ("ts", "open", "high", "low", "close", "volume")
_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_PLACEHOLDERS = ("symbol", "timeframe", "since_ms", "since_s", "since_iso", "until_ms",
                 "until_s", "until_iso")


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with defaults, or BadInputError saying what to fix."""
    known = {"url", "format", "records", "columns", "time_unit", "page_limit",
             "timeout_seconds", "headers"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadInputError(f"http source: unknown parameter(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}", rule="source-params")
    url = params.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        raise BadInputError("http source needs param url=http(s)://... with {symbol}",
                            rule="source-params")
    names = set(re.findall(r"{(\w+)}", url))
    if "symbol" not in names or names - set(_PLACEHOLDERS):
        raise BadInputError(f"url must contain {{symbol}} and only the placeholders "
                            f"{', '.join('{' + p + '}' for p in _PLACEHOLDERS)}",
                            rule="source-params")
    fmt = params.get("format")
    if fmt not in (None, "csv", "json"):
        raise BadInputError("format must be csv or json", rule="source-params")
    columns = params.get("columns", {})
    if not isinstance(columns, dict) or set(columns) - set(_FIELDS) or not all(
            isinstance(v, str) and v for v in columns.values()):
        raise BadInputError(f"columns maps our fields ({', '.join(_FIELDS)}) to column names",
                            rule="source-params")
    if params.get("time_unit", "auto") not in ("auto", *_UNITS):
        raise BadInputError("time_unit must be auto, s, ms, us or ns", rule="source-params")
    for key, low, high in (("page_limit", 1, 1_000_000), ("timeout_seconds", 0.1, 300)):
        value = params.get(key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or not low <= value <= high):
            raise BadInputError(f"{key} must be a number in [{low}, {high}]",
                                rule="source-params")
    headers = params.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise BadInputError("headers must map names to strings", rule="source-params")
    return {"format": None, "records": None, "columns": {}, "time_unit": "auto",
            "page_limit": 1000, "timeout_seconds": 10.0, "headers": {}, **params}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dig(body: object, path: str | None) -> object:
    for part in (path.split(".") if path else []):
        if not isinstance(body, dict) or part not in body:
            raise SourceTemporaryError(f"the JSON answer has no {path!r}")
        body = body[part]
    return body


class HttpSource:
    """One symbol per request, CSV or JSON, through one pooled httpx client."""

    continuous = False  # a generic feed may have sessions; holes are not assumed to be gaps

    def __init__(self, params: dict[str, Any], *, client: httpx.Client | None = None) -> None:
        self.params = check_params(params)
        self.paged = any("{" + p + "}" in self.params["url"]
                         for p in _PLACEHOLDERS if p.startswith("since"))
        self.client = client or httpx.Client(timeout=float(self.params["timeout_seconds"]),
                                             headers=self.params["headers"])

    def close(self) -> None:
        self.client.close()

    def _url(self, symbol: str, timeframe: Timeframe, since_ns: int, until_ns: int) -> str:
        values = {"symbol": symbol, "timeframe": timeframe.name,
                  "since_ms": since_ns // 1_000_000, "since_s": since_ns // 1_000_000_000,
                  "since_iso": _iso(since_ns), "until_ms": until_ns // 1_000_000,
                  "until_s": until_ns // 1_000_000_000, "until_iso": _iso(until_ns)}
        return str(self.params["url"]).format(**values)

    def _get(self, url: str) -> httpx.Response:
        try:
            response = self.client.get(url)
        except httpx.TimeoutException as exc:
            raise SourceTemporaryError(f"{url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            # RemoteProtocolError: the body ended before its Content-Length or final chunk
            raise SourceTemporaryError(f"{url}: connection failed or the answer was cut "
                                       f"short ({type(exc).__name__}: {exc})") from exc
        classify_status(response.status_code, url, response.headers)
        return response

    def _table(self, response: httpx.Response, url: str) -> pa.Table:
        fmt = self.params["format"]
        if fmt is None:
            kind = response.headers.get("content-type", "")
            fmt = "json" if "json" in kind or url.split("?")[0].endswith(".json") else "csv"
        if fmt == "csv":
            if not response.content.strip():
                return pa.table({})
            try:
                return pacsv.read_csv(io.BytesIO(response.content),
                                      convert_options=pacsv.ConvertOptions(
                                          column_types={}, strings_can_be_null=True))
            except pa.ArrowInvalid as exc:
                raise SourceTemporaryError(f"{url}: the CSV answer does not parse (cut short?)"
                                           f": {exc}") from exc
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise SourceTemporaryError(f"{url}: the JSON answer does not parse (cut short?)"
                                       f": {exc}") from exc
        rows = _dig(body, self.params["records"])
        try:
            if isinstance(rows, list):
                return pa.Table.from_pylist(rows) if rows else pa.table({})
            if isinstance(rows, dict):
                return pa.table(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise SourceTemporaryError(f"{url}: the JSON rows are not a table: {exc}") from exc
        raise SourceTemporaryError(f"{url}: the JSON answer holds no rows at "
                                   f"{self.params['records'] or 'its top level'}")

    def _mapped(self, table: pa.Table) -> pa.Table:
        columns: dict[str, str] = self.params["columns"]
        renamed = {theirs: ours for ours, theirs in columns.items()}
        missing = [theirs for theirs in renamed if theirs not in table.column_names]
        if missing:
            raise BadInputError(f"the answer has no column(s) {', '.join(missing)} named in "
                                f"the source's columns mapping; it has "
                                f"{', '.join(table.column_names)}", rule="missing-column")
        table = table.rename_columns([renamed.get(c, c) for c in table.column_names])
        unit = self.params["time_unit"]
        if unit != "auto" and "ts" in table.column_names:
            seconds = np.asarray(table.column("ts").to_numpy(zero_copy_only=False))
            ns = (seconds.astype(np.float64) * _UNITS[unit]).astype(np.int64)
            table = table.set_column(table.column_names.index("ts"), "ts",
                                     pa.array(ns, type=pa.timestamp("ns")))
        return table

    def fetch_page(self, symbol: str, timeframe: Timeframe, since_ns: int,
                   until_ns: int) -> FetchedPage:
        url = self._url(symbol, timeframe, since_ns, until_ns)
        table = self._table(self._get(url), url)
        if table.num_rows == 0:
            return empty_page(symbol, until_ns)
        raw = table_to_raw_bars(self._mapped(table), f"{url}", symbol=symbol, row_offset=1,
                                default_symbol=symbol)
        # Validation (order, values) happens in the collector on the whole window; here only
        # the requested window is kept, in the answer's order.
        keep = (raw.ts >= since_ns) & (raw.ts < until_ns)
        full = self.paged and len(raw) >= int(self.params["page_limit"])
        bars = BarSeries(symbol, raw.ts[keep], raw.open[keep], raw.high[keep], raw.low[keep],
                         raw.close[keep], raw.volume[keep])
        covered = int(raw.ts.max()) + timeframe.nanoseconds if full else until_ns
        return FetchedPage(bars, covered)
