"""What a user feels: CLI start-up and first calls, cold (fresh process) and warm, side by side.

Cold: each case starts a new Python process (``sys.executable``), so imports, the migration
check, the store's first read and any kernel load are all inside the figure. Warm: the same
command run again inside one process (imports done, the store's segment cache filled), which
is what a long-lived caller (a notebook, a test, a server) pays. References run the same way
in the same run and the ratios are printed beside them; median of ``--runs`` (best in
brackets). Between runs the OS page cache stays warm, as it does for a user, and compiled
bytecode is written once (to a scratch ``PYTHONPYCACHEPREFIX``), as after an install.

Targets (issue 15, items 1 and 2):
- ``signalfactory --help`` and ``signalfactory version`` <= 150 ms;
- ``signalfactory scan`` (500 symbols x 2,520 bars) <= 1.5x a plain TA-Lib script that reads
  the same store and computes the same five indicators (its process start included). The
  plain script imports pandas (``import talib`` and pyarrow's ``to_numpy`` do); the CLI does
  not, so a second reference line holds pandas out of the script too, and both ratios print;
- a one-symbol backtest <= 400 ms end to end;
- the first universe load in a fresh process <= 0.15 s (the warm figure beside it).

``--src`` measures another checkout's sources with this same script (before/after figures).

    .venv/bin/python benchmarks/cli_startup.py [--symbols 500] [--bars 2520] [--runs 5]
                                               [--src PATH/src]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
RULE = ("entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70 "
        "and atr(14) > 0 and close > ema(close, 50)")

# The reference: what a user would write by hand against the same store. It lists the
# registered segments with the stdlib sqlite3, maps the Arrow file, computes the five
# indicators of RULE per symbol with TA-Lib, evaluates the rule on the last bar and ranks.
PLAIN_TALIB = r"""
import sqlite3, sys
import numpy as np, pyarrow as pa, pyarrow.ipc as ipc, talib
home = sys.argv[1]
db = sqlite3.connect(home + "/signalfactory.db")
rels = [r[0] for r in db.execute(
    "select path from bar_segments where timeframe='1d' order by id")]
assert len(rels) == 1, rels
t = ipc.open_file(pa.memory_map(home + "/data/bars/" + rels[0], "r")).read_all()
inst, close, high, low = (t.column(c).to_numpy() for c in ("instrument_id", "close", "high",
                                                             "low"))
starts = np.concatenate(([0], np.flatnonzero(inst[1:] != inst[:-1]) + 1, [len(inst)]))
names = dict(db.execute("select id, symbol from instruments"))
hits = []
for a, b in zip(starts[:-1], starts[1:]):
    c, h, lo = close[a:b], high[a:b], low[a:b]
    f, s = talib.SMA(c, 10), talib.SMA(c, 30)
    rsi, atr, ema = talib.RSI(c, 14), talib.ATR(h, lo, c, 14), talib.EMA(c, 50)
    if f[-1] > s[-1] and f[-2] <= s[-2] and rsi[-1] < 70 and atr[-1] > 0 and c[-1] > ema[-1]:
        hits.append((rsi[-1], names[int(inst[a])]))
