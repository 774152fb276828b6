"""What every network source shares: reading ``Retry-After``, classifying an HTTP status,
and turning fetched rows into a checked page of bars."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.sources import FetchedPage, SourceRefusedError, SourceTemporaryError

#: the longest wait a ``Retry-After`` may ask for before the attempt counts as failed anyway
MAX_RETRY_AFTER_SECONDS = 300.0


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def classify_status(status: int, what: str, headers: Mapping[str, str] | None) -> None:
    """Raise the error class of a non-2xx status: 429 and 5xx can pass with time (with the
    ``Retry-After`` they name), any other 4xx needs a person."""
    if status < 400:
        return
    if status == 429 or status >= 500 or status == 408:
        raise SourceTemporaryError(f"{what} answered HTTP {status}",
                                   retry_after=retry_after_seconds(headers), status=status)
    raise SourceRefusedError(f"{what} refused the request with HTTP {status}; check the "
                             "source's URL, symbols and parameters")


def empty_page(symbol: str, until_ns: int) -> FetchedPage:
    none_i = np.zeros(0, dtype=np.int64)
    none_f = np.zeros(0, dtype=np.float64)
    return FetchedPage(BarSeries(symbol, none_i, none_f, none_f, none_f, none_f, none_f),
                       until_ns)


def page_of(symbol: str, ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
            since_ns: int, until_ns: int, *, full: bool, step_ns: int) -> FetchedPage:
    """A page from ``ts`` and an (n, 5) array of open, high, low, close, volume, cut to
    ``[since_ns, until_ns)``. ``full``: the source returned as many rows as it may in one
    answer, so it covers only up to its last bar."""
    keep = (ts >= since_ns) & (ts < until_ns)
    ts, values = ts[keep], values[keep]
    covered = int(ts.max()) + step_ns if full and ts.size else until_ns
    bars = BarSeries(symbol, np.ascontiguousarray(ts), *(np.ascontiguousarray(values[:, i])
                                                         for i in range(5)))
    return FetchedPage(bars, covered)
