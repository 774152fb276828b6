"""PostgreSQL universe load and scan against raw TA-Lib scripts (used by ``pg_bar_store.py``).

A sample universe is stored through the platform on a scratch PostgreSQL database. Then, in
one run and with the same tries (best of ``TRIES``, ``gc.collect()`` before each) on every
side:

- universe load (``load_universe``): warm in this process, and cold in fresh processes (the
  first load of a process, and the whole process: start, imports, platform, load);
- the scan (``run_scan``: load, evaluate a five-indicator rule, rank, store): warm and cold;
- the references: a raw TA-Lib script that reads the same bars from PostgreSQL with psycopg
  (``fetchall`` into numpy, one ``ORDER BY instrument_id, ts`` query) and computes the same
  five indicators symbol by symbol, warm and cold; and raw TA-Lib on arrays already in memory
  (the reference ``scan.py`` compares against).

Where the database has packed bars (``bar_packs``), the load and scan are measured a second
time from the row table in the same run (the packs marked stale, as after a write around the
store, which sends reads to the rows): the before/after of the packs under the same load.

Cores: TA-Lib runs on one core; the scan evaluates on one core, its load may stream
partitions over two connections (server processes on the same two cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import talib
from _common import header, timed

from signalfactory.adapters.storage.tables import DEFAULT_TENANT_ID
from signalfactory.bootstrap import build_platform
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.scans.scan import ScanRequest, run_scan
from signalfactory.settings import load_settings

RULE = ("entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70 "
        "and atr(14) > 0 and close > ema(close, 50)")
TRIES = 3

# A fresh process: build the platform, load the universe once (argv: home, url, what).
COLD_OURS = r"""
import json, sys, time
t0 = time.perf_counter()
from signalfactory.adapters.storage.tables import DEFAULT_TENANT_ID
from signalfactory.bootstrap import build_platform
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.scans.scan import ScanRequest, run_scan
from signalfactory.settings import load_settings
home, url, what, rule = sys.argv[1:5]
platform = build_platform(load_settings(home=home, database_url=url), migrate_db=False)
try:
    t1 = time.perf_counter()
    if what == "load":
        n = len(load_universe(platform, Timeframe.parse("1d")).symbols)
    else:
        n = run_scan(platform, ScanRequest(tenant_id=DEFAULT_TENANT_ID, rule=rule,
                                           top=50)).instruments
    t2 = time.perf_counter()
finally:
    platform.close()
print(json.dumps({"n": n, "work": t2 - t1, "setup": t1 - t0}))
"""

# The reference a user would write: psycopg, one ordered query, TA-Lib per symbol.
TALIB_FROM_PG = r"""
import sys, numpy as np, psycopg, talib
def run(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT instrument_id, high, low, close FROM bars "
                            "WHERE timeframe = '1d' ORDER BY instrument_id, ts").fetchall()
    data = np.array(rows, dtype=np.float64)
    ids = data[:, 0]
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [len(ids)]))
    high, low, close = (np.ascontiguousarray(data[:, k]) for k in (1, 2, 3))
    for a, b in zip(bounds[:-1], bounds[1:]):
        c, h, lo = close[a:b], high[a:b], low[a:b]
        talib.SMA(c, 10); talib.SMA(c, 30); talib.RSI(c, 14); talib.ATR(h, lo, c, 14)
        talib.EMA(c, 50)
    return len(bounds) - 1
if __name__ == "__main__":
    print(run(sys.argv[1]))
