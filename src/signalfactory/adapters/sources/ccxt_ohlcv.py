"""OHLCV candles from any exchange ccxt knows, through ccxt's own client.

Parameters: ``exchange`` (a ccxt id such as ``binance``, ``kraken``, ``okx``; required),
``page_limit`` (candles per request; default: what ccxt says the exchange serves, else 500),
``rate_limit_ms`` (override ccxt's pause between requests; ccxt's ``enableRateLimit`` stays
on either way), ``timeout_ms`` (default 10,000), ``options`` (ccxt exchange options, e.g.
``{"fetchMarkets": {"types": ["spot"]}}``), ``base_url`` (send every API call to another
origin: a mirror or a local simulator; the paths stay the exchange's own).

Paging: ``fetch_ohlcv(symbol, timeframe, since, limit)`` with the exchange's ``until``
parameter; a full page covers only up to its last candle, and the collector asks again from
there, past the exchange's page limit. ccxt orders a page by time.

Speed: ccxt turns each candle into a list through Python calls (about 8 us a candle, more
than the whole rest of a collector run). The adapter's exchange object reads a page with
numpy instead when the exchange's raw rows start with time, open, high, low, close, volume:
it checks that on the page's first and last row against ccxt's own ``parse_ohlcv`` and falls
back to ccxt's parser for any exchange or page where they differ, so what comes out is what
ccxt would return.

Concurrency: a collector fetches several symbols at once; each request borrows one of the
source's ccxt clients (one per request in flight; ccxt's sync client is not thread-safe), so
one request's wait for the exchange overlaps another's parsing. The clients share the markets
(one exchangeInfo call a run) and ccxt's request spacing: requests start no faster together
than one client would start them.

Failures (ccxt's error classes): rate limits (``DDoSProtection``, ``RateLimitExceeded``,
with the ``Retry-After`` header of the answer), ``NetworkError`` (timeouts, refused or
dropped connections, bodies cut short, 5xx ``ExchangeNotAvailable``), the rest of ccxt's
``OperationFailed`` (an exchange's "internal error, try again", a malformed answer) and an
answer that is not candles are ``SourceTemporaryError``; ``BadSymbol``, authentication and
permission errors and other exchange errors are ``SourceRefusedError``.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from signalfactory.adapters.sources.answers import page_of, retry_after_seconds
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.sources import FetchedPage, SourceRefusedError, SourceTemporaryError
from signalfactory.domain.timeframes import Timeframe

_KNOWN = {"exchange", "page_limit", "rate_limit_ms", "timeout_ms", "options", "base_url"}


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    import ccxt

    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise BadInputError(f"ccxt source: unknown parameter(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(_KNOWN))}", rule="source-params")
    exchange = params.get("exchange")
    if not isinstance(exchange, str) or exchange not in ccxt.exchanges:
        raise BadInputError(f"ccxt source needs param exchange=<id>; {exchange!r} is not one "
                            "of ccxt's exchanges (e.g. binance, kraken, okx, coinbase)",
                            rule="source-params")
    for key, low, high in (("page_limit", 1, 100_000), ("rate_limit_ms", 0, 60_000),
                           ("timeout_ms", 100, 300_000)):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not low <= value <= high):
            raise BadInputError(f"{key} must be a whole number in [{low}, {high}]",
                                rule="source-params")
    if not isinstance(params.get("options", {}), dict):
        raise BadInputError("options must be an object of ccxt exchange options",
                            rule="source-params")
    base_url = params.get("base_url")
    if base_url is not None and (not isinstance(base_url, str)
                                 or urlsplit(base_url).scheme not in ("http", "https")
                                 or not urlsplit(base_url).netloc):
        raise BadInputError("base_url must be an http(s):// origin", rule="source-params")
    return dict(params)


def _rows_as_array(rows: list[Any]) -> np.ndarray | None:
    """(n, 6) floats of the first six columns of raw candle rows, or None if they are not
    all lists of six or more numbers or numeric strings."""
    try:
        table = np.array([r[:6] for r in rows], dtype=object)
        if table.ndim != 2 or table.shape[1] != 6:
            return None
        return table.astype(np.float64)
    except (TypeError, ValueError, IndexError):
        return None


def _vectorised(base: type) -> type:
    """A subclass of the ccxt exchange class whose ``parse_ohlcvs`` reads a page with numpy
    when that gives exactly what ccxt's own parser gives for the page's first and last row."""

    class VectorisedOhlcv(base):  # type: ignore[misc]
        #: set by the source: the request spacing its clients share
        shared_pace: _SharedPace | None = None

        def throttle(self, cost: float | None = None) -> None:
            if self.shared_pace is None:
                super().throttle(cost)
                return
            self.shared_pace.wait(self.rateLimit * (1 if cost is None else cost) / 1000.0)

        def parse_ohlcvs(self, ohlcvs: object, market: object = None, timeframe: str = "1m",
                         since: int | None = None, limit: int | None = None,
                         tail: bool = False) -> list[Any]:
            if not isinstance(ohlcvs, list) or not ohlcvs:
                parsed: list[Any] = super().parse_ohlcvs(ohlcvs, market, timeframe, since,
                                                         limit, tail)
                return parsed
            table = _rows_as_array(ohlcvs)
            if table is None or not all(
                    self.parse_ohlcv(ohlcvs[i], market) == [int(table[i, 0]),
                                                            *table[i, 1:].tolist()]
                    for i in (0, len(ohlcvs) - 1)):
                slow: list[Any] = super().parse_ohlcvs(ohlcvs, market, timeframe, since, limit,
                                                       tail)
                return slow
            table = table[np.argsort(table[:, 0], kind="stable")]  # ccxt sorts by time too
            if since is not None:
                table = table[table[:, 0] >= since]
            if limit is not None:
                table = table[-limit:] if tail else table[:limit]
            return _Candles(table)

    return VectorisedOhlcv


class _SharedPace:
    """ccxt's request spacing (``rateLimit`` ms times a request's cost between starts), kept
    for all the clients of one source: several requests may be in flight at once, and they
    still start no faster than one client would start them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self, seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + seconds
        if start > now:
            time.sleep(start - now)


