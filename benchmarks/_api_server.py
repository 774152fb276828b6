"""The server process of benchmarks/api.py: the real app under uvicorn, plus a bar feed.

    python benchmarks/_api_server.py HOME DATABASE_URL PORT REPORT_FD

Serves ``create_app(server=True)`` exactly as ``signalfactory serve`` does (uvicorn, uvloop
and httptools when installed, the websockets sans-I/O protocol), with two benchmark-only
additions:

* ``GET /bench/hello``: a bare FastAPI endpoint through the same middleware, the reference
  the read endpoints are compared with;
* a bar feed on standard input: each line ``bars N`` writes the next day's bar for the first
  N symbols through ``write_bars`` in a worker thread — bars arriving in the serving
  process, as the embedded collector delivers them — and writes one JSON line of timings to
  REPORT_FD (not stdout: the app logs there):
  arrival (the moment ``write_bars`` is entered), commit, evaluated (the last watched
  strategy evaluated), stored (the new signals committed), published (handed to the stream
  hub; the ``fanout`` command's answer stamps it where the hub is called, since the hub keeps
  the writer until its fan-out is done), new signals.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from signalfactory.adapters.rate_limits import KeyRateLimiter
from signalfactory.api import create_app
from signalfactory.api.ws_protocol import BroadcastWebSocketProtocol
from signalfactory.bootstrap import build_platform
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.streaming import SignalEvent
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import (
    BarsWritten,
    SymbolBars,
    load_universe,
    write_bars,
)
from signalfactory.services.platform import Platform
from signalfactory.services.signals import live
from signalfactory.services.streaming.hub import StreamHub
from signalfactory.settings import Settings

DAY = Timeframe.parse("1d")
DAY_NS = 86_400 * 1_000_000_000


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class BarFeed:
    """Continues every symbol's series by one business day per command."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        universe = load_universe(platform, DAY)
        ends = universe.offsets[1:] - 1
        self.symbols = list(universe.symbols)
        self.venue = "SYNTH"
        self.last_ts = int(universe.ts.max())
        self.close = universe.close[ends].copy()
        self.rng = np.random.default_rng(11)
        self.timing: dict[str, int] = {}
        platform.bar_subscribers[:] = [self._timed_hook]
        # Stage times inside live evaluation: its last strategy evaluated, its signals stored
        # (the publish step starts after their commit).
        new_records, publish = live.new_records, live.publish

        def timed_records(*args: Any) -> Any:
            records = new_records(*args)
            self.timing["evaluated"] = time.time_ns()
            return records

        def timed_publish(*args: Any) -> None:
            self.timing["stored"] = time.time_ns()
            publish(*args)

        live.new_records = timed_records
        live.publish = timed_publish

    def _timed_hook(self, platform: Platform, written: BarsWritten) -> None:
        self.timing["commit"] = time.time_ns()
        report = live.evaluate_new_bars(platform, written)
        self.timing["published"] = time.time_ns()
        self.timing["signals"] = report.signals_new if report else 0

    def _next_day(self) -> int:
        ts = self.last_ts + DAY_NS
        while ((ts // DAY_NS) + 3) % 7 >= 5:  # 1970-01-01 was a Thursday: skip Sat, Sun
            ts += DAY_NS
        self.last_ts = ts
        return ts

    def write(self, count: int) -> dict[str, int]:
        count = min(count, len(self.symbols))
        ts = np.array([self._next_day()], dtype=np.int64)
        moves = np.exp(self.rng.normal(0, 0.03, size=count))
        batches = []
        for k in range(count):
            prev, now = float(self.close[k]), float(self.close[k] * moves[k])
            self.close[k] = now
            high, low = max(prev, now) * 1.002, min(prev, now) * 0.998
            batches.append(SymbolBars(InstrumentSpec(self.symbols[k], venue=self.venue), ts,
                                      np.array([prev]), np.array([high]), np.array([low]),
                                      np.array([now]), np.array([1e5])))
        self.timing = {"arrival": time.time_ns()}
        write_bars(self.platform, DAY, batches, source="benchmark feed")
        self.timing["returned"] = time.time_ns()
        return dict(self.timing)


class FanOutProbe:
    """Server-side fan-out times: when the hub got a batch, when the last send finished."""

    def __init__(self) -> None:
        self.handed = 0
        self.hub_start = 0
        self.last_send = 0
        self.sends = 0
        self.gc_ms = 0.0
        self.gc_max_ms = 0.0
        self.gc_full = 0
        self.gc_count = 0
        self._gc_started = 0.0
        self._cpu = time.process_time()
        original_publish = StreamHub.publish
        original_threadsafe = StreamHub.publish_threadsafe
        original_send = WebSocket.send_text
        probe = self

        def publish(hub: StreamHub, events: Any, via: str = "direct") -> None:
            if via == "direct" and not probe.hub_start:  # not the relay's polls after it
                probe.hub_start = time.time_ns()
            original_publish(hub, events, via)

        async def send_text(ws: WebSocket, data: str) -> None:
            await original_send(ws, data)
            probe.last_send = time.time_ns()
            probe.sends += 1

        original_write = BroadcastWebSocketProtocol.write_prepared

        def write_prepared(protocol: BroadcastWebSocketProtocol, frame: bytes) -> bool:
            written = original_write(protocol, frame)
            if written:
                probe.last_send = time.time_ns()
                probe.sends += 1
            return written

        def publish_threadsafe(hub: StreamHub, events: Any) -> None:
            # Handed to the hub: stamped here, as the hub may keep the writer until the
            # fan-out is done.
            probe.handed = probe.handed or time.time_ns()
            original_threadsafe(hub, events)

        StreamHub.publish = publish  # type: ignore[method-assign]
        StreamHub.publish_threadsafe = publish_threadsafe  # type: ignore[method-assign]
        WebSocket.send_text = send_text  # type: ignore[method-assign]
        BroadcastWebSocketProtocol.write_prepared = write_prepared  # type: ignore[method-assign]
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = (time.perf_counter() - self._gc_started) * 1000
            self.gc_ms += pause
            self.gc_max_ms = max(self.gc_max_ms, pause)
            self.gc_count += 1
            self.gc_full += info.get("generation") == 2

    def take(self) -> dict[str, Any]:
        out = {"hub_start": self.hub_start, "last_send": self.last_send, "sends": self.sends,
               "gc_ms": round(self.gc_ms, 2), "gc_max_ms": round(self.gc_max_ms, 2),
               "gc_count": self.gc_count, "gc_full": self.gc_full}
        if self.handed:
            out["published"] = self.handed
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        cpu, self._cpu = self._cpu, time.process_time()
        out["cpu_ms"] = round((self._cpu - cpu) * 1000, 2)
        self.sends, self.gc_ms, self.hub_start, self.handed = 0, 0.0, 0, 0
        self.gc_max_ms, self.gc_count, self.gc_full = 0.0, 0, 0
        return out


def feed_commands(feed: BarFeed, probe: FanOutProbe, report: Any) -> None:
    synthetic_id = [10**12]
    for line in sys.stdin:
        parts = line.split()
        if parts and parts[0] == "bars":
            probe.take()
            answer: dict[str, Any] = feed.write(int(parts[1]))
        elif parts and parts[0] == "fanout":
            answer = probe.take()
        elif parts and parts[0] == "synthetic":
            # A made-up built-in signal straight into the hub: the fan-out alone, no bars.
            probe.take()
            synthetic_id[0] += 1
            event = SignalEvent({"id": synthetic_id[0], "bar_ts": None, "symbol": "SYN",
                                 "side": "long", "strategy": "sma_cross",
                                 "strategy_version": 1, "timeframe": "1d", "score": 1.0,
                                 "price": 1.0, "values": {}, "created_at": None},
                                tenant_id=1, builtin=True, arrival_ns=time.time_ns())
            answer = {"arrival": event.arrival_ns, "published": event.arrival_ns,
                      "commit": event.arrival_ns, "signals": 1}
            live.publish(feed.platform, [event])
        else:
            continue
        report.write(json.dumps(answer) + "\n")
        report.flush()


def main() -> None:
    import uvicorn

    home, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    report = os.fdopen(int(sys.argv[4]), "w")
    raise_fd_limit()
    # The benchmark measures serving, not the per-key limit: every tier gets a huge window.
    platform = build_platform(
        Settings(home=home, database_url=url, log_level="WARNING"),
        rate_limiter=KeyRateLimiter(limits_by_tier={
            t: "100000000/minute" for t in ("free", "premium", "enterprise")}))
    feed = BarFeed(platform)
    try:
        app = create_app(platform=platform, server=True)
    except TypeError:  # a tree from before the serving heap was settled (reads.py's "before")
        app = create_app(platform=platform)
        gc.freeze()  # what those trees' own benchmark server did

    @app.get("/bench/hello", include_in_schema=False)
    async def hello() -> dict[str, bool]:
        return {"ok": True}

    probe = FanOutProbe()
    threading.Thread(target=feed_commands, args=(feed, probe, report), daemon=True).start()
    report.write(json.dumps({"ready": True, "symbols": len(feed.symbols)}) + "\n")
    report.flush()
    # As `signalfactory serve` does: the broadcast-capable WebSocket protocol, and the heap
    # settled once the app has started (create_app(server=True)).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning",
                ws=BroadcastWebSocketProtocol, ws_per_message_deflate=False, backlog=4096)


if __name__ == "__main__":
    main()
