"""Ingest on both backends: round trip, idempotent re-ingest, overlapping upsert, Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.marketdata.ingest import ingest_files
from signalfactory.services.platform import Platform
from tests.helpers import cli, fingerprint


def _frame(start: str, n: int, seed: int, *, freq: str = "B", offset: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))) + offset
    open_ = close * (1 + rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    idx = pd.date_range(start, periods=n, freq=freq)
    return pd.DataFrame({"Date": idx, "Open": open_, "High": high, "Low": low,
                         "Close": close, "Adj Close": close, "Volume": rng.integers(1, 9, n)})


def test_round_trip_exact(platform: Platform, tmp_path: Path) -> None:
    df = _frame("2020-01-01", 300, 1)
    path = tmp_path / "ABC.csv"
    df.to_csv(path, index=False, float_format="%.10g")
    report = ingest_files(platform, [path])
    assert report.rows == 300 and report.timeframe == "1d"
    uni = load_universe(platform, Timeframe.parse("1d"), symbols=["ABC"])
    s = uni.series(0)
    assert s.symbol == "ABC"
    np.testing.assert_allclose(s.close, df["Close"].to_numpy(), rtol=1e-9)
    assert s.ts[0] == pd.Timestamp("2020-01-01", tz="UTC").value


def test_reingest_is_idempotent_and_overlap_upserts(platform: Platform, tmp_path: Path) -> None:
    df = _frame("2021-01-01", 100, 2)
    path = tmp_path / "XYZ.csv"
    df.to_csv(path, index=False)
    ingest_files(platform, [path])
    ingest_files(platform, [path])
    uni = load_universe(platform, Timeframe.parse("1d"))
    assert uni.n_bars == 100
    # Overlap: the last 50 bars again with new prices, plus 50 new bars.
    later = _frame("2021-01-01", 150, 2, offset=5.0).iloc[50:]
    path2 = tmp_path / "XYZ2.csv"
    later.to_csv(path2, index=False)
    ingest_files(platform, [path2], symbol="XYZ")
    uni = load_universe(platform, Timeframe.parse("1d"))
    assert uni.n_bars == 150
    np.testing.assert_allclose(uni.close[50:], later["Close"].to_numpy(), rtol=1e-12)
    assert np.all(np.diff(uni.ts) > 0)


def test_timezones_normalised_to_utc(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "TZ.csv"
    path.write_text("Datetime,open,high,low,close,volume\n"
                    "2024-03-01T09:30:00-05:00,10,11,9,10,1\n"
                    "2024-03-01T09:31:00-05:00,10,11,9,10,1\n")
    ingest_files(platform, [path], timeframe="1m")
    uni = load_universe(platform, Timeframe.parse("1m"))
    assert uni.ts[0] == pd.Timestamp("2024-03-01T14:30:00Z").value


def test_parquet_and_epoch_and_multi_symbol(platform: Platform, tmp_path: Path) -> None:
    a = _frame("2022-01-03", 20, 3)
    b = _frame("2022-01-03", 20, 4)
    a["symbol"], b["symbol"] = "AAA", "BBB"
    both = pd.concat([a, b])
    both["Date"] = both["Date"].astype("datetime64[s]").astype("int64")
    path = tmp_path / "multi.parquet"
    both.to_parquet(path)
    report = ingest_files(platform, [path])
    assert report.instruments == 2 and report.rows == 40
    uni = load_universe(platform, Timeframe.parse("1d"), symbols=["BBB"])
    np.testing.assert_allclose(uni.close, b["Close"].to_numpy())


def test_resampled_read_of_higher_timeframe(platform: Platform, tmp_path: Path) -> None:
    df = _frame("2024-01-01 00:00", 60 * 24 * 2, 5, freq="min")
    path = tmp_path / "M.csv"
    df.to_csv(path, index=False)
    ingest_files(platform, [path], timeframe="1m")
    hourly = load_universe(platform, Timeframe.parse("1h"))
    assert hourly.n_bars == 48
    first = df.iloc[:60]
    assert hourly.open[0] == pytest.approx(first["Open"].iloc[0])
    assert hourly.high[0] == pytest.approx(first["High"].max())
    assert hourly.low[0] == pytest.approx(first["Low"].min())
    assert hourly.close[0] == pytest.approx(first["Close"].iloc[-1])
    assert hourly.volume[0] == pytest.approx(first["Volume"].sum())
    daily = load_universe(platform, Timeframe.parse("1d"))
    assert daily.n_bars == 2


def test_sample_is_deterministic(sf_env: dict[str, str]) -> None:
    from signalfactory.domain.synthetic import generate_universe

    a = generate_universe(3, 200, seed=7)
    b = generate_universe(3, 200, seed=7)
    c = generate_universe(3, 200, seed=8)
    assert all(np.array_equal(x.bars.close, y.bars.close) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].bars.close, c[0].bars.close)
    for item in a:
        bars = item.bars
        assert np.all(bars.high >= np.maximum(bars.open, bars.close))
        assert np.all(bars.low <= np.minimum(bars.open, bars.close))
        assert np.all(bars.low > 0)
        weekday = (bars.ts // (86400 * 10**9) + 3) % 7
        assert np.all(weekday < 5)
    assert cli("sample", "--symbols", "4", "--bars", "30", "--seed", "1").exit_code == 0
    first = fingerprint()["bars"]
    assert cli("sample", "--symbols", "4", "--bars", "30", "--seed", "1").exit_code == 0
    assert fingerprint()["bars"] == first


def test_known_instruments_are_not_looked_up_again_and_a_rollback_teaches_nothing(
        platform: Platform) -> None:
    """A write's committed instrument ids are kept by the database: the next write of the
    same symbols (a live feed) reads nothing; ids of a rolled-back insert are never kept."""
    import sqlalchemy as sa

    from signalfactory.adapters.storage.unit_of_work import sql_database
    from signalfactory.domain.instruments import InstrumentSpec
    from tests.helpers import engine_of

    specs = [InstrumentSpec("KNOWN1", venue="X"), InstrumentSpec("KNOWN1", venue="Y"),
             InstrumentSpec("KNOWN2", venue="X")]
    with platform.database.write() as uow:
        first = uow.instruments.upsert(specs)
    assert first.changed
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_a: object) -> None:
        statements.append(statement)

    engine = engine_of(platform)
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with platform.database.write() as uow:
            again = uow.instruments.upsert(specs)
        assert not again.changed and again.ids == first.ids
        assert not [s for s in statements if "instruments" in s]
        with pytest.raises(RuntimeError), platform.database.write() as uow:
            uow.instruments.upsert([InstrumentSpec("ROLLED", venue="X")])
            raise RuntimeError("abort")
        assert ("ROLLED", "X") not in sql_database(platform.database).known_instruments
        with platform.database.write() as uow:  # looked up, inserted afresh
            assert uow.instruments.upsert([InstrumentSpec("ROLLED", venue="X")]).changed
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    known = sql_database(platform.database).known_instruments
    with platform.database.read() as uow:
        rows = {(i.symbol, i.venue): i.id for i in uow.instruments.find()}
    assert {k: known[k] for k in rows if k in known} == {k: rows[k] for k in known}
    assert known[("KNOWN1", "X")] != known[("KNOWN1", "Y")]
