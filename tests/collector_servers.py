"""Local HTTP servers the collector tests fetch from, each with armed faults.

- :class:`BarServer`: bars as CSV or JSON per symbol (``/bars/SYMBOL.csv?since_ms=&until_ms=``),
  like an in-house data service;
- :class:`RecordedYahoo`: Yahoo's chart API (``/v8/finance/chart/SYMBOL``) answering from
  recorded responses in ``tests/fixtures/yahoo``, sliced by ``period1``/``period2`` as Yahoo
  does;
- :class:`CuttingProxy`: forwards to another server (the exchange simulator) and can cut the
  next answers short: the full ``Content-Length`` announced, part of the body sent, then
  the connection closed.

Faults are queued per server: ``fail_next(status, count, retry_after=)``, ``cut_next(count)``,
``hang_next(seconds, count)``; each request takes the next one.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "yahoo"


@dataclass
class Fault:
    kind: str  # status | cut | hang
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0


class _Server:
    """A threading HTTP server on loopback with a queue of faults and a request log."""

    def __init__(self) -> None:
        self.faults: deque[Fault] = deque()
        self.requests: list[str] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- arming faults --
    def fail_next(self, status: int, count: int = 1, retry_after: str | None = None) -> None:
        with self.lock:
            self.faults.extend(Fault("status", status, retry_after) for _ in range(count))

    def cut_next(self, count: int = 1) -> None:
        with self.lock:
            self.faults.extend(Fault("cut") for _ in range(count))

    def hang_next(self, seconds: float, count: int = 1) -> None:
        with self.lock:
            self.faults.extend(Fault("hang", seconds=seconds) for _ in range(count))

    def _take(self) -> Fault | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    # -- answering --
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests.append(req.path)
        fault = self._take()
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)
            req.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            body = json.dumps({"error": f"injected {fault.status}"}).encode()
            req.send_response(fault.status)
            if fault.retry_after is not None:
                req.send_header("Retry-After", fault.retry_after)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
            return
        try:
            status, content_type, body = self.answer(req.path)
        except (OSError, http.client.HTTPException):
            req.close_connection = True  # the upstream dropped it: drop ours too
            return
        req.send_response(status)
        for key, value in self.extra_headers(req.path).items():
            req.send_header(key, value)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        if fault is not None and fault.kind == "cut":
            req.send_header("Connection", "close")
            req.end_headers()
            req.wfile.write(body[: len(body) // 2])  # announced in full, half sent
            req.wfile.flush()
            req.close_connection = True
            return
        req.end_headers()
        req.wfile.write(body)

    def answer(self, path: str) -> tuple[int, str, bytes]:
        raise NotImplementedError

    def extra_headers(self, path: str) -> dict[str, str]:
        return {}


class BarServer(_Server):
    """``/bars/SYMBOL.csv`` and ``/bars/SYMBOL.json``: one symbol's bars in a window."""

    def __init__(self) -> None:
        super().__init__()
        #: symbol -> rows of (ts_ms, open, high, low, close, volume), served in this order
        self.bars: dict[str, list[tuple[int, float, float, float, float, float]]] = {}

    def put(self, symbol: str, ts_ms: np.ndarray, close: np.ndarray) -> None:
        rows = [(int(t), float(c) * 0.999, float(c) * 1.01, float(c) * 0.98, float(c),
                 1000.0 + i) for i, (t, c) in enumerate(zip(ts_ms, close, strict=True))]
        self.bars[symbol] = rows

    def answer(self, path: str) -> tuple[int, str, bytes]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        name = parts.path.rsplit("/", 1)[-1]
        symbol, _, fmt = name.rpartition(".")
        rows = self.bars.get(symbol)
        if rows is None:
            return 404, "application/json", b'{"error": "unknown symbol"}'
        since = int(query.get("since_ms", 0))
        until = int(query.get("until_ms", 2**62))
        limit = int(query.get("limit", 10**9))
        chosen = [r for r in rows if since <= r[0] < until][:limit]
        if fmt == "json":
            body = json.dumps({"data": {"bars": [
                {"t": r[0], "o": r[1], "h": r[2], "l": r[3], "c": r[4], "v": r[5]}
                for r in chosen]}}).encode()
            return 200, "application/json", body
        lines = ["time,open,high,low,close,volume"]
        lines += [f"{r[0]},{r[1]!r},{r[2]!r},{r[3]!r},{r[4]!r},{r[5]!r}" for r in chosen]
        return 200, "text/csv", ("\n".join(lines) + "\n").encode()


class RecordedYahoo(_Server):
    """Yahoo's v8 chart endpoint from recorded answers (``SYMBOL_INTERVAL.json``)."""

    def answer(self, path: str) -> tuple[int, str, bytes]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        symbol = parts.path.rsplit("/", 1)[-1]
        interval = query.get("interval", "1d")
        recorded = FIXTURES / f"{symbol}_{interval}.json"
        if not recorded.exists():
            body = {"chart": {"result": None, "error": {
                "code": "Not Found", "description": "No data found, symbol may be delisted"}}}
            return 404, "application/json", json.dumps(body).encode()
        data = json.loads(recorded.read_text())
        result = data["chart"]["result"][0]
        if "period1" in query:
            lo, hi = int(query["period1"]), int(query["period2"])
        else:  # range=1d: the newest day only (what yfinance asks for the time zone)
            lo = hi = result["timestamp"][-1]
            hi += 1
        stamps = result["timestamp"]
        keep = [i for i, t in enumerate(stamps) if lo <= t < hi]
        quote = result["indicators"]["quote"][0]
        result["timestamp"] = [stamps[i] for i in keep]
        result["indicators"]["quote"][0] = {k: [v[i] for i in keep] for k, v in quote.items()}
        if "adjclose" in result["indicators"]:
            adj = result["indicators"]["adjclose"][0]["adjclose"]
            result["indicators"]["adjclose"][0]["adjclose"] = [adj[i] for i in keep]
        if not keep:  # Yahoo answers a span without bars with meta only
            del result["timestamp"]
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return 200, "application/json", json.dumps(data).encode()


class CuttingProxy(_Server):
    """Forwards GETs to ``target`` (http://host:port); ``cut_next`` cuts answers short."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = urlsplit(target)
        self._headers = threading.local()

    def extra_headers(self, path: str) -> dict[str, str]:
        return dict(getattr(self._headers, "last", {}))

    def answer(self, path: str) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.target.hostname or "127.0.0.1",
                                          self.target.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            self._headers.last = {k: v for k, v in response.getheaders()
                                  if k.lower() == "retry-after"}
            return (response.status, response.getheader("Content-Type") or "application/json",
                    response.read())
        finally:
            conn.close()
