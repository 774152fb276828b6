"""Daily and intraday bars from Yahoo Finance through the ``yfinance`` library.

Parameters: ``prepost`` (include pre- and post-market bars, default false),
``timeout_seconds`` (default 10). Prices are as traded (``auto_adjust=False``): adjusting for
splits and dividends is an analysis choice, not something to bake into stored bars.

Yahoo answers a bounded span per request for intraday bars (1m: 8 days, up to 30m: 60 days,
1h: 730 days), so one page is one such span and the collector pages span by span. Daily bars
are stamped at local midnight of the exchange, as yfinance returns them. Markets with
sessions have nights and weekends without bars: the source is not ``continuous`` and holes
are never taken for gaps.

Failures: yfinance hides the HTTP status of its answers, so the adapter hands it a session
that remembers the last status and headers of this thread's requests: 429 and 5xx become
``SourceTemporaryError`` with the ``Retry-After`` they named; 404 (unknown symbol) becomes
``SourceRefusedError``; an answer that does not parse (cut short) is temporary too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signalfactory.adapters.sources.answers import classify_status, empty_page, page_of
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.sources import FetchedPage, SourceRefusedError, SourceTemporaryError
from signalfactory.domain.timeframes import Timeframe

_INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1h", "1d": "1d",
              "1w": "1wk"}
_DAY_NS = 86_400 * 1_000_000_000
#: the longest span Yahoo serves in one intraday answer
_MAX_SPAN_NS = {"1m": 8 * _DAY_NS, "5m": 60 * _DAY_NS, "15m": 60 * _DAY_NS,
                "30m": 60 * _DAY_NS, "1h": 730 * _DAY_NS}
_CACHE_LOCK = threading.Lock()
_CACHE_DIRS: set[Path] = set()


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - {"prepost", "timeout_seconds"})
    if unknown:
        raise BadInputError(f"yfinance source: unknown parameter(s) {', '.join(unknown)}; "
                            "known: prepost, timeout_seconds", rule="source-params")
    if not isinstance(params.get("prepost", False), bool):
        raise BadInputError("prepost must be true or false", rule="source-params")
    timeout = params.get("timeout_seconds", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0.1 <= timeout <= 300):
        raise BadInputError("timeout_seconds must be a number in [0.1, 300]",
                            rule="source-params")
    return {"prepost": False, "timeout_seconds": 10, **params}


def check_timeframe(timeframe: Timeframe) -> None:
    if timeframe.name not in _INTERVALS:
        raise BadInputError(f"yfinance serves {', '.join(_INTERVALS)} bars, not "
                            f"{timeframe.name}", rule="source-timeframe")


def _recording_session() -> Any:  # noqa: ANN401 - curl_cffi's Session, imported lazily
    """A curl_cffi session (yfinance's own kind, browser-like TLS) that remembers the status
    and headers of the last answer per thread."""
    from curl_cffi import requests as curl_requests

    class RecordingSession(curl_requests.Session[Any]):
        seen = threading.local()

        def request(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - wraps curl_cffi
            response = super().request(*args, **kwargs)
            self.seen.last = (int(response.status_code), dict(response.headers),
                              str(response.url))
            return response

    return RecordingSession(impersonate="chrome")


class YFinanceSource:
    """Bars of Yahoo Finance symbols (AAPL, 005930.KS, BTC-USD, ^GSPC)."""

    continuous = False

    def __init__(self, params: dict[str, Any], *, cache_dir: Path | None = None) -> None:
        import yfinance

        self.params = check_params(params)
        self._yf = yfinance
        # yfinance raises instead of logging and returning an empty frame
        yfinance.config.debug.hide_exceptions = False
        if cache_dir is not None:
            with _CACHE_LOCK:
                if cache_dir not in _CACHE_DIRS:  # its time-zone cache is one per process
                    cache_dir.mkdir(parents=True, exist_ok=True)
                    yfinance.set_tz_cache_location(str(cache_dir))
                    _CACHE_DIRS.add(cache_dir)
        self.session = _recording_session()

    def close(self) -> None:
        self.session.close()

    def _last_answer(self) -> tuple[int, Mapping[str, str], str] | None:
        found: tuple[int, Mapping[str, str], str] | None = getattr(
            self.session.seen, "last", None)
        return found

    def _history(self, symbol: str, interval: str, start: datetime,
                 end: datetime) -> pd.DataFrame | None:
        from yfinance.exceptions import (
            YFPricesMissingError,
            YFRateLimitError,
            YFTzMissingError,
        )

        self.session.seen.last = None
        # yfinance keeps answers of past ranges in an in-process cache, failed ones too: a
        # retry after a 5xx would get the cached failure back instead of asking again.
        self._yf.base.YfData().cache_get.cache_clear()
        ticker = self._yf.Ticker(symbol, session=self.session)
        try:
            return ticker.history(start=start, end=end, interval=interval, auto_adjust=False,
                                  actions=False, repair=False, prepost=self.params["prepost"],
                                  timeout=self.params["timeout_seconds"])
        except YFRateLimitError as exc:
            self._raise_for_answer(symbol)
            raise SourceTemporaryError(f"Yahoo rate-limited the request for {symbol}",
                                       status=429) from exc
        except (YFPricesMissingError, YFTzMissingError) as exc:
            self._raise_for_answer(symbol)
            if isinstance(exc, YFPricesMissingError) and not getattr(exc, "yahoo_reason", None):
                return None  # a span without bars (a holiday, a weekend)
            raise SourceRefusedError(f"Yahoo has no data for {symbol}: {exc}") from exc
        except json.JSONDecodeError as exc:
            self._raise_for_answer(symbol)
            raise SourceTemporaryError(f"Yahoo's answer for {symbol} does not parse (cut "
                                       f"short?): {exc}") from exc
        except OSError as exc:  # curl_cffi's connection errors and timeouts are OSErrors
            raise SourceTemporaryError(f"Yahoo unreachable for {symbol}: "
                                       f"{type(exc).__name__}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            self._raise_for_answer(symbol)
            raise SourceTemporaryError(f"Yahoo's answer for {symbol} is malformed: "
                                       f"{type(exc).__name__}: {exc}") from exc

    def _raise_for_answer(self, symbol: str) -> None:
        last = self._last_answer()
        if last is not None:
            status, headers, _url = last
            classify_status(status, f"Yahoo ({symbol})", headers)

    def fetch_page(self, symbol: str, timeframe: Timeframe, since_ns: int,
                   until_ns: int) -> FetchedPage:
        check_timeframe(timeframe)
        span = _MAX_SPAN_NS.get(timeframe.name)
        end_ns = until_ns if span is None else min(until_ns, since_ns + span)
        start = datetime.fromtimestamp(since_ns / 1e9, UTC)
        end = datetime.fromtimestamp(end_ns / 1e9, UTC)
        frame = self._history(symbol, _INTERVALS[timeframe.name], start, end)
        if frame is None or len(frame) == 0:
            self._raise_for_answer(symbol)
            return empty_page(symbol, end_ns)
        index = frame.index
        if index.tz is None:
            index = index.tz_localize("UTC")
        ts = np.asarray(index.tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)
        values = frame[["Open", "High", "Low", "Close", "Volume"]].to_numpy(dtype=np.float64)
        page = page_of(symbol, ts, values, since_ns, end_ns, full=False,
                       step_ns=timeframe.nanoseconds)
        return FetchedPage(page.bars, end_ns)