"""


def _cold(code: str, *args: str) -> tuple[float, str]:
    """Wall time and output of a fresh interpreter running ``code``."""
    t0 = time.perf_counter()
    # our own interpreter and code, arguments built here: nothing untrusted
    out = subprocess.run([sys.executable, "-c", code, *args], check=True,  # noqa: S603
                         capture_output=True, text=True).stdout
    return time.perf_counter() - t0, out


def _best_cold(code: str, *args: str) -> tuple[float, list[str]]:
    runs = [_cold(code, *args) for _ in range(TRIES)]
    return min(wall for wall, _out in runs), [out for _wall, out in runs]


def run(url: str, symbols: int, bars: int) -> dict[str, float]:
    """Store the sample universe in the (empty, scratch) database at ``url`` and measure."""
    psycopg_url = url.replace("postgresql+psycopg://", "postgresql://")
    namespace: dict[str, object] = {}
    exec(TALIB_FROM_PG, namespace)  # noqa: S102 - our own constant, the same code run cold
    talib_from_pg: Callable[[str], int] = namespace["run"]  # type: ignore[assignment]
    d1 = Timeframe.parse("1d")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        platform = build_platform(load_settings(home=home, database_url=url), migrate_db=True)
        try:
            start = time.perf_counter()
            store_sample(platform, symbols=symbols, bars=bars, seed=5)
            out["ingest_s"] = time.perf_counter() - start
            with psycopg.connect(psycopg_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # as autovacuum leaves a running system
                packed = conn.execute("SELECT to_regclass('bar_packs_stale') IS NOT NULL"
                                      ).fetchone() == (True,)
            universe = load_universe(platform, d1)
            arrays = [(s.high.copy(), s.low.copy(), s.close.copy()) for s in universe]

            def in_memory() -> None:
                for h, lo, c in arrays:
                    talib.SMA(c, 10)
                    talib.SMA(c, 30)
                    talib.RSI(c, 14)
                    talib.ATR(h, lo, c, 14)
                    talib.EMA(c, 50)

            out["talib_memory_s"], _ = timed(in_memory, repeat=TRIES)
            out["talib_pg_warm_s"], n = timed(lambda: talib_from_pg(psycopg_url), repeat=TRIES)
            assert n == symbols, f"the reference saw {n} symbols"
            out["load_warm_s"], got = timed(lambda: load_universe(platform, d1), repeat=TRIES)
            assert len(got.symbols) == symbols
            request = ScanRequest(tenant_id=DEFAULT_TENANT_ID, rule=RULE, top=50)
            out["scan_warm_s"], result = timed(lambda: run_scan(platform, request),
                                               repeat=TRIES)
            assert result.instruments == symbols
        finally:
            platform.close()
        wall, outs = _best_cold(COLD_OURS, str(home), url, "load", RULE)
        out["load_cold_process_s"] = wall
        out["load_cold_first_s"] = min(json.loads(o)["work"] for o in outs)
        out["cold_setup_s"] = min(json.loads(o)["setup"] for o in outs)
        wall, outs = _best_cold(COLD_OURS, str(home), url, "scan", RULE)
        out["scan_cold_process_s"] = wall
        out["scan_cold_first_s"] = min(json.loads(o)["work"] for o in outs)
        out["talib_pg_cold_process_s"], _ = _best_cold(TALIB_FROM_PG, psycopg_url)
        if packed:
            _from_rows(out, home, url, psycopg_url, d1, request)
    _print(out, symbols, bars)
    return out


def _from_rows(out: dict[str, float], home: Path, url: str, psycopg_url: str,
               d1: Timeframe, request: ScanRequest) -> None:
    """The same load and scan read from the row table (packs marked stale meanwhile)."""
    with psycopg.connect(psycopg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO bar_packs_stale DEFAULT VALUES")
    try:
        platform = build_platform(load_settings(home=home, database_url=url), migrate_db=False)
        try:
            out["rows_load_warm_s"], _ = timed(lambda: load_universe(platform, d1),
                                               repeat=TRIES)
            out["rows_scan_warm_s"], _ = timed(lambda: run_scan(platform, request),
                                               repeat=TRIES)
        finally:
            platform.close()
        wall, outs = _best_cold(COLD_OURS, str(home), url, "load", RULE)
        out["rows_load_cold_process_s"] = wall
        out["rows_load_cold_first_s"] = min(json.loads(o)["work"] for o in outs)
        wall, outs = _best_cold(COLD_OURS, str(home), url, "scan", RULE)
        out["rows_scan_cold_process_s"] = wall
    finally:
        with psycopg.connect(psycopg_url, autocommit=True) as conn:
            conn.execute("DELETE FROM bar_packs_stale")


def _print(out: dict[str, float], symbols: int, bars: int) -> None:
    header(f"PostgreSQL universe load and scan: {symbols:,} symbols x {bars:,} daily bars; best "
           f"of {TRIES} each side, gc.collect() before each; TA-Lib 1 core, scan evaluation "
           "1 core (its load may use two connections)")
    rows = [
        ("sample ingest through the platform", out["ingest_s"]),
        ("universe load, warm process", out["load_warm_s"]),
        ("universe load, first in a fresh process", out["load_cold_first_s"]),
        ("fresh process: start + platform + load", out["load_cold_process_s"]),
        ("  of which imports + platform (not the load)", out["cold_setup_s"]),
        ("scan (load, evaluate, rank, store), warm", out["scan_warm_s"]),
        ("scan, first in a fresh process", out["scan_cold_first_s"]),
        ("fresh process: start + platform + scan", out["scan_cold_process_s"]),
        ("raw TA-Lib, psycopg fetchall from PostgreSQL, warm", out["talib_pg_warm_s"]),
        ("raw TA-Lib script from PostgreSQL, fresh process", out["talib_pg_cold_process_s"]),
        ("raw TA-Lib on in-memory arrays", out["talib_memory_s"]),
    ]
    if "rows_load_warm_s" in out:
        rows += [
            ("from the row table: universe load, warm", out["rows_load_warm_s"]),
            ("from the row table: load, first in a fresh process", out["rows_load_cold_first_s"]),
            ("from the row table: fresh process + load", out["rows_load_cold_process_s"]),
            ("from the row table: scan, warm", out["rows_scan_warm_s"]),
            ("from the row table: fresh process + scan", out["rows_scan_cold_process_s"]),
        ]
    for label, value in rows:
        print(f"{label:<52} {value:8.3f} s")
    warm = out["scan_warm_s"] / out["talib_pg_warm_s"]
    cold = out["scan_cold_process_s"] / out["talib_pg_cold_process_s"]
    load_met = max(out["load_warm_s"], out["load_cold_first_s"]) <= 1.5
    print(f"ratio scan / TA-Lib-from-PostgreSQL, warm           {warm:8.2f}  "
          f"(target <= 4: {'MET' if warm <= 4 else 'MISSED'})")
    print(f"ratio scan / TA-Lib-from-PostgreSQL, fresh processes {cold:8.2f}  "
          f"(target <= 4: {'MET' if cold <= 4 else 'MISSED'})")
    print(f"ratio scan / TA-Lib on in-memory arrays, warm        "
          f"{out['scan_warm_s'] / out['talib_memory_s']:8.2f}")
    print(f"universe load warm and first-in-process <= 1.5 s: {'MET' if load_met else 'MISSED'}")
    if "rows_load_warm_s" in out:
        print(f"packs vs rows, same run: load warm "
              f"{out['rows_load_warm_s'] / out['load_warm_s']:.1f}x, first load in a fresh process "
              f"{out['rows_load_cold_first_s'] / out['load_cold_first_s']:.1f}x, scan warm "
              f"{out['rows_scan_warm_s'] / out['scan_warm_s']:.1f}x faster; row-table scan / "
              f"TA-Lib in memory {out['rows_scan_warm_s'] / out['talib_memory_s']:.1f}")
    out["ratio_scan_talib_pg_warm"] = warm
    out["ratio_scan_talib_pg_cold"] = cold
