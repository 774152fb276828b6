"""Ingest and universe-load speed of the bar stores, embedded (SQLite + columnar) and PostgreSQL.

Prints, per backend: CSV-to-store bars/s, and the time to load 5,000 symbols x 2,520 daily
bars (all five OHLCV columns) into numpy arrays. For scale, the same run measures the
reference points the issue names: raw TA-Lib computing five indicators over the same bars,
a memory-mapped Arrow file of the universe (close column), and a zstd Parquet file of it.

    .venv/bin/python benchmarks/ingest_and_load.py [--symbols 5000] [--bars 2520]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import talib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, timed

from signalfactory.bootstrap import build_platform
from signalfactory.domain.synthetic import generate_universe
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.marketdata.ingest import ingest_files
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.settings import load_settings

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
D1 = Timeframe.parse("1d")


def make_csv(path: Path, n_symbols: int, n_bars: int) -> int:
    frames = []
    for item in generate_universe(n_symbols, n_bars, seed=1):
        b = item.bars
        frames.append(pd.DataFrame({
            "symbol": item.symbol, "date": pd.to_datetime(b.ts).strftime("%Y-%m-%d"),
            "open": b.open, "high": b.high, "low": b.low, "close": b.close,
            "volume": b.volume}))
    df = pd.concat(frames)
    df.to_csv(path, index=False)
    return len(df)


def touch(uni: object) -> float:
    # Sum every column so memory-mapped pages are really read, not just mapped.
    return float(sum(np.asarray(getattr(uni, f)).sum() for f in ("open", "high", "low",
                                                                 "close", "volume")))


def bench_backend(label: str, url: str | None, home: Path, csv: Path, csv_rows: int,
                  n_symbols: int, n_bars: int) -> dict[str, float]:
    overrides = {"home": home} | ({"database_url": url} if url else {})
    platform = build_platform(load_settings(**overrides), migrate_db=True)
    try:
        # One small ingest first, so one-time costs (lazy imports, thread pools, JIT caches)
        # are not charged to the throughput figure.
        warm = home / "warmup.csv"
        warm.write_text("date,open,high,low,close,volume\n2001-01-02,1,2,1,1.5,10\n"
                        "2001-01-03,1,2,1,1.5,10\n")
        ingest_files(platform, [warm], symbol="WARMUP")
        t_ingest, report = timed(lambda: ingest_files(platform, [csv]))
        assert report.rows == csv_rows
        t_sample, _ = timed(lambda: store_sample(platform, symbols=n_symbols, bars=n_bars,
                                                 seed=2))
        t_load, uni = timed(lambda: load_universe(platform, D1, tag="universe=sample"),
                            repeat=3)
        t_touch, _ = timed(lambda: touch(load_universe(platform, D1, tag="universe=sample")),
                           repeat=3)
        assert uni.n_bars == n_symbols * n_bars, uni.n_bars
    finally:
        platform.close()
    print(f"{label:10s} CSV ingest: {csv_rows:,} bars in {t_ingest:.2f} s = "
          f"{csv_rows / t_ingest:,.0f} bars/s")
    print(f"{label:10s} store {n_symbols * n_bars:,} generated bars: {t_sample:.2f} s "
          "(generation included)")
    print(f"{label:10s} universe load {n_symbols} x {n_bars}: {t_load:.3f} s "
          f"(with every page read: {t_touch:.3f} s)")
    return {"ingest_bps": csv_rows / t_ingest, "load_s": t_load, "load_touch_s": t_touch}


def references(tmp: Path, n_symbols: int, n_bars: int) -> float:
    header("reference points (same data size)")
    items = generate_universe(n_symbols, n_bars, seed=3)
    closes = [i.bars.close for i in items]
    highs = [i.bars.high for i in items]
    lows = [i.bars.low for i in items]

    def five() -> None:
        for c, h, lo in zip(closes, highs, lows, strict=True):
            talib.SMA(c, 10)
            talib.SMA(c, 30)
            talib.RSI(c, 14)
            talib.ATR(h, lo, c, 14)
            talib.EMA(c, 50)

    t_talib, _ = timed(five, repeat=2)
    print(f"raw TA-Lib, five indicators over {n_symbols} x {n_bars}: {t_talib:.3f} s")
    close = np.concatenate(closes)
    table = pa.table({"close": close, "open": close, "high": close, "low": close,
                      "volume": close})
    arrow_path = tmp / "u.arrow"
    with pa.OSFile(str(arrow_path), "wb") as sink, ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    t_arrow, _ = timed(lambda: float(ipc.open_file(pa.memory_map(str(arrow_path))).read_all()
                                     .column("close").to_numpy().sum()), repeat=3)
    pq_path = tmp / "u.parquet"
    pq.write_table(table, pq_path, compression="zstd")
    t_pq, _ = timed(lambda: pq.read_table(pq_path, columns=["close"]).column("close")
                    .to_numpy().sum(), repeat=3)
    print(f"memory-mapped Arrow, close column: {t_arrow:.3f} s;  zstd Parquet, close column: "
          f"{t_pq:.3f} s")
    return t_talib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--csv-symbols", type=int, default=1000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        csv = tmp / "universe.csv"
        rows = make_csv(csv, args.csv_symbols, args.bars)
        print(f"CSV file: {rows:,} bars, {csv.stat().st_size / 1e6:.0f} MB")
        t_talib = references(tmp, args.symbols, args.bars)
        header("embedded: SQLite + columnar store")
        emb = bench_backend("embedded", None, tmp / "emb", csv, rows, args.symbols, args.bars)
        pg = None
        if not args.skip_postgres:
            header("PostgreSQL: partitioned bars table, COPY")
            import sqlalchemy as sa

            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text("DROP DATABASE IF EXISTS sf_bench WITH (FORCE)"))
                conn.execute(sa.text("CREATE DATABASE sf_bench"))
            try:
                pg = bench_backend("postgres", PG_ADMIN.rsplit("/", 1)[0] + "/sf_bench",
                                   tmp / "pg", csv, rows, args.symbols, args.bars)
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text("DROP DATABASE IF EXISTS sf_bench WITH (FORCE)"))
    header("targets")
    print(f"embedded ingest  {emb['ingest_bps']:>12,.0f} bars/s  target >= 1,000,000  "
          f"{'MET' if emb['ingest_bps'] >= 1e6 else 'MISSED'}")
    print(f"embedded load    {emb['load_touch_s']:>12.3f} s       target <= 0.25 s     "
          f"{'MET' if emb['load_touch_s'] <= 0.25 else 'MISSED'}  "
          f"(ratio to raw TA-Lib five indicators: {emb['load_touch_s'] / t_talib:.2f})")
    if pg:
        print(f"postgres ingest  {pg['ingest_bps']:>12,.0f} bars/s  target >= 500,000    "
              f"{'MET' if pg['ingest_bps'] >= 5e5 else 'MISSED'}")
        print(f"postgres load    {pg['load_touch_s']:>12.3f} s       target <= 3 s        "
              f"{'MET' if pg['load_touch_s'] <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