hits.sort()
print(len(starts) - 1, "instruments", len(hits), "signals", hits[:50])
"""

# The plain script with pandas held out of ``import talib`` and pyarrow (as the CLI does).
PLAIN_TALIB_NO_PANDAS = ("import sys\nsys.modules['pandas'] = sys.modules['polars'] = None\n"
                         + PLAIN_TALIB)

# Warm figures: one process runs the CLI app (or the plain script) once untimed, then times
# each further run. argv: JSON list of runs (each a list of CLI arguments, or "plain").
WARM = r"""
import contextlib, io, json, sys, time
runs = json.loads(sys.argv[1])
home = sys.argv[2]
script = sys.argv[3]
def once(argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if argv == "plain":
            sys.argv = ["plain", home]
            exec(compile(script, "plain", "exec"), {"__name__": "__main__"})
            return
        from signalfactory.cli.main import app
        try:
            app(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"{argv} exited {exc.code}") from None
times = []
for argv in runs:
    t0, c0 = time.perf_counter(), time.process_time()
    once(argv)
    times.append((time.perf_counter() - t0, time.process_time() - c0))
print(json.dumps(times[1:]))
"""

FIRST_LOAD = r"""
import time
t0 = time.perf_counter()
from signalfactory.bootstrap import build_platform
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
t_import = time.perf_counter() - t0
platform = build_platform()
d1 = Timeframe.parse("1d")
t1 = time.perf_counter(); u = load_universe(platform, d1); first = time.perf_counter() - t1
t2 = time.perf_counter(); load_universe(platform, d1); warm = time.perf_counter() - t2
print(f"{t_import:.6f} {first:.6f} {warm:.6f} {len(u.symbols)}")
platform.close()
"""

# A one-symbol run_backtest in a fresh process: small inputs run the kernels interpreted
# until numba is loaded (domain/kernels.py); then the compiled path's own first call.
FIRST_KERNEL = r"""
import sys, time
import numpy as np
t0 = time.perf_counter()
from signalfactory.domain.backtest import BacktestConfig, Signals, run_backtest
t_import = time.perf_counter() - t0
rng = np.random.default_rng(1)
c = 100 + np.cumsum(rng.normal(0, 1, 2520))
sig = Signals.build(2520, long_entry=rng.random(2520) < 0.05, long_exit=rng.random(2520) < 0.05)
def call():
    t = time.perf_counter(); run_backtest(c, c + 1, c - 1, c, sig, BacktestConfig())
    return time.perf_counter() - t
first, warm = call(), call()
interpreted = "numba" not in sys.modules  # False where the engine imports numba itself
t1 = time.perf_counter()
import signalfactory.domain.numba_setup
t_numba = time.perf_counter() - t1
first_compiled, warm_compiled = call(), call()
print(f"{t_import:.6f} {first:.6f} {warm:.6f} {t_numba:.6f} {first_compiled:.6f} "
      f"{warm_compiled:.6f} {int(interpreted)}")
"""

#: (median wall seconds, best wall seconds, median CPU seconds: user + system)
Figure = tuple[float, float, float]


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    # argv is built in this script from sys.executable and fixed arguments
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def processes(argvs: list[list[str]], env: dict[str, str]) -> Figure:
    """Wall and CPU time of one fresh process per argv (run one after another)."""
    walls, cpus = [], []
    for argv in argvs:
        before = _children_cpu()
        walls.append(run(argv, env)[0])
        cpus.append(_children_cpu() - before)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def cold(argv: list[str], env: dict[str, str], runs: int) -> Figure:
    return processes([argv] * runs, env)


def warm(runs: list[list[str] | str], env: dict[str, str], home: Path) -> Figure:
    """The timed runs inside one process (the first run is untimed)."""
    out = run([sys.executable, "-c", WARM, json.dumps(runs), str(home), PLAIN_TALIB], env)[1]
    times = json.loads(out.strip().splitlines()[-1])
    walls = [t[0] for t in times]
    return statistics.median(walls), min(walls), statistics.median(t[1] for t in times)


def ms(fig: Figure) -> str:
    return f"{fig[0] * 1000:8.1f} ({fig[1] * 1000:6.1f}) {fig[2] * 1000:7.1f}"


def verdict(value: float, target: float) -> str:
    return "MET" if value <= target else "MISSED"


COLUMNS = (f"{'':<44} {'cold: wall ms (best)':>20} {'cpu':>5} {'warm: wall ms (best)':>20} "
           f"{'cpu':>5}  target (on the cold wall time)")


def line(label: str, cold_fig: Figure, warm_fig: Figure | None, note: str = "") -> None:
    shown = ms(warm_fig) if warm_fig is not None else f"{'-':>25}"
    print(f"{label:<44} {ms(cold_fig)} {shown}  {note}")


def ratio_line(label: str, ours: tuple[Figure, Figure | None],
               ref: tuple[Figure, Figure | None], target: float | None = None) -> None:
    """Wall-time ratios (CPU-time ratios beside them: steadier on a shared machine)."""
    def pair(a: Figure | None, b: Figure | None) -> str:
        if a is None or b is None:
            return f"{'-':>25}"
        return f"{a[0] / b[0]:20.2f} {a[2] / b[2]:5.2f}"

    cold_ratio = ours[0][0] / ref[0][0]
    note = "" if target is None else f"cold <= {target}: {verdict(cold_ratio, target)}"
    print(f"{label:<44} {pair(ours[0], ref[0])} {pair(ours[1], ref[1])}  {note}")


def conditions() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / "
            f"{load[2]:.2f} (1 / 5 / 15 min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", default=SRC, help="the sources to measure (default: these)")
    args = parser.parse_args()
    py = sys.executable
    print(f"sources: {args.src}; at the start: {conditions()}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"PYTHONPATH": args.src + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "SIGNALFACTORY_HOME": str(home), "NUMBA_CACHE_DIR": str(Path(tmp) / "numba"),
                "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"), "COLUMNS": "100"}
        sf = [py, "-m", "signalfactory"]
        scan_args = ["scan", "--rule", RULE, "--top", "50", "--json"]
        run([*sf, "sample", "--symbols", str(args.symbols), "--bars", str(args.bars)], env)
        # One untimed pass of each path: numba's on-disk cache and the bytecode are written,
        # as after an install.
        run([*sf, *scan_args], env)
        run([*sf, "backtest", "--rule", RULE, "--symbol", "SAAA", "--fees", "0.0001"], env)
        run([*sf, "--help"], env)
        run([py, "-c", PLAIN_TALIB, str(home)], env)

        print(f"\nmedian of {args.runs} (best); cold: a fresh process each; warm: again in "
              "one process; cpu: median user + system ms\n")
        print(COLUMNS)
        line("python -c pass (reference)", cold([py, "-c", "pass"], env, args.runs), None)
        t_help = cold([*sf, "--help"], env, args.runs)
        w_help = warm([["--help"]] * (args.runs + 1), env, home)
        line("signalfactory --help", t_help, w_help,
             f"cold <= 150 ms: {verdict(t_help[0], .15)}")
        t_version = cold([*sf, "version"], env, args.runs)
        w_version = warm([["version"]] * (args.runs + 1), env, home)
        line("signalfactory version", t_version, w_version,
             f"cold <= 150 ms: {verdict(t_version[0], .15)}")

        print(f"\nscan, {args.symbols} symbols x {args.bars} bars, five indicators")
        t_plain = cold([py, "-c", PLAIN_TALIB, str(home)], env, args.runs)
        w_plain = warm(["plain"] * (args.runs + 1), env, home)
        line("plain TA-Lib script, same store (reference)", t_plain, w_plain)
        t_lean = cold([py, "-c", PLAIN_TALIB_NO_PANDAS, str(home)], env, args.runs)
        line("  the same, pandas held out (reference)", t_lean, None)
        t_scan = cold([*sf, *scan_args], env, args.runs)
        w_scan = warm([scan_args] * (args.runs + 1), env, home)
        line("signalfactory scan --rule ... --top 50", t_scan, w_scan)
        ratio_line("  ratio to the plain script", (t_scan, w_scan), (t_plain, w_plain), 1.5)
        ratio_line("  ratio to the plain script without pandas", (t_scan, None), (t_lean, None))

        print("\none-symbol backtest, 2,520 bars (a new fee each run: never a stored result)")
        t_bt = processes([[*sf, "backtest", "--rule", RULE, "--symbol", "SAAB",
                           "--fees", f"0.000{i + 2}"] for i in range(args.runs)], env)
        w_bt = warm([["backtest", "--rule", RULE, "--symbol", "SAAC", "--fees", f"0.00{i + 2}"]
                     for i in range(args.runs + 1)], env, home)
        line("signalfactory backtest --symbol SAAB", t_bt, w_bt,
             f"cold <= 400 ms: {verdict(t_bt[0], .4)}")

        print("\nfirst calls inside a fresh process (in-process timers)")
        loads = [[float(x) for x in run([py, "-c", FIRST_LOAD], env)[1].split()]
                 for _ in range(args.runs)]

        def med(rows: list[list[float]], i: int) -> float:
            return statistics.median(r[i] for r in rows) * 1000

        first = med(loads, 1) / 1000
        print(f"{'imports for a universe load':<44} {med(loads, 0):8.1f}")
        print(f"{'universe load, first (cold) / second (warm)':<44} {med(loads, 1):8.1f} "
              f"{'':8} {med(loads, 2):8.1f} {'':8}  cold <= 150 ms: {verdict(first, .15)}")
        kernels = [[float(x) for x in run([py, "-c", FIRST_KERNEL], env)[1].split()]
                   for _ in range(args.runs)]
        print(f"{'import of the backtest engine':<44} {med(kernels, 0):8.1f}")
        how = "interpreted" if all(r[6] for r in kernels) else "compiled"
        print(f"{f'run_backtest, 2,520 bars, {how}: 1st/2nd':<44} {med(kernels, 1):8.1f} "
              f"{'':8} {med(kernels, 2):8.1f}")
        print(f"{'import numba (numba_setup)':<44} {med(kernels, 3):8.1f}")
        print(f"{'run_backtest compiled (cache load): 1st/2nd':<44} {med(kernels, 4):8.1f} "
              f"{'':8} {med(kernels, 5):8.1f}")
        print(f"\nat the end: {conditions()}")


if __name__ == "__main__":
    main()
