"""A universe backtest split into chunk jobs, on the embedded runner (both backends): the
stored result is the single-box result bit for bit, each chunk ran once and was counted once,
and the chunks' results and rows are dropped once the backtest is stored; a chunk's rows are
held once however often they are stored, and copied only when they are what was counted."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.tables import backtests
from signalfactory.bootstrap import build_platform
from signalfactory.domain.backtest.curve_codec import ChunkedRows, EncodedCurve
from signalfactory.domain.backtest.stored import (
    DataRange,
    EquityCurve,
    StoredBacktest,
    TradeRecord,
)
from signalfactory.domain.errors import OperationalError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.backtests.split import split_summary
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.marketdata.bars import SymbolBars, load_universe, write_bars
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import ensure_builtins
from signalfactory.workers.runner import EmbeddedRunner
from tests.helpers import engine_of
from tests.split_support import finished, held_rows, single_box, snapshot, submit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def split_platform(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[Platform]:
    # 16 symbols x 600 bars = 9,600 bars at an assumed 2,000 bars/s: four chunks of >= 1 s
    # of assumed work (the real work is far less; what is tested is the mechanism)
    for key, value in {"SIGNALFACTORY_SPLIT": "always", "SIGNALFACTORY_SPLIT_CHUNK_SECONDS": "1",
                       "SIGNALFACTORY_SPLIT_BARS_PER_SECOND": "2000",
                       "SIGNALFACTORY_SPLIT_POLL_SECONDS": "0.05"}.items():
        monkeypatch.setenv(key, value)
    platform = build_platform(migrate_db=True)
    store_sample(platform, symbols=16, bars=600, seed=11)
    with platform.database.write() as uow:
        ensure_builtins(uow)
    try:
        yield platform
    finally:
        platform.close()


def test_split_backtest_equals_the_single_box_run(split_platform: Platform) -> None:
    backtest_id, expected = single_box(split_platform)
    runner = EmbeddedRunner(split_platform, concurrency=1)
    job_id = submit(split_platform)
    job = finished(split_platform, job_id, 60, between=runner.run_until_idle)
    assert job.status == "succeeded", job
    assert job.result is not None and job.result["backtest_id"] == backtest_id
    summary = split_summary(split_platform, job_id)
    assert summary is not None and summary["chunks"] == 4 and summary["done"] == 4
    assert summary["executions"] == [1, 1, 1, 1]
    assert snapshot(split_platform, backtest_id) == expected
    with split_platform.database.read(primary=True) as uow:
        assert uow.splits.results(job_id) == []  # assembled, then dropped
        assert uow.splits.pending(job_id) == [] and uow.splits.counts(job_id) == (4, 4)
    assert held_rows(split_platform) == (0, 0)  # copied into the backtest, then dropped


def _store_more_bars(platform: Platform) -> None:
    """A bar a day later on every sample instrument and a new instrument in the universe,
    each bar within the backtest's window."""
    day = 86_400 * 10**9
    bars = load_universe(platform, Timeframe.parse("1d"), tag="universe=sample")
    with platform.database.read(primary=True) as uow:
        specs = {i.symbol: InstrumentSpec(i.symbol, i.venue, i.asset_class, i.currency,
                                          dict(i.tags))
                 for i in uow.instruments.find(tag="universe=sample")}
    batches = []
    for k, symbol in enumerate(bars.symbols):
        last = int(bars.offsets[k + 1]) - 1
        price = np.array([bars.close[last] * 1.01])
        batches.append(SymbolBars(specs[symbol], np.array([bars.ts[last] + day]), price,
                                  price * 1.01, price * 0.99, price, np.array([1e6])))
    first = slice(int(bars.offsets[0]), int(bars.offsets[1]))
    batches.append(SymbolBars(
        InstrumentSpec("NEWCO", "SYNTH", "equity", "USD", {"universe": "sample"}),
        bars.ts[first].copy(), bars.open[first] * 2, bars.high[first] * 2,
        bars.low[first] * 2, bars.close[first] * 2, bars.volume[first].copy()))
    write_bars(platform, Timeframe.parse("1d"), batches, source="test: bars after the cut")


def test_bars_stored_after_the_cut_change_nothing_the_parent_assembles(
        split_platform: Platform) -> None:
    backtest_id, expected = single_box(split_platform)
    runner = EmbeddedRunner(split_platform, concurrency=1)
    job_id = submit(split_platform)
    assert runner.run_next() is not None  # the parent: it cuts and waits
    for _ in range(20):  # the chunks (and the parent looking, and waiting again)
        with split_platform.database.read(primary=True) as uow:
            state = uow.splits.get(job_id)
            counts = uow.splits.counts(job_id)
            pending = uow.splits.pending(job_id)
        assert state is not None and counts == (state.done, state.total)
        assert pending == [(c.index, c.job_id) for c in state.chunks if not c.finished]
        if state.complete:
            break
        assert runner.run_next() is not None
    assert state.complete
    with split_platform.database.read(primary=True) as uow:
        assert uow.splits.counts("no such job") is None
    _store_more_bars(split_platform)  # after the last chunk, before the parent assembles
    job = finished(split_platform, job_id, 60, between=runner.run_until_idle)
    assert job.status == "succeeded", job
    # the universe the parent cut, bit for bit, and under its id
    assert job.result is not None and job.result["backtest_id"] == backtest_id
    assert snapshot(split_platform, backtest_id) == expected
    assert held_rows(split_platform) == (0, 0)
    # while a run now reads the new bars: another universe, another backtest
    now_id, _ = single_box(split_platform)
    assert now_id != backtest_id


