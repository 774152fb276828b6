"""A real uvicorn server in a thread, WebSocket and SSE clients, and bars that make signals.

    with ServerThread(app) as server:
        ws = WsClient(server.ws_url("/api/v1/stream/ws?strategies=x"), key)
        ws.wait_live()
        write_bars_for(platform, ["AAA"], days=[100])
        event = ws.next_signals()
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import uvicorn
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from signalfactory.api.ws_protocol import BroadcastWebSocketProtocol
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, WriteReport, write_bars

DAY_NS = 86_400 * 1_000_000_000
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
# Fires on every bar: each new bar of a watched instrument gives one "long" signal.
ALWAYS = "entry: close > 0\nexit: close < 0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port, in a daemon thread, with the
    WebSocket protocol ``signalfactory serve`` uses (prepared frames for broadcasts)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                ws=BroadcastWebSocketProtocol, ws_per_message_deflate=False,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


def day(n: int) -> int:
    """ns timestamp of day ``n`` after 2020-01-01 (midnight UTC)."""
    return int((EPOCH + timedelta(days=n)).timestamp()) * 1_000_000_000


def write_bars_for(platform: Any, symbols: Sequence[str], days: Iterable[int],
                   price: float = 100.0) -> WriteReport:
    ts = np.array([day(d) for d in days], dtype=np.int64)
    flat = np.full(len(ts), price)
    batches = [SymbolBars(InstrumentSpec(symbol=s), ts, flat, flat + 1, flat - 1, flat,
                          np.full(len(ts), 1000.0)) for s in symbols]
    return write_bars(platform, Timeframe.parse("1d"), batches, source="test")


class WsClient:
    """A WebSocket subscriber; messages are read by a thread into a queue."""

    def __init__(self, url: str, key: str | None = None, **headers: str) -> None:
        extra = {"Authorization": f"Bearer {key}"} if key else {}
        self.conn: ClientConnection = ws_connect(url, additional_headers={**extra, **headers},
                                                 proxy=None, open_timeout=10,
                                                 legacy=True)
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for raw in self.conn:
                self.messages.put(json.loads(raw))
        except Exception:  # noqa: S110 - the connection ended; None below says so
            pass
        self.messages.put(None)

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        message = self.messages.get(timeout=timeout)
        if message is None:
            raise ConnectionError("the stream closed")
        return message

    def wait_live(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Messages up to and including the ``live`` marker; returns replayed signals."""
        replayed: list[dict[str, Any]] = []
        while True:
            message = self.next(timeout)
            if message["type"] == "live":
                return replayed
            if message["type"] == "signals":
                replayed.extend(message["items"])

    def signals(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` signals (several may come in one message)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message["type"] == "signals":
                out.extend(message["items"])
        return out

    def close(self) -> None:
        self.conn.close()
        self.reader.join(5)


class SseClient:
    """A Server-Sent Events subscriber over httpx; events are parsed by a thread."""

    def __init__(self, url: str, key: str | None = None, **headers: str) -> None:
        extra = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        self.request = self.client.build_request("GET", url, headers={**extra, **headers})
        self.response = self.client.send(self.request, stream=True)
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.comments: list[str] = []
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fields: dict[str, Any] = {}
        try:
            for line in self.response.iter_lines():
                if not line:
                    if fields:
                        self.events.put(fields)
                    fields = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except Exception:  # noqa: S110 - closed by the test or the server
            pass
        self.events.put(None)

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        event = self.events.get(timeout=timeout)
        if event is None:
            raise ConnectionError("the stream closed")
        return event

    def wait_live(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        replayed = []
        while True:
            event = self.next(timeout)
            if event.get("event") == "live":
                return replayed
            if event.get("event") == "signal":
                replayed.append({**json.loads(event["data"]), "_sse_id": event["id"]})

    def signals(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event.get("event") == "signal":
                out.append({**json.loads(event["data"]), "_sse_id": event["id"]})
        return out

    def close(self) -> None:
        self.response.close()
        self.client.close()
