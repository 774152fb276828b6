"""API serving speed: read endpoints under an open-loop load, and live stream fan-out.

    .venv/bin/python benchmarks/api.py [--symbols 500] [--bars 500] [--rate 500]
        [--seconds 20] [--subscribers 1000] [--rounds 20] [--batch 500]
        [--receivers 1] [--overlap] [--skip-reads] [--skip-stream]
        [--database-url postgresql+psycopg://...]

Data: the sample universe (500 symbols x 500 daily bars), the five built-in strategies
evaluated over it (tens of thousands of signals), a stored scan. The server is the real app
under uvicorn in a separate process (benchmarks/_api_server.py); the load comes from this
process. Loopback only; every phase is bounded and the script stops by itself.

(a) Reads: each endpoint alone at ``--rate`` requests/s for ``--seconds`` s, open loop
    (requests start on a fixed schedule whatever the server does, latency counted from the
    scheduled start, so queueing shows), then all of them mixed. Reference in the same run:
    a bare FastAPI ``/bench/hello`` on the same server and middleware. Target p95 <= 20 ms.
    The load comes from a lean keep-alive client (``_http_lean.py``): with httpx the client's
    own core saturated first once a backlog formed, and the figures measured the client.
(b) Stream: ``--subscribers`` WebSocket subscribers (through ten tenants' subscriptions to
    sma_cross), as asyncio protocols in this process (the default, ``--receivers 0``) or in
    ``--receivers K`` processes of their own (epoll, ``_ws_receivers.py``; on 2 busy cores they
    were no faster: the receipts' spread is the client's ~20-70 us per socket, whichever kind;
    more client processes pay off only with more cores); each round writes the next day's bar
    for ``--batch`` symbols in the server process and prints per-stage percentiles from bar
    arrival (wall clock when ``write_bars`` is entered): bars committed, evaluated, signals
    stored, handed to the hub, fan-out started, last socket write (server), then first / every /
    last subscriber's receipt, and the CPU time per round of the server process and of the
    subscribers (what receiving and parsing the messages costs the client on the same cores).
    A second pass injects a signal straight into the hub (the fan-out alone, no bars).
    ``--overlap`` serves with SIGNALFACTORY_LIVE_OVERLAP=true (evaluation overlapped with the
    commit). Target p99 <= 20 ms. Run (b) is first: an overloaded read phase
    leaves a backlog behind it. The environment (cores, load average) is printed first: figures
    are comparable within one run, or between runs made back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header
from _http_lean import LeanHttpClient, LeanHttpError
from _ws_lean import LeanWebSocket, open_lean

from signalfactory.bootstrap import build_platform
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.scans.scan import ScanRequest, run_scan
from signalfactory.services.signals.evaluation import run_all
from signalfactory.services.strategies.catalog import ensure_builtins
from signalfactory.services.streaming.subscriptions import create_subscription
from signalfactory.settings import Settings

HOST = "127.0.0.1"
MAX_IN_FLIGHT = 200  # open-loop requests outstanding at most; later ones count as failed
REQUEST_TIMEOUT = 10.0
UNCACHED = "GET /api/v1/signals, no cache"
WARMUP_ROUNDS = 2  # stream rounds not measured (first evaluations compile numba kernels)
BUILTINS = ["sma_cross", "rsi_mean_reversion", "macd_trend", "bollinger_breakout",
            "donchian_breakout"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def prepare(home: Path, url: str, symbols: int, bars: int) -> dict[str, Any]:
    platform = build_platform(Settings(home=home, database_url=url), migrate_db=True)
    try:
        t0 = time.perf_counter()
        store_sample(platform, symbols=symbols, bars=bars, seed=42)
        with platform.database.write() as uow:
            ensure_builtins(uow)
        with platform.database.write() as uow:
            tenants = [accounts.create_tenant(uow, f"bench-{i}", "enterprise").id
                       for i in range(10)]
            keys = [accounts.create_key(uow, t, "admin", now=platform.clock.now())[0].secret
                    for t in tenants]
        subs = [create_subscription(platform, t, "crosses", strategies_=["sma_cross"]).id
                for t in tenants]
        runs = run_all(platform, tenants[0], BUILTINS)
        scan = run_scan(platform, ScanRequest(tenant_id=tenants[0], strategy="sma_cross",
                                              top=50))
        signals = sum(r.signals_written for r in runs)
        print(f"data: {symbols} symbols x {bars} bars, {signals} signals from "
              f"{len(runs)} built-ins, scan {scan.id} ({time.perf_counter() - t0:.1f} s)")
        return {"keys": keys, "subscriptions": subs, "scan": scan.id,
                "symbols": [f"S{chr(65 + i // 676)}{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}"
                            for i in range(symbols)]}
    finally:
        platform.close()


class Server:
    def __init__(self, home: Path, url: str, env: dict[str, str] | None = None,
                 prefix: list[str] | None = None) -> None:
        """``prefix``: a command the server runs under (``taskset -c 0`` pins it)."""
        sock = __import__("socket").socket()
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        sock.close()
        script = Path(__file__).with_name("_api_server.py")
        read_fd, write_fd = os.pipe()
        self.log_path = Path(tempfile.gettempdir()) / "signalfactory-api-bench-server.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen([*(prefix or []), sys.executable,  # noqa: S603
                                      str(script), str(home), url, str(self.port),
                                      str(write_fd)], stdin=subprocess.PIPE,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1, pass_fds=(write_fd,),
                                     env={**os.environ, **(env or {})})
        os.close(write_fd)
        self.report = os.fdopen(read_fd)
        ready = json.loads(self.report.readline())
        assert ready.get("ready"), ready
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base}/livez").status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.report.readline()))

    def bars(self, count: int) -> dict[str, Any]:
        return self.command(f"bars {count}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        errors = self.log_path.read_text().count("Traceback")
        if errors:
            print(f"server logged {errors} tracebacks; see {self.log_path}")


# -- (a) reads ---------------------------------------------------------------------------

async def open_loop(client: LeanHttpClient, paths: list[str], rate: float,
                    seconds: float) -> dict[str, float]:
    """Requests start on a fixed schedule; latency counts from the scheduled start."""
    requests = [client.request_bytes(p) for p in paths]
    count = int(rate * seconds)
    start = time.perf_counter() + 0.2  # perf_counter: uvloop's loop.time() ticks in ms
    latencies: list[float] = []
    failures = shed = in_flight = 0
    finished = start

    async def one(i: int) -> None:
        nonlocal failures, finished, shed, in_flight
        at = start + i / rate
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        if in_flight >= MAX_IN_FLIGHT:  # the server fell far behind: count, do not pile up
            shed += 1
            return
        in_flight += 1
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                ok = await client.get(requests[i % len(requests)]) == 200
        except (OSError, LeanHttpError, TimeoutError):
            ok = False
        in_flight -= 1
        done = time.perf_counter()
        finished = max(finished, done)
        if ok:
            latencies.append((done - at) * 1000)
        else:
            failures += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return {"rate": len(latencies) / max(finished - start, 1e-9), "failed": failures + shed,
            "p50": pct(latencies, 50), "p95": pct(latencies, 95), "p99": pct(latencies, 99)}


async def capacity(client: LeanHttpClient, paths: list[str], seconds: float = 5.0,
                   workers: int = 4) -> dict[str, float]:
    """Closed loop: a few clients back to back, what the server can do at most."""
    requests = [client.request_bytes(p) for p in paths]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            with contextlib.suppress(OSError, LeanHttpError):
                if await client.get(requests[i % len(requests)]) == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)
            i += workers

    await asyncio.gather(*(worker(k) for k in range(workers)))
    return {"rate": len(latencies) / seconds, "p50": pct(latencies, 50)}


async def drain(client: httpx.AsyncClient, headers: dict[str, str],
                limit: float = 90.0) -> None:
    """Wait until the server has worked off a backlog: a request that needs a worker thread
    and the database (not /livez, which the event loop answers at once) is quick again."""
    stop = time.perf_counter() + limit
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            await client.get("/api/v1/me", headers=headers, timeout=5.0)
            if time.perf_counter() - t0 < 0.05:
                return
        await asyncio.sleep(1.0)


async def reads(start_server: Any, data: dict[str, Any], rate: float, seconds: float) -> None:
    header(f"(a) read endpoints, open loop at {rate:.0f} req/s for {seconds:.0f} s each "
           "(a fresh server process for each, so one overload does not spill into the next)")
    headers = {"Authorization": f"Bearer {data['keys'][0]}"}
    rng = random.Random(3)
    symbols = rng.sample(data["symbols"], min(50, len(data["symbols"])))
    endpoints = {
        "hello (reference)": ["/bench/hello"],
        "GET /api/v1/signals": ["/api/v1/signals", *(f"/api/v1/signals?symbol={s}"
                                                     for s in symbols)],
        "GET /api/v1/instruments": ["/api/v1/instruments"],
        "GET /api/v1/strategies": ["/api/v1/strategies"],
        "GET /api/v1/scans/{id}": [f"/api/v1/scans/{data['scan']}"],
    }
    endpoints["mixed (all four)"] = [p for name, paths in endpoints.items()
                                     if "reference" not in name for p in paths[:4]]
    # Every page from the database: what a burst of distinct queries, or a write between
    # every read, costs.
    endpoints[UNCACHED] = endpoints["GET /api/v1/signals"]
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    print(f"{'endpoint':26} {'max/s':>6} {'p50 ms':>7} | {'req/s':>6} {'fail':>5} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'p95/ref':>8}  target p95 <= 20 ms")
    ref_p95 = None
    for name, paths in endpoints.items():
        server = await asyncio.to_thread(
            start_server, {"SIGNALFACTORY_CACHE_TTL_SECONDS": "0"} if name == UNCACHED else None)
        try:
            lean = LeanHttpClient(HOST, server.port, headers)
            async with httpx.AsyncClient(base_url=server.base, limits=limits,
                                         timeout=httpx.Timeout(10.0)) as client:
                try:
                    for path in paths[:3]:  # warm up connections and caches
                        await client.get(path, headers=headers)
                    most = await capacity(lean, paths)
                    await drain(client, headers)
                    r = await open_loop(lean, paths, rate, seconds)
                finally:
                    lean.close()
        finally:
            await asyncio.to_thread(server.stop)
        ref_p95 = ref_p95 or r["p95"]
        verdict = "" if "reference" in name else ("ok" if r["p95"] <= 20 else "MISSED")
        print(f"{name:26} {most['rate']:6.0f} {most['p50']:7.2f} | {r['rate']:6.1f} "
              f"{r['failed']:5.0f} {r['p50']:7.2f} {r['p95']:7.2f} {r['p99']:7.2f} "
              f"{r['p95'] / ref_p95:7.1f}x {verdict}", flush=True)
    print("left: closed loop, 4 clients back to back for 5 s (the server's capacity, its "
          "median latency); right: open loop at the target rate (latency from the scheduled "
          "start; 'fail' counts errors, time-outs and requests shed beyond "
          f"{MAX_IN_FLIGHT} outstanding)")


# -- (b) stream --------------------------------------------------------------------------

class Receivers:
    """The subscribers in processes of their own (benchmarks/_ws_receivers.py, epoll)."""

    def __init__(self, port: int, specs: list[tuple[str, dict[str, str]]], procs: int) -> None:
        script = Path(__file__).with_name("_ws_receivers.py")
        self.procs = [subprocess.Popen([sys.executable, str(script), HOST, str(port)],  # noqa: S603
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       bufsize=1) for _ in range(procs)]
        for k, proc in enumerate(self.procs):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(specs[k::procs]) + "\n")
            proc.stdin.flush()
        self.live = sum(self._answer(proc)["live"] for proc in self.procs)

    @staticmethod
    def _answer(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("a receiver process ended; see its stderr above")
        return dict(json.loads(line))

    def take(self) -> tuple[list[int], float]:
        """Receipts since the last take, and the receivers' CPU time (ms) in between."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("take\n")
            proc.stdin.flush()
        answers = [self._answer(proc) for proc in self.procs]
        cpu = sum(a.get("cpu_ms", 0.0) for a in answers)
        return [t for a in answers for t in a["signals"]], cpu

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.flush()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


