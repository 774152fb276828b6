"""A worker that vanishes (killed, OOM, node lost) is not the task failing: the lost run is
counted as a loss, not as an attempt, and a job goes to the dead letter on worker losses only
after its own, higher bound (``job_max_losses``). Both backends; leases expire by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from signalfactory.adapters.storage.tables import jobs
from signalfactory.bootstrap import build_platform
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.jobs.execution import claim_next, new_owner, reap_expired
from signalfactory.services.platform import Platform
from signalfactory.workers.runner import EmbeddedRunner
from tests.helpers import engine_of
from tests.jobs_tasks import create_tables


@pytest.fixture
def jp(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setenv("SIGNALFACTORY_TASK_MODULES", "tests.jobs_tasks")
    monkeypatch.setenv("SIGNALFACTORY_JOB_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("SIGNALFACTORY_JOB_MAX_LOSSES", "4")
    platform = build_platform(migrate_db=True)
    create_tables(engine_of(platform))
    try:
        yield platform
    finally:
        platform.close()


def _lose_worker(platform: Platform, job_id: str) -> None:
    """A worker claims the job, then vanishes: its lease runs out."""
    reap_expired(platform)
    claimed = claim_next(platform, new_owner("doomed"))
    assert claimed is not None and claimed.id == job_id, claimed
    with engine_of(platform).begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(
            lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_lost_workers_do_not_spend_the_attempts_of_the_job(jp: Platform) -> None:
    job = job_service.submit(jp, "test.slow", {"steps": 1, "delay": 0}, max_attempts=1)
    assert job.max_losses == 4  # the setting, stored with the job like max_attempts
    losses_before = _metric("signalfactory_job_worker_losses_total", kind="test.slow")
    for _ in range(3):  # more losses than the job has attempts
        _lose_worker(jp, job.id)
    outcomes = EmbeddedRunner(jp).run_until_idle()
    assert [o.status for o in outcomes] == ["succeeded"], job_service.get_job(jp, job.id)
    done = job_service.get_job(jp, job.id)
    assert done.status == "succeeded" and done.attempts == 1 and done.losses == 3
    assert done.result is not None and done.result["attempt"] == 4  # the fourth run
    assert _metric("signalfactory_job_worker_losses_total",
                   kind="test.slow") - losses_before == 3


def test_a_job_that_loses_its_worker_too_often_goes_dead(jp: Platform) -> None:
    job = job_service.submit(jp, "test.slow", {"steps": 1, "delay": 0}, max_attempts=5)
    dead_before = _metric("signalfactory_jobs_total", kind="test.slow", status="dead")
    for _ in range(4):
        _lose_worker(jp, job.id)
    assert EmbeddedRunner(jp).run_until_idle() == []  # nothing left to run
    dead = job_service.get_job(jp, job.id)
    assert dead.status == "dead" and dead.losses == 4 and dead.attempts == 1, dead
    assert "lease expired" in (dead.error or "") and "4 times" in (dead.error or "")
    assert _metric("signalfactory_jobs_total", kind="test.slow",
                   status="dead") - dead_before == 1


def test_a_retry_of_a_dead_job_gives_it_a_fresh_loss_budget(jp: Platform) -> None:
    job = job_service.submit(jp, "test.slow", {"steps": 1, "delay": 0})
    for _ in range(4):
        _lose_worker(jp, job.id)
    reap_expired(jp)
    assert job_service.get_job(jp, job.id).status == "dead"
    job_service.retry_job(jp, job.id)
    again = job_service.get_job(jp, job.id)
    assert again.status == "queued" and again.losses == 0 and again.attempts == 0
    assert [o.status for o in EmbeddedRunner(jp).run_until_idle()] == ["succeeded"]


def test_failures_of_the_task_itself_still_count_as_attempts(jp: Platform) -> None:
    job = job_service.submit(jp, "test.flaky", {}, max_attempts=2)
    _lose_worker(jp, job.id)  # one loss on the way does not change the attempt budget
    EmbeddedRunner(jp).run_until_idle()
    dead = job_service.get_job(jp, job.id)
    assert dead.status == "dead" and dead.attempts == 2 and dead.losses == 1, dead
