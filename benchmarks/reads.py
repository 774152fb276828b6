"""Hot reads, before and after in one run: uncached signal pages, cached reads, shedding.

    .venv/bin/python benchmarks/reads.py [--symbols 200] [--bars 500] [--seconds 8]
        [--rates 500,1000] [--cached-rate 500] [--overload-rate 2000] [--shed-limit 32]
        [--reference-src /work/main/src] [--database-url postgresql+psycopg://...]

The server is the real app under uvicorn (benchmarks/_api_server.py) in its own process;
the load comes from this process through a lean keep-alive client (_http_lean.py), open
loop: requests start on a fixed schedule whatever the server does and latency counts from
the scheduled start, so queueing shows. With two or more cores the server is pinned to
core 0 (``taskset -c 0``) and this client to core 1, so the client's work does not steal
the server's core. Targets (issue 15): uncached signal pages >= 1,000 req/s; cached reads
p95 <= 5 ms at 500 req/s; past the in-flight limit, quick 503s instead of time-outs.

``--reference-src DIR`` runs the same phases, in the same run, against a server started
from another source tree (the code before the change, e.g. the main checkout's
``src``) on the same data: that is the "before" column. Every phase gets a fresh server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header
from _http_lean import LeanHttpClient, LeanHttpError
from api import HOST, Server, capacity, pct, prepare

OUTSTANDING = 400  # client-side cap on requests in flight; later ones count as failed
TIMEOUT_S = 10.0


async def open_loop(client: LeanHttpClient, paths: list[str], rate: float,
                    seconds: float) -> dict[str, Any]:
    """Per-status latencies of an open-loop run (ms from each request's scheduled start)."""
    requests = [client.request_bytes(p) for p in paths]
    count = int(rate * seconds)
    start = time.perf_counter() + 0.2
    by_status: dict[int, list[float]] = {}
    errors = dropped = in_flight = 0
    finished = start

    async def one(i: int) -> None:
        nonlocal errors, dropped, in_flight, finished
        at = start + i / rate
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        if in_flight >= OUTSTANDING:
            dropped += 1
            return
        in_flight += 1
        try:
            async with asyncio.timeout(TIMEOUT_S):
                status = await client.get(requests[i % len(requests)])
        except (OSError, LeanHttpError, TimeoutError):
            errors += 1
            return
        finally:
            in_flight -= 1
        done = time.perf_counter()
        finished = max(finished, done)
        by_status.setdefault(status, []).append((done - at) * 1000)

    await asyncio.gather(*(one(i) for i in range(count)))
    ok = by_status.get(200, [])
    return {"rate": len(ok) / max(finished - start, 1e-9), "ok": ok, "by_status": by_status,
            "failed": errors + dropped + sum(len(v) for s, v in by_status.items() if s != 200)}


def row(name: str, r: dict[str, Any]) -> str:
    ok = r["ok"]
    return (f"{name:34} {r['rate']:7.0f} {r['failed']:6d} {pct(ok, 50):8.2f} "
            f"{pct(ok, 95):8.2f} {pct(ok, 99):8.2f}")


async def warm(client: LeanHttpClient, paths: list[str]) -> None:
    for path in paths[:5]:
        with contextlib.suppress(OSError, LeanHttpError):
            await client.get(client.request_bytes(path))


async def side(label: str, start: Any, data: dict[str, Any], args: argparse.Namespace,
               results: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {data['keys'][0]}"}
    rng = random.Random(3)
    symbols = rng.sample(data["symbols"], min(50, len(data["symbols"])))
    pages = ["/api/v1/signals", *(f"/api/v1/signals?symbol={s}" for s in symbols)]
    cached = {"GET /api/v1/signals (cached)": pages[:4],
              "GET /api/v1/scans/{id}": [f"/api/v1/scans/{data['scan']}"],
              "GET /api/v1/instruments": ["/api/v1/instruments"],
              "GET /api/v1/strategies": ["/api/v1/strategies"]}
    print(f"{'[' + label + ']':34} {'req/s':>7} {'fail':>6} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8}", flush=True)

    server = await asyncio.to_thread(start, {"SIGNALFACTORY_CACHE_TTL_SECONDS": "0"})
    try:
        client = LeanHttpClient(HOST, server.port, headers)
        await warm(client, pages)
        most = await capacity(client, pages, seconds=4.0)
        results[(label, "capacity")] = most["rate"]
        print(f"{'uncached pages, closed loop (max)':34} {most['rate']:7.0f} {'':6} "
              f"{most['p50']:8.2f}", flush=True)
        for rate in args.rates:
            await asyncio.sleep(1.0)
            r = await open_loop(client, pages, rate, args.seconds)
            results[(label, f"uncached@{rate:.0f}")] = r
            print(row(f"uncached pages @ {rate:.0f}/s", r), flush=True)
        client.close()
    finally:
        await asyncio.to_thread(server.stop)

    server = await asyncio.to_thread(start, None)
    try:
        client = LeanHttpClient(HOST, server.port, headers)
        for name, paths in cached.items():
            await warm(client, paths)
            await asyncio.sleep(0.5)
            r = await open_loop(client, paths, args.cached_rate, args.seconds)
            results[(label, name)] = r
            print(row(f"{name} @ {args.cached_rate:.0f}/s", r), flush=True)
        client.close()
    finally:
        await asyncio.to_thread(server.stop)

    server = await asyncio.to_thread(start, {"SIGNALFACTORY_CACHE_TTL_SECONDS": "0",
                                             "SIGNALFACTORY_API_MAX_IN_FLIGHT":
                                             str(args.shed_limit)})
    try:
        client = LeanHttpClient(HOST, server.port, headers)
        await warm(client, pages)
        r = await open_loop(client, pages, args.overload_rate, args.seconds)
        results[(label, "overload")] = r
        statuses = ", ".join(f"{s}: {len(v)} (p50 {pct(v, 50):.1f} ms, p99 "
                             f"{pct(v, 99):.1f} ms)" for s, v in sorted(r["by_status"].items()))
        lost = r["failed"] - sum(len(v) for s, v in r["by_status"].items() if s != 200)
        print(f"overload @ {args.overload_rate:.0f}/s (limit {args.shed_limit} in flight): "
              f"{statuses}; time-outs/errors/dropped {lost}", flush=True)
        client.close()
    finally:
        await asyncio.to_thread(server.stop)


def pinning() -> tuple[list[str], set[int] | None]:
    """(server prefix, client cores): server on the first allowed core, client on another."""
    cores = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if len(cores) < 2 or taskset is None:
        return [], None
    return [taskset, "-c", str(cores[0])], {cores[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rates", default="500,1000")
    parser.add_argument("--cached-rate", type=float, default=500)
    parser.add_argument("--overload-rate", type=float, default=2000)
    parser.add_argument("--shed-limit", type=int, default=32)
    parser.add_argument("--reference-src", default=None,
                        help="a source tree to run the 'before' server from (e.g. the main "
                             "checkout's src)")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    prefix, client_cores = pinning()
    own_src = str(Path(__file__).resolve().parents[1] / "src")
    sides = [("before", args.reference_src)] if args.reference_src else []
    sides.append(("after", own_src))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        url = args.database_url or f"sqlite:///{Path(tmp) / 'sf.db'}"
        data = prepare(home, url, args.symbols, args.bars)
        if client_cores is not None:
            os.sched_setaffinity(0, client_cores)
        pinned = (f"server pinned with '{' '.join(prefix[1:])}', client on core "
                  f"{min(client_cores)}" if client_cores else "not pinned (one core or no "
                                                               "taskset)")
        header(f"hot reads on {url.split(':')[0]}, {os.cpu_count()} cores, {pinned}; open "
               f"loop {args.seconds:.0f} s per row")
        results: dict[Any, Any] = {}
        for label, src in sides:
            env_path = {"PYTHONPATH": os.pathsep.join(
                [src, *filter(None, [os.environ.get("PYTHONPATH")])])}

            def start(env: dict[str, str] | None, env_path: dict[str, str] = env_path) -> Server:
                return Server(home, url, {**env_path, **(env or {})}, prefix)

            asyncio.run(side(label, start, data, args, results))
        if args.reference_src:
            header("after / before")
            for key in [k for k in results if k[0] == "after"]:
                before, after = results.get(("before", key[1])), results[key]
                if before is None or key[1] == "overload":
                    continue
                if key[1] == "capacity":
                    print(f"{'uncached max req/s':34} {after / before:6.2f}x")
                    continue
                print(f"{key[1]:34} req/s {after['rate'] / before['rate']:6.2f}x, p95 "
                      f"{pct(after['ok'], 95):.2f} vs {pct(before['ok'], 95):.2f} ms")


if __name__ == "__main__":
    main()