def test_a_chunks_rows_are_held_once_and_copied_only_as_counted(
        split_platform: Platform) -> None:
    runner = EmbeddedRunner(split_platform, concurrency=1)
    job_id = submit(split_platform)
    assert runner.run_next() is not None  # the parent: it splits and waits
    trades = [TradeRecord("S1", 1_000_000_000 * k, 2_000_000_000 * k, 1.5, 10.0, 11.0 + k,
                          1.5 + k, 0.1 / 3, 1e-17, "signal") for k in (1, 2)]
    curve = EquityCurve("S1", np.arange(5, dtype=np.int64) * 86_400 * 10**9,
                        np.array([1e4, 1e4 + 1 / 3, np.nextafter(1e4, 2e4), 9e3, 0.0]))
    for _ in range(2):  # stored again (a chunk run twice): its rows replace its rows
        with split_platform.database.write() as uow:
            uow.backtests.stage_chunk(job_id, 2, trades, [EncodedCurve.of(curve)])
    assert held_rows(split_platform) == (2, 1)
    backtest = StoredBacktest(
        id="f" * 64, tenant_id=DEFAULT_TENANT_ID, mode="universe", config={},
        data_range=DataRange("1d", "universe=sample", ("S1",), (), "2015-01-01",
                             "2015-01-05", 5, 5, "stock", 252.0, "0" * 64),
        strategy_name="sma_cross", strategy_version=None, code_hash="x", metrics={},
        per_symbol=(), final_equity=1.0, n_trades=2,
        created_at=datetime(2026, 12, 4, tzinfo=UTC), duration_seconds=1.0)
    aggregate = EquityCurve("", curve.ts, curve.equity / 2)
    with pytest.raises(OperationalError, match=r"chunk 3 of split job .* holds 2 trades"), \
            split_platform.database.write() as uow:  # counted 3 trades in chunk 3
        uow.backtests.add_from_chunks(backtest, [aggregate], ChunkedRows(
            job_id, (0, 0, 3, 0), (0, 0, 1, 0)))
    with engine_of(split_platform).connect() as conn:  # nothing stored, nothing dropped
        assert conn.execute(sa.select(sa.func.count()).select_from(backtests)).scalar_one() \
            == 0
    assert held_rows(split_platform) == (2, 1)
    with split_platform.database.write() as uow:
        assert uow.backtests.add_from_chunks(backtest, [aggregate], ChunkedRows(
            job_id, (0, 0, 2, 0), (0, 0, 1, 0)))
    assert held_rows(split_platform) == (0, 0)
    with split_platform.database.read(primary=True) as uow:
        assert uow.backtests.trades(backtest.id) == trades
        assert uow.backtests.equity_curve(backtest.id, "S1") == curve
        assert uow.backtests.equity_curve(backtest.id, "") == aggregate
    # stored before: the chunks' rows are dropped all the same, nothing is added
    with split_platform.database.write() as uow:
        uow.backtests.stage_chunk(job_id, 0, trades[:1], [])
        assert not uow.backtests.add_from_chunks(
            dataclasses.replace(backtest, final_equity=2.0), [], ChunkedRows(
                job_id, (1, 0, 0, 0), (0, 0, 0, 0)))
    assert held_rows(split_platform) == (0, 0)
    with split_platform.database.read(primary=True) as uow:
        assert uow.backtests.trades(backtest.id) == trades


def test_at_the_speed_measured_a_small_universe_runs_whole(split_platform: Platform) -> None:
    # 9,600 bars: far less than two chunks of 1 s at the speed this machine measures
    measured = dataclasses.replace(split_platform, settings=split_platform.settings.model_copy(
        update={"split_bars_per_second": None}))
    backtest_id, expected = single_box(measured)
    runner = EmbeddedRunner(measured, concurrency=1)
    job_id = submit(measured)
    job = finished(measured, job_id, 60, between=runner.run_until_idle)
    assert job.status == "succeeded", job
    assert split_summary(measured, job_id) is None  # never split
    assert snapshot(measured, backtest_id) == expected


def test_a_cancelled_chunk_makes_the_split_job_dead_and_stores_nothing(
        split_platform: Platform) -> None:
    runner = EmbeddedRunner(split_platform, concurrency=1)
    job_id = submit(split_platform)
    assert runner.run_next() is not None  # the parent: it splits and waits
    with split_platform.database.read(primary=True) as uow:
        state = uow.splits.get(job_id)
    assert state is not None and state.total == 4 and state.done == 0
    job_service.cancel_job(split_platform, state.chunks[1].job_id)
    job = finished(split_platform, job_id, 60, between=runner.run_until_idle)
    assert job.status == "dead", job
    assert "chunk 2 of 4" in str(job.error) and "cancelled" in str(job.error)
    with split_platform.database.read(primary=True) as uow:
        assert uow.backtests.list_recent(DEFAULT_TENANT_ID, limit=5, offset=0) == []