class AsyncioReceivers:
    """The subscribers as asyncio protocols in a thread of this process (the former client:
    one callback per socket, ~20 us each, so its receipts include the client's own loop)."""

    def __init__(self, port: int, specs: list[tuple[str, dict[str, str]]]) -> None:
        self.received: dict[int, int] = {}
        self.live_seen: set[int] = set()
        self.cpu = 0.0
        self.loop = asyncio.new_event_loop()
        self.clients: list[LeanWebSocket] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(port, specs), self.loop).result(120)
        self.live = len(self.live_seen)

    def _on_message(self, ws: LeanWebSocket, payload: bytes, now: int) -> None:
        if payload.startswith(b'{"type":"signals"'):
            self.received.setdefault(id(ws), now)
        elif payload.startswith(b'{"type":"live"'):
            self.live_seen.add(id(ws))

    async def _connect(self, port: int, specs: list[tuple[str, dict[str, str]]]) -> None:
        semaphore = asyncio.Semaphore(64)

        async def connect(path: str, headers: dict[str, str]) -> None:
            async with semaphore:
                self.clients.append(await open_lean(HOST, port, path, headers,
                                                    self._on_message))

        await asyncio.gather(*(connect(p, h) for p, h in specs))
        deadline = time.perf_counter() + 60
        while len(self.live_seen) < len(specs) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)

    def take(self) -> tuple[list[int], float]:
        """Receipts since the last take, and the receivers' thread's CPU time (ms) in
        between (what receiving and parsing the messages cost the client)."""
        async def grab() -> tuple[list[int], float]:
            got = list(self.received.values())
            self.received.clear()
            before, self.cpu = self.cpu, time.thread_time()
            return got, (self.cpu - before) * 1000 if before else 0.0

        got, cpu = asyncio.run_coroutine_threadsafe(grab(), self.loop).result(10)
        return got, cpu

    def close(self) -> None:
        async def shut() -> None:
            for client in self.clients:
                client.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def environment(args: argparse.Namespace) -> None:
    """What the figures were measured on: they are only comparable within one run."""
    import platform as host

    try:
        import uvloop
        loop_kind = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop_kind = "asyncio"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"environment: {host.python_implementation()} {host.python_version()}, {loop_kind}, "
          f"{cpus} usable cores of {os.cpu_count()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"database {'PostgreSQL' if args.database_url else 'SQLite'}, "
          f"live overlap {'on' if args.overlap else 'off'}, "
          "server and load generator in separate processes over loopback, subscribers "
          + (f"in {args.receivers} epoll process(es)" if args.receivers
             else "as asyncio protocols in the load generator"))


