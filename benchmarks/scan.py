"""End-to-end scan speed against raw TA-Lib, on the embedded default and on PostgreSQL.

A scan of 5,000 symbols x 2,520 daily bars from the store, with a rule that uses five
indicators, is timed end to end (load from the store, evaluate over the universe, rank,
store the scan). In the same run, raw TA-Lib computes the same five indicators on in-memory
arrays, one symbol at a time. Target: scan <= 2x raw TA-Lib on the embedded default.

Both sides get the same tries (3) with ``gc.collect()`` before each, and both are measured in
this run. Warm figures reuse this process (imports done, the store's mapped-segment cache
warm); cold figures start a fresh process per side: the scan builds its platform on the same
store and scans once, the reference imports numpy + TA-Lib, loads the same bars from an .npz
and computes the five indicators once (process start and imports included on both sides).

    .venv/bin/python benchmarks/scan.py [--symbols 5000] [--bars 2520] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import talib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, timed

from signalfactory.adapters.storage.tables import DEFAULT_TENANT_ID
from signalfactory.bootstrap import build_platform
from signalfactory.domain.rules import check_rule, evaluate
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.scans.scan import ScanRequest, run_scan
from signalfactory.settings import load_settings

RULE = ("entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70 "
        "and atr(14) > 0 and close > ema(close, 50)")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TRIES = 3

# A fresh process scanning the store once (argv: home, database url or "", rule).
COLD_SCAN = r"""
import sys
from signalfactory.adapters.storage.tables import DEFAULT_TENANT_ID
from signalfactory.bootstrap import build_platform
from signalfactory.services.scans.scan import ScanRequest, run_scan
from signalfactory.settings import load_settings
home, url, rule = sys.argv[1:4]
platform = build_platform(load_settings(home=home, **({"database_url": url} if url else {})),
                          migrate_db=False)
try:
    print(run_scan(platform, ScanRequest(tenant_id=DEFAULT_TENANT_ID, rule=rule, top=50))
          .instruments)
finally:
    platform.close()
"""

# The reference in a fresh process: the same bars from an .npz, five indicators per symbol.
COLD_TALIB = r"""
import sys
import numpy as np, talib
with np.load(sys.argv[1]) as z:
    offsets, close, high, low = z["offsets"], z["close"], z["high"], z["low"]
for a, b in zip(offsets[:-1], offsets[1:]):
    c, h, lo = close[a:b], high[a:b], low[a:b]
    talib.SMA(c, 10); talib.SMA(c, 30); talib.RSI(c, 14); talib.ATR(h, lo, c, 14)
    talib.EMA(c, 50)
print(len(offsets) - 1)
"""


def cold(code: str, *args: str) -> float:
    """Wall time of a fresh interpreter running ``code`` (imports and first calls included)."""
    t0 = time.perf_counter()
    # our own interpreter and code, arguments built here: nothing untrusted
    subprocess.run([sys.executable, "-c", code, *args], check=True,  # noqa: S603
                   capture_output=True)
    return time.perf_counter() - t0


def raw_talib(universe: object) -> float:
    def run() -> None:
        for s in universe:  # type: ignore[attr-defined]
            talib.SMA(s.close, 10)
            talib.SMA(s.close, 30)
            talib.RSI(s.close, 14)
            talib.ATR(s.high, s.low, s.close, 14)
            talib.EMA(s.close, 50)

    return timed(run, repeat=TRIES)[0]


def bench(label: str, url: str | None, home: Path, symbols: int, bars: int) -> float:
    overrides = {"home": home} | ({"database_url": url} if url else {})
    platform = build_platform(load_settings(**overrides), migrate_db=True)
    try:
        store_sample(platform, symbols=symbols, bars=bars, seed=5)
        d1 = Timeframe.parse("1d")
        universe = load_universe(platform, d1)
        universe = type(universe)(**{f: (getattr(universe, f).copy() if hasattr(
            getattr(universe, f), "copy") else getattr(universe, f))
            for f in universe.__dataclass_fields__})
        t_raw = raw_talib(universe)
        rule = check_rule(RULE)
        t_eval, _ = timed(lambda: evaluate(rule, universe), repeat=TRIES)
        t_load, _ = timed(lambda: load_universe(platform, d1), repeat=TRIES)
        request = ScanRequest(tenant_id=DEFAULT_TENANT_ID, rule=RULE, top=50)
        t_scan, result = timed(lambda: run_scan(platform, request), repeat=TRIES)
        assert result.instruments == symbols
        npz = home / "universe.npz"
        np.savez(npz, offsets=universe.offsets, close=universe.close, high=universe.high,
                 low=universe.low)
    finally:
        platform.close()
    # cold: the same number of fresh processes per side, best of them
    c_scan = min(cold(COLD_SCAN, str(home), url or "", RULE) for _ in range(TRIES))
    c_raw = min(cold(COLD_TALIB, str(npz)) for _ in range(TRIES))
    cores = ("raw TA-Lib 1 core; scan 1 core" if url is None else
             "raw TA-Lib 1 core; scan: evaluation 1 core, the load reads partitions over "
             "several connections (server processes on the same cores)")
    header(f"{label}: {symbols} symbols x {bars} bars, rule with five indicators; best of "
           f"{TRIES} each side; {cores}")
    print(f"raw TA-Lib, five indicators, in-memory arrays : {t_raw:.3f} s")
    print(f"  of the scan: load from store                : {t_load:.3f} s")
    print(f"  of the scan: evaluate the rule over universe: {t_eval:.3f} s")
    print(f"end-to-end scan (load, evaluate, rank, store) : {t_scan:.3f} s")
    ratio = t_scan / t_raw
    print(f"ratio scan / raw TA-Lib, warm process          : {ratio:.2f}  "
          f"(target <= 2.0: {'MET' if ratio <= 2 else 'MISSED'})")
    print(f"cold, fresh process: scan {c_scan:.3f} s, raw TA-Lib from an .npz {c_raw:.3f} s, "
          f"ratio {c_scan / c_raw:.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("embedded (SQLite + columnar)", None, Path(tmp) / "emb", args.symbols, args.bars)
        if not args.skip_postgres:
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text("DROP DATABASE IF EXISTS sf_bench_scan WITH (FORCE)"))
                conn.execute(sa.text("CREATE DATABASE sf_bench_scan"))
            try:
                bench("PostgreSQL", PG_ADMIN.rsplit("/", 1)[0] + "/sf_bench_scan",
                      Path(tmp) / "pg", args.symbols, args.bars)
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text("DROP DATABASE IF EXISTS sf_bench_scan WITH (FORCE)"))


if __name__ == "__main__":
    main()
