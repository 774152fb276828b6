"""Backtest speed against vectorbt and backtesting.py, side by side in one run.

    .venv/bin/python benchmarks/backtest.py [--quick] [--wrong-engine [fee|last-trade]]

Cases (the same bars and settings on both sides; the paths are in `_backtest_paths.py`):

a. one symbol, 1,000,000 bars: SMA(10)/SMA(30) signals + simulation + final metrics
   (ours: every metric of `compute_metrics`; vectorbt: MA.run + crossed + from_signals +
   total_return);
b. a universe of 500 x 2,520 bars in one call (ours: `run_universe`, signals per chunk with
   one TA-Lib call per line; vectorbt: the same pipeline on a 2,520 x 500 frame);
c. the sweep fast 5..50 x slow 10..200 step 5 (345 backtests) on 100,000 bars (ours:
   `CrossoverSweeper`; vectorbt: MA.run with run_unique, crossed, from_signals);
d. backtesting.py's SMA(10)/SMA(30) example on GOOG (whole units) against ours.

How it is kept honest:
- agreement first, and checks that can fail: for every case, each backtest's trade count must
  be equal on both sides and its final equity equal within 1e-9 relative at fee 0 and within
  1e-6 relative at the fee of the timed run (0.1 %; 0.2 % on GOOG; 0.01 % on the
  1,000,000-bar single case, where 0.1 % bankrupts both engines and agreement would mean
  nothing: fees compound over thousands of trades). Any disagreement prints what differs
  and exits 1 before timing.
  ``--wrong-engine`` makes our engine charge 0.01 % more fee (or ``--wrong-engine last-trade``
  reports one trade fewer for each of our backtests) to show the checks catch it;
- warm figures: one warm-up call per side, then the same number of tries for both sides with
  ``gc.collect()`` before every try; best and median are printed;
- cold figures: each side's path in a fresh process (interpreter start, imports, loading the
  bars from an .npz, first call and JIT/caches included), the same number of tries each;
- cores: the column says how many each side used; our parallel kernels (b, c) are also timed
  with numba limited to one thread, like for like with the single-threaded references;
- every reference figure is measured in this run; nothing is compared with a stored number.
The machine may be shared: the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _backtest_paths as paths  # first: it sets OMP_WAIT_POLICY before numba starts
import numba
import numpy as np

FEE = 0.001
GOOG_FEE = 0.002
RTOL_FEE0 = 1e-9
RTOL_FEE = 1e-6


@dataclass(frozen=True)
class Timing:
    best: float
    median: float


def warm(fn: Callable[[], Any], tries: int) -> Timing:
    """One warm-up call, then ``tries`` timed calls, each after a full collection."""
    fn()
    times = []
    for _ in range(tries):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(min(times), statistics.median(times))


def cold(case: str, side: str, npz: Path, fee: float, tries: int,
         expect: paths.Outcome) -> Timing:
    """Wall time of a fresh process running one side's path once; its result is checked."""
    times = []
    for _ in range(tries):
        t0 = time.perf_counter()
        # our own interpreter and script, arguments built here: nothing untrusted
        done = subprocess.run(  # noqa: S603
            [sys.executable, paths.__file__, case, side, str(npz), str(fee)],
            capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            sys.exit(f"cold run {case}/{side} failed:\n{done.stderr}")
        count, final = done.stdout.split()
        if int(count) != int(expect.n_trades.sum()) or not np.isclose(
                float(final), float(expect.final_equity.sum()), rtol=RTOL_FEE, atol=0):
            sys.exit(f"cold run {case}/{side} disagrees with the warm run: {count} trades, "
                     f"final equity {final}")
    return Timing(min(times), statistics.median(times))


def agree(label: str, ours: paths.Outcome, ref: paths.Outcome, rtol: float) -> list[str]:
    """The differences between the sides ([] when they agree), and one line saying so."""
    problems = []
    if ours.n_trades.shape != ref.n_trades.shape:
        problems.append(f"{label}: {ours.n_trades.size} backtests vs {ref.n_trades.size}")
    else:
        bad = np.flatnonzero(ours.n_trades != ref.n_trades)
        if bad.size:
            i = int(bad[0])
            problems.append(f"{label}: trade counts differ in {bad.size} of "
                            f"{ours.n_trades.size} backtests (first: #{i} ours "
                            f"{ours.n_trades[i]} vs ref {ref.n_trades[i]})")
        rel = np.abs(ours.final_equity - ref.final_equity) / np.abs(ref.final_equity)
        worst = int(np.argmax(rel))
        if not rel[worst] <= rtol:  # NaN fails too
            problems.append(f"{label}: final equity differs by {rel[worst]:.3g} relative "
                            f"(allowed {rtol:g}) in backtest #{worst}: ours "
                            f"{ours.final_equity[worst]:.10g} vs ref "
                            f"{ref.final_equity[worst]:.10g}")
    verdict = "FAILED" if problems else "ok"
    print(f"   check {label:<16} {ours.n_trades.size:>4} backtests, "
          f"{int(ref.n_trades.sum()):>7,} trades, final equity (sum) "
          f"{float(ref.final_equity.sum()):>16,.6f}  {verdict}")
    return problems


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    fee: float
    data: paths.Data
    ours: Callable[[float, bool], paths.Outcome]
    ref: Callable[[float], paths.Outcome]
    ref_name: str
    parallel: bool  # ours runs a numba parallel kernel
    amount: float
    unit: str
    target: float | None


def build_cases(quick: bool) -> list[Case]:
    import backtesting
    import vectorbt

    vbt = f"vectorbt {vectorbt.__version__}"
    n_single, n_inst, n_sweep = (100_000, 50, 10_000) if quick else (1_000_000, 500, 100_000)
    single = paths.data_single(n_single)
    uni = paths.data_universe(n_inst, 2_520)
    uni_ours, uni_ref = paths.ours_universe_input(uni), paths.ref_universe_input(uni)
    sweep = paths.data_sweep(n_sweep)
    goog = paths.data_goog()
    goog_ref = paths.ref_goog_input(goog)
    n_pairs = len(paths.sweep_params())
    # ~19,000 round trips on 1,000,000 bars at 0.1 % leave both engines bankrupt (final
    # equity ~1e-13 against ~1e-7: agreement there says nothing, and the references stop
    # trading dust). One tenth of the fee keeps the same compounding as the quick size.
    single_fee = FEE * min(1.0, 100_000 / n_single)
    return [
        Case("single", f"a. one symbol, {n_single:,} bars", single_fee, single,
             lambda f, w: paths.ours_single(single, f, w),
             lambda f: paths.ref_single(single, f), vbt, False, n_single, "bars/s", 10),
        Case("universe", f"b. universe {n_inst} x 2,520 in one call", FEE, uni,
             lambda f, w: paths.ours_universe(uni_ours, f, w),
             lambda f: paths.ref_universe(uni_ref, f), vbt, True, n_inst * 2_520, "bars/s",
             10),
        Case("sweep", f"c. sweep {n_pairs} backtests on {n_sweep:,} bars", FEE, sweep,
             lambda f, w: paths.ours_sweep(sweep, f, w),
             lambda f: paths.ref_sweep(sweep, f), vbt, True, n_pairs, "backtests/s", 10),
        Case("goog", f"d. GOOG SMA(10/30), {len(goog['close']):,} bars", GOOG_FEE, goog,
             lambda f, w: paths.ours_goog(goog, f, w),
             lambda f: paths.ref_goog(goog_ref, f), f"backtesting.py {backtesting.__version__}",
             False, 1, "backtests/s", None),
    ]


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def row(side: str, cores: int, w: Timing, c: Timing | None, case: Case) -> None:
    rate = case.amount / w.best
    print(f"   {side:<32} {cores:>5}  {fmt_ms(w.best):>12} {fmt_ms(w.median):>12} "
          f"{fmt_ms(c.best) if c else '-':>12}  {rate:>14,.0f} {case.unit}")


def bench(case: Case, tries: int, cold_tries: int, tmp: Path, threads: int) -> None:
    ours_out = case.ours(case.fee, False)
    ref_out = case.ref(case.fee)
    print(f"\n{case.title}, fee {case.fee:.1%}: {tries} warm tries and {cold_tries} cold "
          "each side, gc.collect() before every warm try")
    print(f"   {'side':<32} {'cores':>5}  {'warm best':>12} {'warm median':>12} "
          f"{'cold':>12}  {'throughput (warm best)':>22}")
    w_ours = warm(lambda: case.ours(case.fee, False), tries)
    w_ref = warm(lambda: case.ref(case.fee), tries)
    w_one: Timing | None = None
    if case.parallel:
        numba.set_num_threads(1)
        try:
            w_one = warm(lambda: case.ours(case.fee, False), tries)
        finally:
            numba.set_num_threads(threads)
    npz = tmp / f"{case.key}.npz"
    np.savez(npz, **case.data)
    c_ours = cold(case.key, "ours", npz, case.fee, cold_tries, ours_out)
    c_ref = cold(case.key, "ref", npz, case.fee, cold_tries, ref_out)
    row("ours" + (" (numba parallel)" if case.parallel else ""),
        threads if case.parallel else 1, w_ours, c_ours, case)
    if w_one is not None:
        row("ours, numba limited to 1 thread", 1, w_one, None, case)
    row(case.ref_name, 1, w_ref, c_ref, case)
    ratio = w_ref.best / w_ours.best
    verdict = "" if case.target is None else (
        f" (target {case.target:g}x: {'ok' if ratio >= case.target else 'MISSED'})")
    like = f", 1 core vs 1 core {w_ref.best / w_one.best:.1f}x" if w_one else ""
    print(f"   ratio ref/ours: warm best {ratio:.1f}x{verdict}{like}, warm median "
          f"{w_ref.median / w_ours.median:.1f}x, cold {c_ref.best / c_ours.best:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer tries")
    parser.add_argument("--wrong-engine", nargs="?", const="fee", choices=("fee", "last-trade"),
                        help=f"break ours on purpose: 'fee' charges {paths.WRONG_FEE_DELTA:.2%} "
                             "more fee per side, 'last-trade' reports one trade fewer per "
                             "backtest; the agreement checks must fail (exit 1)")
    args = parser.parse_args()
    threads = numba.get_num_threads()
    load = os.getloadavg()
    print(f"cores {os.cpu_count()}, numba threads {threads}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    cases = build_cases(args.quick)
    print("agreement (trade counts equal; final equity within "
          f"{RTOL_FEE0:g} relative at fee 0, {RTOL_FEE:g} at the timed fee)"
          + (f" -- WRONG ENGINE on purpose ({args.wrong_engine})" if args.wrong_engine else ""))
    problems: list[str] = []
    for case in cases:
        for fee, rtol in ((0.0, RTOL_FEE0), (case.fee, RTOL_FEE)):
            ours = case.ours(fee, args.wrong_engine == "fee")
            if args.wrong_engine == "last-trade":
                ours = paths.drop_last_trade(ours)
            problems += agree(f"{case.key} fee {fee:.1%}", ours, case.ref(fee), rtol)
    if problems:
        print("\nCHECK FAILED: our engine disagrees with the reference; no timing is done.")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    tries, cold_tries = (3, 1) if args.quick else (5, 1)
    t0 = time.perf_counter()
    base = subprocess.run([sys.executable, "-c", "import numpy"], check=True)
    t_base = time.perf_counter() - t0
    print(f"\nfor scale: a fresh interpreter importing numpy takes {fmt_ms(t_base)} "
          f"(returncode {base.returncode})")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            bench(case, 3 if case.key == "sweep" and not args.quick else tries, cold_tries,
                  Path(tmp), threads)
    load = os.getloadavg()
    print(f"\nevery reference figure above was measured in this run; load average at the end "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
