"""A split universe backtest on real Celery workers (subprocesses) on Redis and RabbitMQ: the
result is the single-box result bit for bit, and a worker SIGKILLed in the middle of a chunk
costs that one chunk a second run, nothing more. Workers run one numba thread each (one core,
as a worker per machine would have its own)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.domain.job_splits import ChunkState
from signalfactory.services.backtests.split import split_summary
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import ensure_builtins
from tests.integration.test_jobs_celery import broker_url, celery_env  # noqa: F401 - fixtures
from tests.integration.test_jobs_kill import kill_hard, start_worker, stop_gently
from tests.split_support import finished, held_rows, single_box, snapshot, submit

pytestmark = pytest.mark.timeout(150)


def _platform(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *, symbols: int,
              bars: int, bars_per_second: int) -> Platform:
    env.update({"SIGNALFACTORY_SPLIT": "always", "SIGNALFACTORY_SPLIT_CHUNK_SECONDS": "1",
                "SIGNALFACTORY_SPLIT_BARS_PER_SECOND": str(bars_per_second),
                "SIGNALFACTORY_SPLIT_POLL_SECONDS": "0.2", "NUMBA_NUM_THREADS": "1"})
    for key, value in env.items():
        if key != "NUMBA_NUM_THREADS":  # the test process computes the reference on all cores
            monkeypatch.setenv(key, value)
    platform = build_platform(migrate_db=True)
    store_sample(platform, symbols=symbols, bars=bars, seed=5)
    with platform.database.write() as uow:
        ensure_builtins(uow)
    return platform


@pytest.fixture
def small(celery_env: dict[str, str],  # noqa: F811 - the imported fixture
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    # 16 x 600 bars at an assumed 2,000 bars/s: four chunks of 1.2 s of assumed work
    platform = _platform(celery_env, monkeypatch, symbols=16, bars=600, bars_per_second=2000)
    try:
        yield platform
    finally:
        platform.close()


def _workers(env: dict[str, str], log: Path, n: int) -> list[subprocess.Popen[bytes]]:
    return [start_worker(env, log, "--concurrency", "1") for _ in range(n)]


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        stop_gently(worker)


@pytest.mark.parametrize("broker_url", ["rabbitmq"], indirect=True)  # the kill test: Redis
def test_split_on_two_celery_workers_equals_the_single_box_run(
        small: Platform, celery_env: dict[str, str],  # noqa: F811 - the imported fixture
        tmp_path: Path) -> None:
    backtest_id, expected = single_box(small)
    log = tmp_path / "workers.log"
    workers = _workers(celery_env, log, 2)
    try:
        job = finished(small, submit(small), 60)
    finally:
        _stop(workers)
    assert job.status == "succeeded", (job, log.read_text()[-3000:])
    assert job.result["backtest_id"] == backtest_id
    summary = split_summary(small, job.id)
    assert summary is not None and summary["chunks"] == 4
    assert summary["executions"] == [1, 1, 1, 1]
    assert snapshot(small, backtest_id) == expected
    assert held_rows(small) == (0, 0)


def _computing_chunk(platform: Platform, job_id: str, workers: list[subprocess.Popen[bytes]],
                     timeout: float) -> tuple[int, subprocess.Popen[bytes]]:
    """A chunk some worker has started computing (its execution counted, its result not
    stored yet), and that worker: the pool child running it is in the worker's process
    group (each worker is started in a session of its own)."""
    deadline = time.monotonic() + timeout
    groups = {w.pid: w for w in workers}
    while time.monotonic() < deadline:
        for chunk in _chunks(platform, job_id):
            if chunk.executions < 1 or chunk.finished:
                continue
            owner = job_service.get_job(platform, chunk.job_id).lease_owner
            if owner is None:
                continue
            try:
                worker = groups.get(os.getpgid(int(owner.split(":")[1])))
            except ProcessLookupError:
                continue
            if worker is not None:
                return chunk.index, worker
        time.sleep(0.02)
    raise AssertionError("no chunk started computing")


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_a_worker_killed_mid_chunk_costs_one_chunk_rerun(
        celery_env: dict[str, str],  # noqa: F811 - the imported fixture
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 60 x 6,000 bars at an assumed 120,000 bars/s: three chunks of 1 s of assumed work, each
    # a few tenths of a second of real work on one core
    platform = _platform(celery_env, monkeypatch, symbols=60, bars=6000,
                         bars_per_second=120_000)
    log = tmp_path / "workers.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        backtest_id, expected = single_box(platform)
        workers = _workers(celery_env, log, 2)
        job_id = submit(platform)
        index, victim = _computing_chunk(platform, job_id, workers, 60)
        kill_hard(victim)
        killed_mid_run = not _chunks(platform, job_id)[index].finished
        job = finished(platform, job_id, 60)
        assert job.status == "succeeded", (job, log.read_text()[-3000:])
        summary = split_summary(platform, job_id)
        assert summary is not None and summary["chunks"] == 3, summary
        executions = summary["executions"]
        assert all(e >= 1 for e in executions) and sum(executions) <= 3 + 1, executions
        if killed_mid_run:  # its run was lost with the worker: that chunk, and only it, twice
            assert executions[index] == 2 and sum(executions) == 4, executions
            chunk_job = job_service.get_job(platform, _chunks(platform, job_id)[index].job_id)
            assert chunk_job.losses == 1, chunk_job
        # the rerun chunk's trades are stored once (the snapshot holds every trade)
        assert snapshot(platform, backtest_id) == expected
        assert held_rows(platform) == (0, 0)
    finally:
        for worker in workers:
            if worker.poll() is None:
                kill_hard(worker)
        platform.close()


def _chunks(platform: Platform, job_id: str) -> tuple[ChunkState, ...]:
    """The split's chunks; none before the parent has split."""
    with platform.database.read(primary=True) as uow:
        state = uow.splits.get(job_id)
    return () if state is None else state.chunks