def stream(server: Server, data: dict[str, Any], subscribers: int, rounds: int, batch: int,
           receivers: int) -> None:
    what = f"a {batch}-symbol bar batch" if batch else "a signal put straight into the hub"
    client = (f"{receivers} epoll receiver process(es)" if receivers
              else "asyncio protocols in the benchmark process")
    header(f"(b) live stream: {subscribers} WebSocket subscribers ({client}), {rounds} rounds "
           f"of {what}")
    specs = []
    for i in range(subscribers):
        n = i % len(data["keys"])
        specs.append((f"/api/v1/stream/ws?subscription={data['subscriptions'][n]}",
                      {"Authorization": f"Bearer {data['keys'][n]}"}))
    t0 = time.perf_counter()
    pool: Receivers | AsyncioReceivers = (Receivers(server.port, specs, receivers) if receivers
                                          else AsyncioReceivers(server.port, specs))
    try:
        if pool.live < subscribers:
            raise RuntimeError(f"only {pool.live} of {subscribers} subscribers went live")
        print(f"connected {subscribers} subscribers in {time.perf_counter() - t0:.1f} s")
        _rounds(server, pool, subscribers, rounds, batch)
    finally:
        pool.close()


def _rounds(server: Server, pool: Receivers | AsyncioReceivers, subscribers: int, rounds: int,
            batch: int) -> None:
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    per_sub: list[float] = []
    last_per_round: list[float] = []
    first: list[float] = []
    gc_ms: list[float] = []
    gc_max: list[float] = []
    gc_count = gc_full = 0
    client_cpu: list[float] = []
    server_cpu: list[float] = []
    empty = short = 0
    for number in range(-WARMUP_ROUNDS, rounds):
        pool.take()
        timing = server.command("synthetic" if batch == 0 else f"bars {batch}")
        if not timing.get("signals"):
            empty += number >= 0
            continue
        time.sleep(0.3)  # every socket was written long before (see "last socket write")
        got, cpu = pool.take()
        fan = server.command("fanout")
        if number < 0 or not got:
            continue
        client_cpu.append(cpu)
        short += len(got) < subscribers
        arrival = timing["arrival"]
        timing.update(fan)
        for name, key in STAGES.items():
            if timing.get(key):
                stages[name].append((timing[key] - arrival) / 1e6)
        gc_ms.append(fan["gc_ms"])
        gc_max.append(fan.get("gc_max_ms", 0.0))
        gc_count += fan.get("gc_count", 0)
        gc_full += fan.get("gc_full", 0)
        server_cpu.append(fan.get("cpu_ms", float("nan")))
        lat = [(t - arrival) / 1e6 for t in got]
        per_sub.extend(lat)
        last_per_round.append(max(lat))
        first.append(min(lat))
    measured = len(last_per_round)
    print(f"rounds with new signals: {measured} (skipped {empty} without any; {short} rounds "
          "where not every subscriber had its message within 0.3 s)")
    if not measured:
        return
    print(f"{'bar received -> ...':40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = [*((name, values) for name, values in stages.items() if values),
            ("first subscriber received", first),
            ("every subscriber (all receipts)", per_sub),
            ("last subscriber of each round", last_per_round)]
    for name, values in rows:
        print(f"{name:40} {pct(values, 50):8.2f} {pct(values, 90):8.2f} {pct(values, 99):8.2f} "
              f"{max(values):8.2f}")
    print(f"server GC pauses per round: p50 {pct(gc_ms, 50):.1f} ms, max {max(gc_ms):.1f} ms; "
          f"{gc_count} collections in the measured rounds ({gc_full} full), longest "
          f"{max(gc_max):.1f} ms; server peak RSS {fan.get('maxrss_mb', 0)} MB")
    print(f"server CPU per round (all threads, from the bars to 0.3 s later): p50 "
          f"{pct(server_cpu, 50):.1f} ms, max {max(server_cpu):.1f} ms")
    print(f"subscribers' CPU per round (receiving and parsing {subscribers} messages, on the "
          f"same cores): p50 {pct(client_cpu, 50):.1f} ms, max {max(client_cpu):.1f} ms")
    p99 = pct(per_sub, 99)
    published = stages["signals handed to the hub (server)"]
    print(f"fan-out spread (last - first) p50 "
          f"{pct([a - b for a, b in zip(last_per_round, first, strict=True)], 50):.2f} ms; "
          f"receipt p99 / publish p99 = {p99 / max(pct(published, 99), 1e-3):.1f}x; "
          f"target p99 <= 20 ms: {'ok' if p99 <= 20 else 'MISSED'}")


