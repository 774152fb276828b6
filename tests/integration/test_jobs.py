"""Durable jobs on SQLite and PostgreSQL: run, progress, result, errors, retries, dead letter,
cancel, leases and zombies, dedupe keys, concurrent claimers, shutdown hand-back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from signalfactory.adapters.storage.tables import jobs, tenants
from signalfactory.bootstrap import build_platform
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.jobs import Job
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.jobs.execution import JobContext
from signalfactory.services.platform import Platform
from signalfactory.workers.runner import EmbeddedRunner
from tests.helpers import engine_of
from tests.jobs_tasks import create_tables, job_effects, job_runs


@pytest.fixture
def jp(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setenv("SIGNALFACTORY_TASK_MODULES", "tests.jobs_tasks")
    monkeypatch.setenv("SIGNALFACTORY_JOB_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("SIGNALFACTORY_JOB_LEASE_SECONDS", "1.5")
    monkeypatch.setenv("SIGNALFACTORY_JOB_POLL_SECONDS", "0.05")
    platform = build_platform(migrate_db=True)
    create_tables(engine_of(platform))
    try:
        yield platform
    finally:
        platform.close()


def _claim(platform: Platform, owner: str, lease: float) -> Job | None:
    """What a worker does: queue the jobs of lost workers again, then claim."""
    with platform.database.write() as uow:
        uow.jobs.reap_expired(datetime.now(UTC))
        return uow.jobs.claim_next(owner, lease, datetime.now(UTC))


def _heartbeat(platform: Platform, job_id: str, owner: str, lease: float) -> bool | None:
    with platform.database.write() as uow:
        return uow.jobs.heartbeat(job_id, owner, lease, datetime.now(UTC))


def _count(platform: Platform, table: sa.Table, job_id: str) -> int:
    with engine_of(platform).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                .where(table.c.job_id == job_id)).scalar_one())


def _until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_submit_run_store_result(jp: Platform) -> None:
    job = job_service.submit(jp, "test.slow", {"steps": 3, "delay": 0.01, "value": 7})
    assert job.status == "queued" and job.attempts == 0 and job.progress == 0.0
    before = _metric("signalfactory_jobs_total", kind="test.slow", status="succeeded")
    outcomes = EmbeddedRunner(jp).run_until_idle()
    assert [o.status for o in outcomes] == ["succeeded"]
    done = job_service.get_job(jp, job.id)
    assert done.status == "succeeded" and done.progress == 1.0 and done.attempts == 1
    assert done.result is not None and done.result["value"] == 7
    assert done.started_at is not None and done.finished_at is not None
    assert done.finished_at >= done.started_at >= done.created_at
    assert _count(jp, job_effects, job.id) == 1
    assert _metric("signalfactory_jobs_total", kind="test.slow", status="succeeded") == before + 1
    assert job_service.list_jobs(jp, tenant_id=1, status="succeeded")[0].id == job.id
    with pytest.raises(NotFoundError):
        job_service.get_job(jp, job.id, tenant_id=2)


def test_progress_is_visible_while_running(jp: Platform) -> None:
    runner = EmbeddedRunner(jp, concurrency=1)
    runner.start()
    try:
        job = job_service.submit(jp, "test.slow", {"steps": 20, "delay": 0.1})
        running = _until(lambda: (j := job_service.get_job(jp, job.id)).status == "running"
                         and 0 < j.progress < 1 and j)
        assert running.lease_owner and running.lease_expires_at is not None
        done = job_service.wait_for(jp, job.id, timeout=15)
    finally:
        runner.stop(grace=5)
    assert done.status == "succeeded" and done.progress == 1.0


def test_bad_input_fails_at_once_and_operational_goes_dead(jp: Platform) -> None:
    bad = job_service.submit(jp, "test.bad_input")
    ops = job_service.submit(jp, "test.operational")
    EmbeddedRunner(jp).run_until_idle()
    bad_now, ops_now = job_service.get_job(jp, bad.id), job_service.get_job(jp, ops.id)
    assert bad_now.status == "failed" and bad_now.attempts == 1
    assert "ZZZZ is not in the store" in (bad_now.error or "")
    assert ops_now.status == "dead" and ops_now.attempts == 1 and "disk full" in ops_now.error
    assert _count(jp, job_runs, bad.id) == 1 and _count(jp, job_runs, ops.id) == 1


def test_temporary_errors_retry_then_dead_letter(jp: Platform) -> None:
    failed_before = _metric("signalfactory_jobs_total", kind="test.flaky", status="failed")
    dead_before = _metric("signalfactory_jobs_total", kind="test.flaky", status="dead")
    poison = job_service.submit(jp, "test.flaky", {}, max_attempts=3)
    healed = job_service.submit(jp, "test.flaky", {"succeed_on": 2}, max_attempts=3)
    EmbeddedRunner(jp).run_until_idle()
    poison_now, healed_now = job_service.get_job(jp, poison.id), job_service.get_job(jp, healed.id)
    assert poison_now.status == "dead" and poison_now.attempts == 3
    assert "attempt 3 of 3" in (poison_now.error or "")
    assert _count(jp, job_runs, poison.id) == 3
    assert healed_now.status == "succeeded" and healed_now.result == {"attempt": 2}
    assert _metric("signalfactory_jobs_total", kind="test.flaky",
                   status="failed") == failed_before + 3
    assert _metric("signalfactory_jobs_total", kind="test.flaky", status="dead") == dead_before + 1
    _scrape(jp)
    assert _metric("signalfactory_dead_letter_jobs") == 1
    # An operator fixes the cause and retries the dead job; or discards it with cancel.
    again = job_service.retry_job(jp, poison.id)
    assert again.status == "queued" and again.attempts == 0
    assert job_service.cancel_job(jp, poison.id).status == "cancelled"
    _scrape(jp)
    assert _metric("signalfactory_dead_letter_jobs") == 0


def test_backoff_delays_the_next_attempt(jp: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    jp.settings.job_backoff_seconds = 30.0
    job = job_service.submit(jp, "test.flaky", {}, max_attempts=3)
    outcomes = EmbeddedRunner(jp).run_until_idle()
    assert [o.status for o in outcomes] == ["queued"] and outcomes[0].retry_in == 30.0
    waiting = job_service.get_job(jp, job.id)
    assert waiting.status == "queued" and waiting.attempts == 1
    assert "attempt 1" in (waiting.error or "")
    assert waiting.run_after > datetime.now(UTC) + timedelta(seconds=25)


def test_cancel_queued_running_and_finished(jp: Platform) -> None:
    queued = job_service.submit(jp, "test.slow", {"steps": 1, "delay": 0})
    assert job_service.cancel_job(jp, queued.id).status == "cancelled"
    assert job_service.cancel_job(jp, queued.id).status == "cancelled"  # idempotent
    assert EmbeddedRunner(jp).run_until_idle() == []
    assert _count(jp, job_runs, queued.id) == 0

    runner = EmbeddedRunner(jp, concurrency=1)
    runner.start()
    try:
        long = job_service.submit(jp, "test.slow", {"steps": 200, "delay": 0.05})
        _until(lambda: job_service.get_job(jp, long.id).progress > 0)
        asked = job_service.cancel_job(jp, long.id)
        assert asked.status == "running" and asked.cancel_requested
        done = job_service.wait_for(jp, long.id, timeout=10)
    finally:
        runner.stop(grace=5)
    assert done.status == "cancelled" and done.progress < 1
    assert _count(jp, job_effects, long.id) == 0

    finished = job_service.submit(jp, "test.slow", {"steps": 1, "delay": 0})
    EmbeddedRunner(jp).run_until_idle()
    with pytest.raises(ConflictError, match="already succeeded"):
        job_service.cancel_job(jp, finished.id)
    with pytest.raises(NotFoundError):
        job_service.cancel_job(jp, finished.id, tenant_id=99)


def _expire_lease(platform: Platform, job_id: str) -> None:
    with engine_of(platform).begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(
            lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_expired_lease_is_reclaimed_and_the_zombie_cannot_store(jp: Platform) -> None:
    job = job_service.submit(jp, "test.slow", {"steps": 1})
    lease = jp.settings.job_lease_seconds
    first = _claim(jp, "worker-a", lease)
    assert first is not None and first.id == job.id and first.attempts == 1
    assert _claim(jp, "worker-b", lease) is None  # leased: not claimable
    zombie = JobContext(jp, first, "worker-a", lease)
    zombie.on_commit(lambda uow: uow.connection.execute(  # type: ignore[attr-defined]
        job_effects.insert().values(job_id=job.id, value=-1)))
    _expire_lease(jp, job.id)  # worker-a stalls past its lease (GC pause, network split)
    second = _claim(jp, "worker-b", lease)
    # the lost run was a loss, not an attempt: the job's second run is still attempt 1
    assert second is not None and second.lease_owner == "worker-b"
    assert second.attempts == 1 and second.losses == 1
    assert _heartbeat(jp, job.id, "worker-a", lease) is None
    with jp.database.write() as uow:
        assert uow.jobs.finish(job.id, "worker-b", status="succeeded", now=datetime.now(UTC),
                               result={"by": "b"})
    assert not zombie.store_outcome("succeeded", result={"by": "a"})
    final = job_service.get_job(jp, job.id)
    assert final.status == "succeeded" and final.result == {"by": "b"}
    assert _count(jp, job_effects, job.id) == 0  # the zombie's on_commit effect never landed


def test_worker_lost_on_last_attempt_runs_again(jp: Platform) -> None:
    job = job_service.submit(jp, "test.slow", {"steps": 1, "delay": 0}, max_attempts=1)
    assert _claim(jp, "worker-a", 60) is not None
    _expire_lease(jp, job.id)
    assert [o.status for o in EmbeddedRunner(jp).run_until_idle()] == ["succeeded"]
    done = job_service.get_job(jp, job.id)
    assert done.attempts == 1 and done.losses == 1  # (losses to the limit: worker_loss tests)


def test_concurrent_claimers_take_each_job_exactly_once(jp: Platform) -> None:
    ids = {job_service.submit(jp, "test.slow", {"n": i}).id for i in range(24)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        while True:
            job = _claim(jp, f"claimer-{n}", 60)
            if job is None:
                return
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed) == sorted(ids)


def test_dedupe_key_makes_submission_idempotent(jp: Platform) -> None:
    first = job_service.submit(jp, "test.slow", {"v": 1}, dedupe_key="nightly-2026-11-28")
    again = job_service.submit(jp, "test.slow", {"v": 1}, dedupe_key="nightly-2026-11-28")
    assert again.id == first.id
    with pytest.raises(ConflictError, match="different job"):
        job_service.submit(jp, "test.slow", {"v": 2}, dedupe_key="nightly-2026-11-28")
    with engine_of(jp).begin() as conn:
        other = conn.execute(tenants.insert().values(name="acme", tier="free")
                             .returning(tenants.c.id)).scalar_one()
    theirs = job_service.submit(jp, "test.slow", {"v": 1}, tenant_id=other,
                                dedupe_key="nightly-2026-11-28")
    assert theirs.id != first.id and theirs.tenant_id == other
    assert len(job_service.list_jobs(jp, tenant_id=1)) == 1
    with pytest.raises(BadInputError, match="unknown job kind 'nope'"):
        job_service.submit(jp, "nope")


def test_stop_hands_running_jobs_back_without_spending_an_attempt(jp: Platform) -> None:
    runner = EmbeddedRunner(jp, concurrency=1)
    runner.start()
    job = job_service.submit(jp, "test.slow", {"steps": 400, "delay": 0.05})
    _until(lambda: job_service.get_job(jp, job.id).progress > 0)
    runner.stop(grace=0.2)
    handed_back = job_service.get_job(jp, job.id)
    assert handed_back.status == "queued" and handed_back.attempts == 0
    assert handed_back.lease_owner is None
    assert runner.running_jobs == []


def test_collect_job_stores_bars_and_resumes(jp: Platform) -> None:
    from signalfactory.domain.timeframes import Timeframe
    from signalfactory.services.marketdata.bars import load_universe

    payload = {"symbols": ["AAA", "BBB"], "n_bars": 300, "timeframe": "1h", "page_size": 100}
    first = job_service.submit(jp, "collect", payload)
    second = job_service.submit(jp, "collect", payload)
    bad = job_service.submit(jp, "collect", {"symbols": [], "n_bars": 5})
    EmbeddedRunner(jp).run_until_idle()
    done = job_service.get_job(jp, first.id)
    assert done.status == "succeeded", done.error
    assert done.result == {"source": "synthetic", "timeframe": "1h", "pages": 6, "rows": 600,
                           "symbols": 2}
    assert job_service.get_job(jp, second.id).result["rows"] == 0  # resumed: nothing new
    assert load_universe(jp, Timeframe.parse("1h")).n_bars == 600
    failed = job_service.get_job(jp, bad.id)
    assert failed.status == "failed" and "collect payload: symbols" in (failed.error or "")


def test_queue_gauges_follow_the_table(jp: Platform) -> None:
    for _ in range(3):
        job_service.submit(jp, "test.slow", {"steps": 0})
    _scrape(jp)
    assert _metric("signalfactory_jobs_queued", kind="test.slow") == 3
    EmbeddedRunner(jp).run_until_idle()
    _scrape(jp)
    assert _metric("signalfactory_jobs_queued", kind="test.slow") == 0
    assert _metric("signalfactory_jobs_running") == 0
    with jp.database.write() as uow:
        old = datetime.now(UTC) + timedelta(days=1)
        assert uow.jobs.prune(old) == 3


def _scrape(platform: Platform) -> None:
    """What a /metrics scrape does: every gauge refresher wired by bootstrap."""
    for refresh in platform.metrics_refreshers:
        refresh(platform)
