"""An uploaded Python strategy in the sandbox vs. the same strategy in-process.

The strategy is an SMA cross written in numpy (the kind a user uploads), over a synthetic
universe (default 500 symbols x 2,520 daily bars = 1.26 M bars). The reference runs the same
source in this process, loaded as a trusted plug-in would be. Printed side by side:

- a full evaluation (``evaluate``: bars in, entry/exit/score arrays out), and the platform's
  whole path (``evaluate`` then ``signal_records``: what ``signals run`` and scans do), with
  the sandboxed/in-process ratio of each (goal: at most 1.5x);
- the warm per-call overhead: a strategy that does nothing, on one symbol of 10 bars,
  sandboxed minus in-process, median of many calls (goal: at most 1 ms);
- the start of a fresh sandbox: fork from the template, isolate (namespace, empty root,
  unprivileged user, limits, audit hook) and load the program (goal: at most 100 ms); and,
  once per pool, the template's own start (importing numpy, pandas, TA-Lib).

Runs alternate (in-process, sandboxed, ...) after a warm-up of each; the best of --repeat is
kept, as wall time and as CPU time (for the sandbox: this process's plus the worker's, as
the worker reports it): on a shared, busy machine CPU time is the steadier figure.

    .venv/bin/python benchmarks/sandbox.py [--symbols 500] [--bars 2520] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from signalfactory.adapters.sandbox.pool import ProcessSandbox
from signalfactory.adapters.strategies.loading import load_strategy
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.sandbox import SandboxLimits, SandboxProgram
from signalfactory.domain.strategies import Strategy, signal_records

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rules_eval import synthetic_universe

SMA_CROSS = '''\
import numpy as np
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.strategies import PythonStrategy


def sma(x, offsets, n):
    sums = np.concatenate(([0.0], np.cumsum(x)))
    out = np.full(x.shape[0], np.nan)
    out[n - 1:] = (sums[n:] - sums[:-n]) / n
    start = np.repeat(offsets[:-1], np.diff(offsets))
    out[np.arange(x.shape[0]) - start < n - 1] = np.nan
    return out


class SmaCross(PythonStrategy):
    name = "sma_cross_py"
    defaults = {"fast": 10, "slow": 30}

    @property
    def required_lookback(self):
        return int(self.parameters["slow"])

    def evaluate(self, universe):
        fast = sma(universe.close, universe.offsets, int(self.parameters["fast"]))
        slow = sma(universe.close, universe.offsets, int(self.parameters["slow"]))
        gap = fast - slow
        before = np.empty_like(gap)
        before[1:] = gap[:-1]
        before[universe.offsets[:-1]] = np.nan
        with np.errstate(invalid="ignore"):
            entry = (gap > 0) & (before <= 0)
            exit = (gap < 0) & (before >= 0)
        return Evaluation.from_arrays(universe, entry=entry, exit=exit,
                                      score=np.abs(gap) / universe.close,
                                      values={"fast": fast, "slow": slow},
                                      lookback=self.required_lookback)


class Nothing(PythonStrategy):
    name = "nothing"

    def evaluate(self, universe):
        return Evaluation.from_arrays(universe, entry=np.zeros(universe.close.shape[0], bool))
'''


Timing = tuple[float, float]  # (wall, cpu) seconds


def once(fn: Callable[[], object], other_cpu: Callable[[], float]) -> Timing:
    gc.collect()
    cpu, other, start = time.process_time(), other_cpu(), time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu + other_cpu() - other


def alternate(a: Callable[[], object], b: Callable[[], object], b_cpu: Callable[[], float],
              repeat: int) -> tuple[Timing, Timing]:
    """Best (wall, cpu) of ``a`` (in-process) and ``b`` (sandboxed, whose worker's CPU
    ``b_cpu`` reads), alternating."""
    a()
    b()
    best_a = best_b = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = once(a, lambda: 0.0)
        best_a = (min(best_a[0], wall), min(best_a[1], cpu))
        wall, cpu = once(b, b_cpu)
        best_b = (min(best_b[0], wall), min(best_b[1], cpu))
    return best_a, best_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="calls for the overhead")
    parser.add_argument("--fresh", type=int, default=10, help="fresh workers to start")
    args = parser.parse_args()

    universe = synthetic_universe(args.symbols, args.bars)
    tiny_close = np.linspace(10.0, 11.0, 10)
    tiny = BarUniverse.from_series([BarSeries("T", np.arange(10, dtype=np.int64), tiny_close,
                                              tiny_close, tiny_close, tiny_close, tiny_close)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "uploaded.py"
        path.write_text(SMA_CROSS)
        in_process: Strategy = load_strategy(f"{path}:SmaCross")
        nothing: Strategy = load_strategy(f"{path}:Nothing")
    sandbox = ProcessSandbox(SandboxLimits(cpu_seconds=120, memory_mb=8192,
                                           wall_seconds=300), pool_size=2)
    program = SandboxProgram(SMA_CROSS, "SmaCross")
    try:
        template = sandbox.warm_up()
        fresh = []
        for i in range(args.fresh):
            sandbox.load(SandboxProgram(SMA_CROSS, "SmaCross", {"fast": 2 + i}))
            fresh.append(sandbox.last_fresh_seconds)
        isolation = ", ".join(k for k, v in sandbox.isolation.items() if v) or "none"

        n = universe.n_bars
        print(f"SMA cross over {args.symbols} symbols x {args.bars} bars ({n:,} bars), "
              f"best of {args.repeat}")
        def worker_cpu() -> float:  # what the program's idle worker reports it has used
            return sum(w.cpu for w in sandbox._idle.get(program.key, []))

        ev_local, ev_box = alternate(lambda: in_process.evaluate(universe),
                                     lambda: sandbox.evaluate(program, universe), worker_cpu,
                                     args.repeat)
        signals_local, signals_box = alternate(
            lambda: signal_records(in_process.evaluate(universe)),
            lambda: signal_records(sandbox.evaluate(program, universe).evaluation),
            worker_cpu, args.repeat)
        found = len(signal_records(sandbox.evaluate(program, universe).evaluation))
        expected = len(signal_records(in_process.evaluate(universe)))
        assert found == expected, (found, expected)

        empty = SandboxProgram(SMA_CROSS, "Nothing")
        sandbox.evaluate(empty, tiny)
        local_calls, box_calls = [], []
        for _ in range(args.calls):
            start = time.perf_counter()
            nothing.evaluate(tiny)
            local_calls.append(time.perf_counter() - start)
            start = time.perf_counter()
            sandbox.evaluate(empty, tiny)
            box_calls.append(time.perf_counter() - start)
        overhead = statistics.median(box_calls) - statistics.median(local_calls)
    finally:
        sandbox.close()

    print(f"{'':28}{'wall: in-process':>17}{'sandboxed':>11}{'ratio':>7}"
          f"{'CPU: in-process':>17}{'sandboxed':>11}{'ratio':>7}")
    for label, (local, box) in (("evaluate", (ev_local, ev_box)),
                                ("evaluate + signal records", (signals_local, signals_box))):
        print(f"{label:28}{local[0] * 1e3:>15.1f}ms{box[0] * 1e3:>9.1f}ms"
              f"{box[0] / local[0]:>6.2f}x{local[1] * 1e3:>15.1f}ms{box[1] * 1e3:>9.1f}ms"
              f"{box[1] / local[1]:>6.2f}x")
    print(f"({found:,} signals, the same both ways)")
    print(f"warm per-call overhead: {overhead * 1e3:.3f} ms (median of {args.calls} calls: "
          f"sandboxed {statistics.median(box_calls) * 1e3:.3f} ms, in-process "
          f"{statistics.median(local_calls) * 1e3:.3f} ms)")
    print(f"fresh sandbox start (fork, isolate, load): best {min(fresh) * 1e3:.1f} ms, median "
          f"{statistics.median(fresh) * 1e3:.1f} ms of {len(fresh)}; isolation: {isolation}")
    print(f"template process start (once per pool: numpy, pandas, TA-Lib preloaded): "
          f"{template:.2f} s")


if __name__ == "__main__":
    main()
