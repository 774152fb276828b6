"""A universe backtest split into chunk jobs, on the embedded runner (both backends): the
stored result is the single-box result bit for bit, each chunk ran once and was counted once,
and the chunks' results are dropped once assembled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.backtests.split import split_summary
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import ensure_builtins
from signalfactory.workers.runner import EmbeddedRunner
from tests.split_support import finished, single_box, snapshot, submit

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
