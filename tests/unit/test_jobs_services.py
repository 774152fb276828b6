"""The job runtime's services on the in-memory ports: submit, dedupe, cancel, retry, claim,
run with backoff and dead letter, leases and zombies, schedules. No database."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signalfactory.domain.errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    OperationalError,
    TemporaryError,
)
from signalfactory.domain.jobs import Job
from signalfactory.services.jobs import registry as jobs
from signalfactory.services.jobs.execution import (
    JobContext,
    claim_next,
    execute_by_id,
    reap_expired,
    run_claimed,
)
from signalfactory.services.jobs.registry import TaskContext, register_task
from signalfactory.services.jobs.schedules import fire
from signalfactory.services.platform import Platform
from signalfactory.settings import ScheduleEntry, Settings
from signalfactory.testing import FixedClock, memory_platform
from signalfactory.testing.jobs import JobStore, RecordingJobQueue

RUNS: list[tuple[str, int]] = []


def _ok(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    RUNS.append((ctx.job_id, ctx.attempt))
    ctx.progress(0.5)
    ctx.on_commit(lambda uow: _effect(uow.jobs.get(ctx.job_id)))
    return {"value": payload.get("value", 1), "attempt": ctx.attempt}


EFFECTS: list[str] = []


def _effect(job: Job | None) -> None:
    # Runs inside the unit of work that stores the result: the job is already succeeded there.
    EFFECTS.append(job.status if job is not None else "missing")


def _flaky(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    RUNS.append((ctx.job_id, ctx.attempt))
    if ctx.attempt < int(payload.get("succeed_on", 10**6)):
        raise TemporaryError(f"upstream timed out on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


def _bad(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    raise BadInputError("symbol ZZZZ is not in the store")


def _ops(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    raise OperationalError("disk full")


register_task("unit.ok", _ok)
register_task("unit.flaky", _flaky)
register_task("unit.bad", _bad)
register_task("unit.ops", _ops)


@pytest.fixture
def mp(tmp_path: Path) -> Iterator[Platform]:
    RUNS.clear()
    EFFECTS.clear()
    settings = Settings(home=tmp_path, job_backoff_seconds=30.0, job_backoff_max_seconds=300.0,
                        job_lease_seconds=10.0, job_max_attempts=5)
    yield memory_platform(settings, clock=FixedClock(datetime(2026, 11, 28, 9, tzinfo=UTC)))


def _clock(platform: Platform) -> FixedClock:
    clock = platform.clock
    assert isinstance(clock, FixedClock)
    return clock


def _queue(platform: Platform) -> RecordingJobQueue:
    queue = platform.jobs
    assert isinstance(queue, RecordingJobQueue)
    return queue


def _stored(platform: Platform) -> JobStore:
    with platform.database.read() as uow:
        return copy.deepcopy(uow.jobs.store)  # type: ignore[attr-defined]


def _run_next(platform: Platform, owner: str = "unit-worker") -> str | None:
    job = claim_next(platform, owner)
    return None if job is None else run_claimed(platform, job, owner).status


# -- submit ---------------------------------------------------------------------------------

def test_submit_stores_a_queued_job_and_announces_it(mp: Platform) -> None:
    job = jobs.submit(mp, "unit.ok", {"value": 7}, priority=3)
    assert job.status == "queued" and job.attempts == 0 and job.progress == 0.0
    assert job.tenant_id == 1 and job.priority == 3 and job.max_attempts == 5
    assert job.created_at == job.run_after == _clock(mp).now()
    assert _queue(mp).announced == [job.id]
    assert jobs.get_job(mp, job.id) == job
    assert [j.id for j in jobs.list_jobs(mp, tenant_id=1, status="queued")] == [job.id]
    assert jobs.list_jobs(mp, tenant_id=2) == []
    with pytest.raises(NotFoundError):
        jobs.get_job(mp, job.id, tenant_id=2)


def test_bad_submissions_store_and_announce_nothing(mp: Platform) -> None:
    jobs.submit(mp, "unit.ok")
    before = _stored(mp)
    with pytest.raises(BadInputError, match="unknown job kind 'nope'"):
        jobs.submit(mp, "nope")
    with pytest.raises(BadInputError, match="dedupe key"):
        jobs.submit(mp, "unit.ok", dedupe_key="")
    with pytest.raises(BadInputError, match="max_attempts"):
        jobs.submit(mp, "unit.ok", max_attempts=101)
    with pytest.raises(BadInputError, match="unknown status"):
        jobs.list_jobs(mp, tenant_id=1, status="sleeping")
    assert _stored(mp) == before
    assert len(_queue(mp).announced) == 1


def test_dedupe_key_returns_the_first_job_and_refuses_other_work(mp: Platform) -> None:
    first = jobs.submit(mp, "unit.ok", {"v": 1}, dedupe_key="nightly")
    again = jobs.submit(mp, "unit.ok", {"v": 1}, dedupe_key="nightly")
    assert again.id == first.id
    before = _stored(mp)
    with pytest.raises(ConflictError, match="different job"):
        jobs.submit(mp, "unit.ok", {"v": 2}, dedupe_key="nightly")
    assert _stored(mp) == before
    theirs = jobs.submit(mp, "unit.ok", {"v": 1}, tenant_id=2, dedupe_key="nightly")
    assert theirs.id != first.id and theirs.tenant_id == 2
    assert _queue(mp).announced == [first.id, theirs.id]  # a deduplicated job is not re-sent


def test_submit_in_a_unit_of_work_is_not_announced_and_rolls_back(mp: Platform) -> None:
    with mp.database.write() as uow:
        job = jobs.submit(mp, "unit.ok", uow=uow)
    assert _queue(mp).announced == []
    jobs.dispatch(mp, job.id)
    assert _queue(mp).announced == [job.id]
    with pytest.raises(RuntimeError), mp.database.write() as uow:
        lost = jobs.submit(mp, "unit.ok", uow=uow)
        raise RuntimeError("the caller's transaction fails")
    with pytest.raises(NotFoundError):
        jobs.get_job(mp, lost.id)


def test_dispatch_never_raises(mp: Platform) -> None:
    class Broken(RecordingJobQueue):
        def announce(self, job_ids: Any) -> None:
            raise ConnectionError("broker down")

    broken = memory_platform(mp.settings)
    object.__setattr__(broken, "jobs", Broken())
    job = jobs.submit(broken, "unit.ok")
    assert jobs.get_job(broken, job.id).status == "queued"


# -- cancel and retry -------------------------------------------------------------------------

def test_cancel_queued_running_finished_and_missing(mp: Platform) -> None:
    queued = jobs.submit(mp, "unit.ok")
    assert jobs.cancel_job(mp, queued.id).status == "cancelled"
    assert jobs.cancel_job(mp, queued.id).status == "cancelled"  # idempotent
    assert _run_next(mp) is None

    running = jobs.submit(mp, "unit.ok")
    assert claim_next(mp, "w") is not None
    asked = jobs.cancel_job(mp, running.id)
    assert asked.status == "running" and asked.cancel_requested

    done = jobs.submit(mp, "unit.ok")
    assert _run_next(mp) == "succeeded"
    before = _stored(mp)
    with pytest.raises(ConflictError, match="already succeeded"):
        jobs.cancel_job(mp, done.id)
    with pytest.raises(NotFoundError):
        jobs.cancel_job(mp, done.id, tenant_id=99)
    with pytest.raises(NotFoundError):
        jobs.cancel_job(mp, "no-such-job")
    assert _stored(mp) == before


def test_retry_requeues_only_finished_jobs(mp: Platform) -> None:
    job = jobs.submit(mp, "unit.ops")
    assert _run_next(mp) == "dead"
    again = jobs.retry_job(mp, job.id)
    assert again.status == "queued" and again.attempts == 0 and again.result is None
    assert _queue(mp).announced == [job.id, job.id]
    with pytest.raises(ConflictError, match="is queued"):
        jobs.retry_job(mp, job.id)
    with pytest.raises(NotFoundError):
        jobs.retry_job(mp, job.id, tenant_id=2)


# -- running -----------------------------------------------------------------------------------

def test_claim_run_and_store_the_result_with_its_effect(mp: Platform) -> None:
    low = jobs.submit(mp, "unit.ok", {"value": 1})
    high = jobs.submit(mp, "unit.ok", {"value": 2}, priority=5)
    assert _run_next(mp) == "succeeded"  # the higher priority first
    assert _run_next(mp) == "succeeded"
    assert _run_next(mp) is None
    assert [job_id for job_id, _ in RUNS] == [high.id, low.id]
    done = jobs.get_job(mp, high.id)
    assert done.status == "succeeded" and done.progress == 1.0 and done.attempts == 1
    assert done.result == {"value": 2, "attempt": 1}
    assert done.lease_owner is None and done.finished_at == _clock(mp).now()
    assert EFFECTS == ["succeeded", "succeeded"]


def test_temporary_errors_back_off_then_dead_letter(mp: Platform) -> None:
    clock = _clock(mp)
    poison = jobs.submit(mp, "unit.flaky", max_attempts=3)
    assert _run_next(mp) == "queued"
    waiting = jobs.get_job(mp, poison.id)
    assert waiting.attempts == 1 and "attempt 1" in (waiting.error or "")
    assert waiting.run_after == clock.now() + timedelta(seconds=30)
    assert _run_next(mp) is None  # backing off
    clock.advance(30)
    assert _run_next(mp) == "queued"
    assert jobs.get_job(mp, poison.id).run_after == clock.now() + timedelta(seconds=60)
    clock.advance(60)
    assert _run_next(mp) == "dead"
    dead = jobs.get_job(mp, poison.id)
    assert dead.status == "dead" and dead.attempts == 3
    assert "attempt 3 of 3" in (dead.error or "")
    assert [a for _, a in RUNS] == [1, 2, 3]

    healed = jobs.submit(mp, "unit.flaky", {"succeed_on": 2}, max_attempts=3)
    assert _run_next(mp) == "queued"
    clock.advance(30)
    assert _run_next(mp) == "succeeded"
    assert jobs.get_job(mp, healed.id).result == {"attempt": 2}


def test_bad_input_fails_at_once_and_operational_goes_dead(mp: Platform) -> None:
    bad = jobs.submit(mp, "unit.bad")
    ops = jobs.submit(mp, "unit.ops")
    assert sorted([_run_next(mp), _run_next(mp)]) == ["dead", "failed"]  # type: ignore[type-var]
    bad_now, ops_now = jobs.get_job(mp, bad.id), jobs.get_job(mp, ops.id)
    assert bad_now.status == "failed" and "ZZZZ" in (bad_now.error or "")
    assert ops_now.status == "dead" and ops_now.error == "disk full"
    assert bad_now.attempts == ops_now.attempts == 1


def test_a_zombie_cannot_store_after_its_lease_was_taken_over(mp: Platform) -> None:
    clock = _clock(mp)
    job = jobs.submit(mp, "unit.ok")
    first = claim_next(mp, "worker-a")
    assert first is not None and first.lease_owner == "worker-a"
    assert claim_next(mp, "worker-b") is None  # leased
    zombie = JobContext(mp, first, "worker-a", mp.settings.job_lease_seconds)
    zombie.on_commit(lambda uow: EFFECTS.append("zombie"))
    clock.advance(11)  # worker-a stalls past its lease
    second = claim_next(mp, "worker-b")
    # the lost run was a loss, not an attempt: the job's second run is still attempt 1
    assert second is not None and second.lease_owner == "worker-b"
    assert second.attempts == 1 and second.losses == 1 and second.runs == 2
    zombie.heartbeat()
    assert zombie.lease_lost and zombie.cancelled()
    assert not zombie.store_outcome("succeeded", result={"by": "a"})
    assert run_claimed(mp, second, "worker-b").status == "succeeded"
    assert jobs.get_job(mp, job.id).result == {"value": 1, "attempt": 2}
    assert "zombie" not in EFFECTS


def test_a_job_lost_on_its_last_attempt_runs_again(mp: Platform) -> None:
    job = jobs.submit(mp, "unit.ok", max_attempts=1)
    assert claim_next(mp, "gone") is not None
    _clock(mp).advance(11)
    reap_expired(mp)
    again = jobs.get_job(mp, job.id)
    assert again.status == "queued" and again.attempts == 0 and again.losses == 1
    assert _queue(mp).announced[-1:] == [job.id]  # told to the workers at once
    assert _run_next(mp) == "succeeded"


def test_a_job_that_loses_max_losses_workers_is_reaped_dead(mp: Platform) -> None:
    platform = dataclasses.replace(mp, settings=mp.settings.model_copy(
        update={"job_max_losses": 2}))
    job = jobs.submit(platform, "unit.ok", max_attempts=5)
    for _ in range(2):
        assert claim_next(platform, "gone") is not None
        _clock(platform).advance(11)
    reap_expired(platform)
    dead = jobs.get_job(platform, job.id)
    assert dead.status == "dead" and dead.losses == 2 and dead.attempts == 1
    assert "lease expired" in (dead.error or "") and "2 times" in (dead.error or "")
    assert _run_next(platform) is None


def test_execute_by_id_runs_a_named_job_or_says_when_to_look_again(mp: Platform) -> None:
    job = jobs.submit(mp, "unit.flaky", {"succeed_on": 2}, max_attempts=3)
    first = execute_by_id(mp, job.id, "celery-a")
    assert first.status == "queued" and first.retry_in == 30.0
    later = execute_by_id(mp, job.id, "celery-a")
    assert later.status == "queued" and later.retry_in == 30.0  # not due yet: nothing ran
    _clock(mp).advance(30)
    assert execute_by_id(mp, job.id, "celery-b").status == "succeeded"
    assert execute_by_id(mp, job.id).status == "succeeded"  # finished: nothing to do
    assert execute_by_id(mp, "no-such-job").status == "missing"
    assert [a for _, a in RUNS] == [1, 2]


def test_wait_for_returns_the_finished_job(mp: Platform) -> None:
    job = jobs.submit(mp, "unit.ok")
    assert _run_next(mp) == "succeeded"
    seen: list[str] = []
    done = jobs.wait_for(mp, job.id, timeout=1, on_progress=lambda j: seen.append(j.status))
    assert done.status == "succeeded" and seen == ["succeeded"]
    with pytest.raises(NotFoundError):
        jobs.wait_for(mp, "no-such-job", timeout=0)


# -- schedules and housekeeping ---------------------------------------------------------------

def test_a_schedule_slot_fires_once(mp: Platform) -> None:
    entry = ScheduleEntry(name="nightly", cron="0 22 * * *", kind="unit.ok")
    slot = datetime(2026, 11, 27, 22, tzinfo=UTC)
    assert fire(mp, entry, slot, first_run_fires=False) is None  # first sight: remembered
    assert jobs.list_jobs(mp, tenant_id=None) == []
    nxt = slot + timedelta(days=1)
    fired = fire(mp, entry, nxt, first_run_fires=False)
    assert fired is not None and fired.dedupe_key == "schedule:nightly:2026-11-28T22:00Z"
    assert fire(mp, entry, nxt, first_run_fires=True) is None
    assert fire(mp, entry, slot, first_run_fires=True) is None  # never back
    assert [j.id for j in jobs.list_jobs(mp, tenant_id=None)] == [fired.id]
    assert _queue(mp).announced == [fired.id]


def test_prune_deletes_old_finished_jobs_but_keeps_dead_ones(mp: Platform) -> None:
    done = jobs.submit(mp, "unit.ok")
    dead = jobs.submit(mp, "unit.ops")
    assert _run_next(mp) and _run_next(mp)
    _clock(mp).advance(days=31)
    prune = jobs.submit(mp, "prune_jobs", {"older_than_days": 30})
    assert _run_next(mp) == "succeeded"
    result = jobs.get_job(mp, prune.id).result
    assert result is not None and result["deleted"] == 1
    with pytest.raises(NotFoundError):
        jobs.get_job(mp, done.id)
    assert jobs.get_job(mp, dead.id).status == "dead"