class _Candles(list):  # type: ignore[type-arg]
    """A page as ccxt returns it (a list of rows), also holding the (n, 6) array it came from,
    so the adapter takes the array without rebuilding it."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__(table.tolist())
        self.table = table


def _rebase(urls: object, origin: str) -> object:
    """Every URL string in ccxt's nested ``urls['api']`` with its origin replaced."""
    if isinstance(urls, dict):
        return {k: _rebase(v, origin) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        parts = urlsplit(urls)
        return origin.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    return urls


class CcxtOhlcvSource:
    """One ccxt exchange instance per source run (ccxt's throttle is per instance)."""

    continuous = True  # crypto markets trade around the clock: a hole is a gap

    def __init__(self, params: dict[str, Any]) -> None:
        import ccxt

        self.params = check_params(params)
        self._ccxt = ccxt
        config: dict[str, Any] = {"enableRateLimit": True,
                                  "timeout": int(self.params.get("timeout_ms", 10_000)),
                                  "options": dict(self.params.get("options", {}))}
        if "rate_limit_ms" in self.params:
            config["rateLimit"] = int(self.params["rate_limit_ms"])
        self._config = config
        self._pace = _SharedPace()
        self.exchange = self._new_client()
        limit = self.params.get("page_limit")
        if limit is None:
            features = (self.exchange.features or {}).get("spot") or {}
            limit = (features.get("fetchOHLCV") or {}).get("limit") or 500
        self.page_limit = int(limit)
        # ccxt's sync client is not meant for concurrent calls on one instance (its session,
        # throttle and last answer are shared): each request borrows a client of its own, so
        # one request's wait for the exchange overlaps another's parsing; the clients share
        # the markets (loaded once) and the request spacing (_SharedPace).
        self._idle = [self.exchange]
        self._clients = [self.exchange]
        self._pool_lock = threading.Lock()
        self._markets_lock = threading.Lock()
        self._markets: tuple[Any, Any] | None = None

    def _new_client(self) -> Any:  # noqa: ANN401 - a ccxt exchange instance
        client = _vectorised(getattr(self._ccxt, self.params["exchange"]))(
            copy.deepcopy(self._config))
        if "base_url" in self.params:
            client.urls["api"] = _rebase(client.urls["api"], str(self.params["base_url"]))
        client.shared_pace = self._pace
        return client

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        with self._pool_lock:
            if self._idle:
                client = self._idle.pop()
            else:
                client = self._new_client()
                self._clients.append(client)
        try:
            yield client
        finally:
            with self._pool_lock:
                self._idle.append(client)

    def _with_markets(self, client: Any) -> None:  # noqa: ANN401 - a ccxt exchange instance
        """The first request loads the markets (one exchangeInfo call a run); every other
        client gets the same ones."""
        if client.markets:
            return
        with self._markets_lock:
            if self._markets is None:
                client.load_markets()
                self._markets = (client.markets, client.currencies)
            else:
                client.set_markets(*self._markets)

    def close(self) -> None:
        for client in self._clients:
            session = getattr(client, "session", None)
            if session is not None:
                session.close()

    @staticmethod
    def _headers(client: Any) -> dict[str, str]:  # noqa: ANN401 - a ccxt exchange instance
        return dict(getattr(client, "last_response_headers", None) or {})

    def _call(self, symbol: str, timeframe: Timeframe, since_ms: int,
              until_ms: int) -> list[list[Any]]:
        with self._client() as client:
            return self._call_with(client, symbol, timeframe, since_ms, until_ms)

    def _call_with(self, client: Any, symbol: str, timeframe: Timeframe,  # noqa: ANN401
                   since_ms: int, until_ms: int) -> list[list[Any]]:
        ccxt = self._ccxt
        name = f"{self.exchange.id} {symbol}"
        try:
            self._with_markets(client)
            rows = client.fetch_ohlcv(symbol, timeframe.name, since=since_ms,
                                      limit=self.page_limit, params={"until": until_ms - 1})
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as exc:
            raise SourceTemporaryError(f"{name}: rate limited ({exc})",
                                       retry_after=retry_after_seconds(self._headers(client)),
                                       status=429) from exc
        except ccxt.NetworkError as exc:  # timeouts, 5xx, refused or cut-short answers
            raise SourceTemporaryError(f"{name}: {type(exc).__name__}: {exc}",
                                       retry_after=retry_after_seconds(self._headers(client))
                                       ) from exc
        except ccxt.OperationFailed as exc:  # BadResponse, an internal error: try again
            raise SourceTemporaryError(f"{name}: {type(exc).__name__}: {exc}",
                                       retry_after=retry_after_seconds(self._headers(client))
                                       ) from exc
        except ccxt.BaseError as exc:  # BadSymbol, AuthenticationError, ExchangeError, ...
            raise SourceRefusedError(f"{name}: {type(exc).__name__}: {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # ccxt could not read the answer as candles (a body cut short at a boundary
            # its JSON parser accepted, an HTML error page): worth another try.
            raise SourceTemporaryError(f"{name}: the answer is not candles "
                                       f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(rows, list):
            raise SourceTemporaryError(f"{name}: the answer is not a list of candles")
        return rows

    def fetch_page(self, symbol: str, timeframe: Timeframe, since_ns: int,
                   until_ns: int) -> FetchedPage:
        since_ms = since_ns // 1_000_000
        until_ms = -(-until_ns // 1_000_000)
        rows = self._call(symbol, timeframe, since_ms, until_ms)
        if isinstance(rows, _Candles):
            table = rows.table
        else:
            if rows and not all(isinstance(r, list) and len(r) >= 6 for r in rows):
                raise SourceTemporaryError(f"{self.exchange.id} {symbol}: the answer is not "
                                           "[time, open, high, low, close, volume] rows")
            try:
                table = np.array([r[:6] for r in rows], dtype=np.float64).reshape(-1, 6)
            except (TypeError, ValueError) as exc:
                raise SourceTemporaryError(f"{self.exchange.id} {symbol}: a candle holds a "
                                           f"value that is no number ({exc})") from exc
        # A missing price stays NaN and fails validation (missing-value) in the collector.
        ts = table[:, 0].astype(np.int64) * 1_000_000
        return page_of(symbol, ts, table[:, 1:], since_ns, until_ns,
                       full=len(rows) >= self.page_limit, step_ns=timeframe.nanoseconds)
