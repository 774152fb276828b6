"""PostgreSQL bar store speed: bulk write bars/s and whole-universe load seconds.

Synthetic universe (default 5,000 symbols x 2,520 business-day bars = 12.6 M bars) written
through ``PostgresBarStore`` into a fresh scratch database, then loaded back into numpy.
Side by side, on a subset, the usual ways to do the same with the reference libraries:
psycopg's row-by-row ``Copy.write_row`` for writing, and ``pandas.read_sql_query`` for
loading; ratios are per bar. When the server is local (Linux), the CPU seconds of the server
backends and of this process are printed too: on a shared 2-core machine they say more than
wall time.

Then (``_pg_scan``), on a platform over another scratch database, the universe load (warm,
and cold in fresh processes) and a scan against raw TA-Lib scripts that read the same bars
from PostgreSQL with psycopg, with the ratios (targets: load <= 1.5 s, scan <= 4x).

    .venv/bin/python benchmarks/pg_bar_store.py [--symbols 5000] [--bars 2520] [--repeat 3]
        [--scan-symbols 500] [--scan-bars 2520] [--skip-store] [--skip-scan]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pg_scan
from _common import header

from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.db import create_db_engine
from signalfactory.adapters.storage.postgres_bars import PostgresBarStore
from signalfactory.adapters.storage.postgres_copy import IN_COLUMNS
from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS
from signalfactory.domain.timeframes import Timeframe

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
D1 = Timeframe.parse("1d")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def synthetic_universe(n_symbols: int, n_bars: int, seed: int = 1) -> BarColumns:
    """Geometric random walks on business days from 2015-01-02, sorted by (instrument, ts)."""
    rng = np.random.default_rng(seed)
    days = np.arange(n_bars * 7 // 5 + 7)
    first = np.datetime64("2015-01-02", "D")
    business = (first + days)[np.is_busday(first + days)][:n_bars]
    ts1 = business.astype("datetime64[ns]").astype(np.int64)
    inst = np.repeat(np.arange(1, n_symbols + 1, dtype=np.int64), n_bars)
    ts = np.tile(ts1, n_symbols)
    steps = rng.normal(0, 0.015, (n_symbols, n_bars))
    close = (50 * np.exp(np.cumsum(steps, axis=1))).ravel()
    open_ = close * (1 + rng.normal(0, 0.003, close.shape[0]))
    high = np.maximum(open_, close) * (1 + rng.random(close.shape[0]) * 0.01)
    low = np.minimum(open_, close) * (1 - rng.random(close.shape[0]) * 0.01)
    volume = rng.integers(1_000, 5_000_000, close.shape[0]).astype(np.float64)
    return BarColumns(inst, ts, open_, high, low, close, volume)


class CpuMeter:
    """CPU seconds of this process and of the database's server processes (local Linux)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.enabled = Path("/proc/self/stat").exists()

    def _server(self) -> float:
        total = 0.0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if not cmd.startswith("postgres:"):
                    continue
                # Backends of this database, and parallel workers (index builds).
                if f" {self.database} " not in cmd and "parallel worker" not in cmd:
                    continue
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / _TICK
            except (OSError, UnicodeDecodeError):
                continue
        return total

    def measure(self, fn: Callable[[], Any]) -> tuple[float, float, float, Any]:
        """(wall s, client CPU s, server CPU s, result)."""
        server0 = self._server() if self.enabled else 0.0
        client0 = time.process_time()
        start = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - start
        client = time.process_time() - client0
        server = (self._server() - server0) if self.enabled else float("nan")
        return wall, client, server, result


def _report(label: str, wall: float, client: float, server: float, extra: str = "") -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{label:<44} {wall:7.2f} s   client CPU {client:6.2f} s   server CPU {server:6.2f} s"
          f"   load {load:4.1f}{extra}")


def _same(a: BarColumns, b: BarColumns) -> bool:
    return len(a) == len(b) and all(np.array_equal(getattr(a, f), getattr(b, f))
                                    for f in ("instrument_id", "ts", *FIELDS))


