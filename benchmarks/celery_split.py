"""A universe backtest split over Celery workers: one box against 1 and 2 workers.

The same universe backtest (a five-indicator rule on every sample instrument, fees, slippage
and a stop) runs
- on one box, in this process, unsplit: once with numba on every core this process may use
  and once on one thread (the per-worker baseline);
- as a ``backtest`` job split into ``backtest.chunk`` jobs on 1 Celery worker, then on 2, each
  a separate ``signalfactory worker --concurrency 1`` process with ``NUMBA_NUM_THREADS=1`` (one
  core each, as one worker per machine would have its own).
Wall time is submit -> job succeeded (split, chunks, assembly, storing the result), the
stored result is forgotten between runs so every run computes. Every side gets the same tries
(best of ``--tries``, ``gc.collect()`` before each) after one untimed warm-up run (a fresh
worker's first job pays its imports). The split results are checked to equal the one-box
result bit for bit. Speedup = T(1 worker) / T(2 workers); efficiency = speedup / 2.

Chunks are sized at the speed the split job measures on the universe's first instruments
(``--bars-per-second`` forces one instead); the chunks' durations are printed.

    .venv/bin/python benchmarks/celery_split.py [--symbols 600] [--bars 10000]
        [--chunk-seconds 1] [--bars-per-second N] [--broker redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.split_support: the exact snapshot of a stored backtest


#: a rule with five indicators: more computing per bar than a plain crossover, so that the
#: split part (evaluating and simulating) is a larger share of the job
RULE = ("entry: rsi(close, 14) < 35 and close > sma(close, 100) and sma(close, 20) > "
        "sma(close, 50) and ema(close, 30) > ema(close, 90)\n"
        "exit: rsi(close, 14) > 65 or close < sma(close, 100)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=600)
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--chunk-seconds", type=float, default=1.0)
    parser.add_argument("--bars-per-second", type=float, default=None,
                        help="one worker's assumed speed, to size the chunks (default: the "
                             "split job measures it)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--tries", type=int, default=2)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="sf-split-bench-"))
    queue = f"sf-bench-{uuid.uuid4().hex[:8]}"
    env = {"SIGNALFACTORY_HOME": str(home), "SIGNALFACTORY_DATABASE_URL":
           f"sqlite:///{home / 'sf.db'}", "SIGNALFACTORY_BROKER_URL": args.broker,
           "SIGNALFACTORY_CELERY_QUEUE": queue, "SIGNALFACTORY_SPLIT": "always",
           "SIGNALFACTORY_SPLIT_CHUNK_SECONDS": str(args.chunk_seconds),
           "SIGNALFACTORY_LOG_LEVEL": "warning"}
    if args.bars_per_second is not None:
        env["SIGNALFACTORY_SPLIT_BARS_PER_SECOND"] = str(args.bars_per_second)
    os.environ.update(env)

    import numba
    from tests.split_support import REQUEST, forget, snapshot

    from signalfactory.bootstrap import build_platform
    from signalfactory.services.backtests import run as backtest_service
    from signalfactory.services.backtests.split import split_summary
    from signalfactory.services.jobs import registry as job_service
    from signalfactory.services.marketdata.sample import store_sample
    from signalfactory.services.strategies.catalog import ensure_builtins

    request = dataclasses.replace(REQUEST, strategy=None, rule=RULE)

    platform = build_platform(migrate_db=True)
    store_sample(platform, symbols=args.symbols, bars=args.bars, seed=7)
    with platform.database.write() as uow:
        ensure_builtins(uow)
    whole = dataclasses.replace(platform, settings=platform.settings.model_copy(
        update={"split": "never"}))
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {os.cpu_count()} CPUs, {cores} usable here, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (shared: ratios within this run "
          "count, not absolute times)")

    def one_box(threads: int) -> tuple[float, str]:
        numba.set_num_threads(threads)
        best, text = float("inf"), ""
        for attempt in range(args.tries + 1):  # the first is the warm-up
            gc.collect()
            started = time.perf_counter()
            result = backtest_service.run_backtest(whole, request)
            took = time.perf_counter() - started
            text = snapshot(platform, result.id)
            forget(platform, result.id)
            if attempt:
                best = min(best, took)
        return best, text

    box_all, reference = one_box(numba.config.NUMBA_NUM_THREADS)
    box_one, same = one_box(1)
    assert same == reference, "one thread and all threads disagree"

    workers: list[subprocess.Popen[bytes]] = []
    log = home / "workers.log"

    def start(n: int) -> None:
        full = {**os.environ, **env, "NUMBA_NUM_THREADS": "1"}
        for _ in range(n - len(workers)):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "signalfactory", "worker", "--concurrency", "1"],
                env=full, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                start_new_session=True))

    def split_run() -> tuple[float, dict[str, object]]:
        gc.collect()
        started = time.perf_counter()
        job = job_service.submit(platform, "backtest", request.to_payload())
        deadline = time.monotonic() + 600
        while not (job := job_service.get_job(platform, job.id)).terminal:
            if time.monotonic() > deadline:
                raise SystemExit(f"split run did not finish: {job}\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
        took = time.perf_counter() - started
        if job.status != "succeeded" or job.result is None:
            raise SystemExit(f"split run {job.status}: {job.error}\n{log.read_text()[-3000:]}")
        backtest_id = str(job.result["backtest_id"])
        if snapshot(platform, backtest_id) != reference:
            raise SystemExit("the split result differs from the one-box result")
        forget(platform, backtest_id)
        summary = split_summary(platform, job.id)
        if summary is None:
            raise SystemExit(f"the job ran whole: {args.symbols} x {args.bars} bars hold less "
                             f"than two chunks of {args.chunk_seconds:g} s at the speed the "
                             "split job measured; give more --symbols or --bars")
        return took, summary

    all_runs: dict[int, list[tuple[float, dict[str, object]]]] = {}

    def on_workers(n: int) -> tuple[float, dict[str, object]]:
        start(n)
        split_run()  # warm-up: the new worker's first job pays its imports
        runs = all_runs[n] = [split_run() for _ in range(args.tries)]
        return min(runs, key=lambda r: r[0])

    try:
        one, summary = on_workers(1)
        two, summary2 = on_workers(2)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        _delete_queues(args.broker, queue)
        platform.close()

    n_bars = args.symbols * args.bars
    chunk_bars = summary["bars"]
    speed = ("measured by the split job" if args.bars_per_second is None
             else f"{args.bars_per_second:,.0f} bars/s as told")
    print(f"\nuniverse backtest: {args.symbols} symbols x {args.bars} bars = {n_bars:,} bars; "
          f"chunks of at least {args.chunk_seconds:g} s at the speed {speed}")
    print(f"chunks (best run on 1 worker): {summary['chunks']}, bars each {chunk_bars}")
    print("chunk durations (a chunk job's own seconds: load, check, simulate, encode), "
          "min / median / max, every timed run:")
    for n, runs in sorted(all_runs.items()):
        for took, s in runs:
            secs = [x for x in s["seconds"] if isinstance(x, float)]  # type: ignore[attr-defined]
            bars_ = [b for b in s["bars"] if isinstance(b, int)]  # type: ignore[attr-defined]
            print(f"  {n} worker{'s' if n > 1 else ''}: {len(secs)} chunks, "
                  f"{min(secs):.2f} / {statistics.median(secs):.2f} / {max(secs):.2f} s "
                  f"({sum(bars_) / sum(secs) / 1e6:.1f} M bars/s in chunks), executions "
                  f"{s['executions']}, chunk phase {s['chunk_wall_seconds']:.2f} s, "
                  f"job {took:.2f} s")
    print(f"\n{'side':<34}{'cores':>6}{'wall s':>9}")
    print(f"{'one box, numba on all threads':<34}{numba.config.NUMBA_NUM_THREADS:>6}"
          f"{box_all:>9.2f}")
    print(f"{'one box, one thread':<34}{1:>6}{box_one:>9.2f}")
    print(f"{'split, 1 Celery worker':<34}{1:>6}{one:>9.2f}")
    print(f"{'split, 2 Celery workers':<34}{2:>6}{two:>9.2f}")
    speedup = one / two
    wall1, wall2 = float(summary["chunk_wall_seconds"]), float(summary2["chunk_wall_seconds"])  # type: ignore[arg-type]
    print(f"\nchunk phase (first chunk started .. last finished): {wall1:.2f} s on 1 worker, "
          f"{wall2:.2f} s on 2: speedup {wall1 / wall2:.2f}x, efficiency "
          f"{wall1 / wall2 / 2:.2f}")
    print(f"outside the chunk phase (split, messages, assembly, storing the result): "
          f"{one - wall1:.2f} s of {one:.2f} s on 1 worker, {two - wall2:.2f} s of {two:.2f} s "
          "on 2: the same serial work on both sides, which bounds the whole job's speedup "
          f"at {one / (one - wall1 + wall1 / 2):.2f}x (Amdahl)")
    print(f"\nsplit overhead on 1 worker vs one box on one thread: {one / box_one:.2f}x")
    print(f"speedup 1 -> 2 workers: {speedup:.2f}x, efficiency {speedup / 2:.2f} "
          f"(goal >= 0.8 where {cores} usable cores allow 2 busy workers)")
    print(f"results: split == one box, bit for bit (every run); load average now "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _delete_queues(url: str, queue: str) -> None:
    from kombu.connection import Connection

    with Connection(url, connect_timeout=3) as conn:
        for name in (queue, f"{queue}.realtime", f"{queue}.bulk"):
            conn.default_channel.queue_delete(name)


if __name__ == "__main__":
    main()