STAGES = {  # printed row -> the server's timing key (ns, wall clock)
    "bars committed (server)": "commit",
    "evaluated (server)": "evaluated",
    "signals stored (server)": "stored",
    "signals handed to the hub (server)": "published",
    "hub fan-out started (server)": "hub_start",
    "last socket write (server)": "last_send",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--receivers", type=int, default=0,
                        help="subscriber processes (epoll); 0: asyncio in this process")
    parser.add_argument("--overlap", action="store_true",
                        help="serve with live evaluation overlapped with the bar commit")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    environment(args)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        url = args.database_url or f"sqlite:///{Path(tmp) / 'sf.db'}"
        data = prepare(home, url, args.symbols, args.bars)
        # The stream first: it shares one server; the reads start one per endpoint.
        if not args.skip_stream:
            server = Server(home, url, {"SIGNALFACTORY_LIVE_OVERLAP": str(args.overlap).lower()})
            try:
                stream(server, data, args.subscribers, args.rounds, args.batch, args.receivers)
                if args.batch:
                    stream(server, data, args.subscribers, args.rounds, 0, args.receivers)
            finally:
                server.stop()
        if not args.skip_reads:
            asyncio.run(reads(lambda env: Server(home, url, env), data, args.rate,
                              args.seconds))


if __name__ == "__main__":
    main()