def run(admin_url: str, n_symbols: int, n_bars: int, repeat: int,
        reference_symbols: int) -> dict[str, float]:
    name = f"sf_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = create_db_engine(admin_url.rsplit("/", 1)[0] + f"/{name}")
    results: dict[str, float] = {}
    try:
        migrate.upgrade(engine)
        store = PostgresBarStore()
        meter = CpuMeter(name)
        cols = synthetic_universe(n_symbols, n_bars)
        cut = int(np.datetime64("2024-04-01", "ns").astype(np.int64))
        first, second = cols.take(cols.ts < cut), cols.take(cols.ts >= cut)
        print(f"universe: {n_symbols:,} symbols x {n_bars:,} bars = {len(cols):,} bars "
              f"({len(first):,} initial + {len(second):,} appended)")

        def write(part: BarColumns) -> Callable[[], None]:
            def go() -> None:
                with engine.begin() as conn:
                    store.write(conn, D1, part)
            return go

        header("write (PostgresBarStore, one transaction each)")
        wall, client, server, _ = meter.measure(write(first))
        results["write_new_partitions_bars_per_s"] = len(first) / wall
        _report("initial ingest (new yearly partitions)", wall, client, server,
                f"   -> {len(first) / wall:,.0f} bars/s")
        wall, client, server, _ = meter.measure(write(second))
        results["write_append_bars_per_s"] = len(second) / wall
        _report("append into an existing partition", wall, client, server,
                f"   -> {len(second) / wall:,.0f} bars/s")
        last_year = cols.take(cols.ts >= cut - 365 * 86_400 * 10**9)
        wall, client, server, _ = meter.measure(write(last_year))
        results["write_reingest_bars_per_s"] = len(last_year) / wall
        _report(f"re-ingest of the last year ({len(last_year):,}, no change)", wall, client,
                server, f"   -> {len(last_year) / wall:,.0f} bars/s")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # What a running system has after autovacuum: fresh statistics, visibility map.
            conn.exec_driver_sql("VACUUM ANALYZE bars")

        with engine.connect() as conn:
            start = time.perf_counter()
            names = store.timeframes(conn)
            print(f"timeframes() -> {names} in {time.perf_counter() - start:.3f} s "
                  "(a skip along the primary key)")

        header("universe load into numpy (all five OHLCV columns)")

        def load() -> BarColumns:
            with engine.connect() as conn:
                return store.read_columns(conn, D1)

        wall, client, server, got = meter.measure(load)
        assert _same(got, cols), "loaded bars differ from the written ones"
        _report("first load in this process", wall, client, server)
        del got
        walls = []
        for _ in range(repeat):
            wall, client, server, got = meter.measure(load)
            walls.append(wall)
            _report("load, helper connections", wall, client, server)
            del got
        results["load_s"] = min(walls)
        results["load_median_s"] = statistics.median(walls)
        store.read_workers = 1
        wall, client, server, got = meter.measure(load)
        _report("load, one connection", wall, client, server)
        store.read_workers = 2
        del got
        with engine.connect() as conn:
            packed = conn.exec_driver_sql("SELECT to_regclass('bar_packs_stale') IS NOT NULL"
                                          ).scalar()
        if packed:  # the same load from the row table: packs marked stale meanwhile
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO bar_packs_stale DEFAULT VALUES")
            walls = []
            for _ in range(repeat):
                wall, client, server, got = meter.measure(load)
                walls.append(wall)
                _report("load from the row table (packs stale)", wall, client, server)
                del got
            results["load_rows_s"] = min(walls)
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM bar_packs_stale")
            print(f"   packs load {results['load_rows_s'] / results['load_s']:.1f}x faster "
                  "than the row table in this run")

        header(f"reference libraries on {reference_symbols:,} symbols (ratios per bar)")
        sub = cols.take(cols.instrument_id <= reference_symbols)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE ref_bars (LIKE bars INCLUDING ALL)")

        def psycopg_rows() -> None:
            with engine.begin() as conn:
                pg = conn.connection.driver_connection
                assert pg is not None
                rows = zip(sub.instrument_id.tolist(), ["1d"] * len(sub),
                           pd.to_datetime(sub.ts, utc=True).to_pydatetime().tolist(),
                           *(getattr(sub, f).tolist() for f in FIELDS), strict=True)
                with pg.cursor() as cur, cur.copy(
                        f"COPY ref_bars ({IN_COLUMNS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)

        wall, client, server, _ = meter.measure(psycopg_rows)
        ref_rate = len(sub) / wall
        _report("psycopg Copy.write_row per bar", wall, client, server,
                f"   -> {ref_rate:,.0f} bars/s")
        ratio = results["write_new_partitions_bars_per_s"] / ref_rate
        print(f"   PostgresBarStore initial ingest is {ratio:.1f}x the bars/s")

        def pandas_load() -> pd.DataFrame:
            with engine.connect() as conn:
                return pd.read_sql_query(
                    sa.text("SELECT instrument_id, ts, open, high, low, close, volume FROM bars "
                            "WHERE timeframe = '1d' AND instrument_id <= :n "
                            "ORDER BY instrument_id, ts"), conn, params={"n": reference_symbols})

        wall, client, server, frame = meter.measure(pandas_load)
        per_bar = wall / len(frame)
        _report("pandas.read_sql_query", wall, client, server,
                f"   -> {per_bar * len(cols):.1f} s for the universe")
        print(f"   PostgresBarStore load is {per_bar * len(cols) / results['load_s']:.0f}x faster "
              "per bar")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    header("summary (targets: >= 500,000 bars/s ingest, <= 1.5 s load)")
    for key, value in results.items():
        print(f"{key:<36} {value:,.2f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=PG_ADMIN, help="an existing database to connect "
                        "through; a scratch database is created beside it and dropped")
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-symbols", type=int, default=250)
    parser.add_argument("--scan-symbols", type=int, default=500)
    parser.add_argument("--scan-bars", type=int, default=2520)
    parser.add_argument("--skip-store", action="store_true",
                        help="skip the bulk write/load section")
    parser.add_argument("--skip-scan", action="store_true",
                        help="skip the universe load and scan section")
    args = parser.parse_args()
    if not args.skip_store:
        run(args.url, args.symbols, args.bars, args.repeat, args.reference_symbols)
    if not args.skip_scan:
        scan_section(args.url, args.scan_symbols, args.scan_bars)


def scan_section(admin_url: str, symbols: int, bars: int) -> dict[str, float]:
    name = f"sf_bench_scan_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        return _pg_scan.run(admin_url.rsplit("/", 1)[0] + f"/{name}", symbols, bars)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
