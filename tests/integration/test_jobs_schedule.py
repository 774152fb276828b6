"""Cron schedules: each slot submits one job, across restarts, racing schedulers and beat."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.tables import jobs
from signalfactory.bootstrap import build_platform
from signalfactory.services.jobs.schedules import fire_current_slot, latest_slot
from signalfactory.services.platform import Platform
from signalfactory.settings import ScheduleEntry
from signalfactory.workers.scheduler import Scheduler
from tests.helpers import engine_of
from tests.jobs_tasks import create_tables

SCHEDULES = ('[{"name": "every5", "cron": "*/5 * * * *", "kind": "test.slow", '
             '"payload": {"steps": 0}}, '
             '{"name": "typo", "cron": "0 0 * * *", "kind": "no.such.kind"}]')


def at(hh: int, mm: int, ss: float = 0.0) -> datetime:
    return datetime(2026, 11, 27, hh, mm, int(ss), int((ss % 1) * 1e6), tzinfo=UTC)


@pytest.fixture
def sp(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setenv("SIGNALFACTORY_TASK_MODULES", "tests.jobs_tasks")
    monkeypatch.setenv("SIGNALFACTORY_SCHEDULES", SCHEDULES)
    monkeypatch.setenv("SIGNALFACTORY_RETENTION_CRON", "")  # only the schedules under test
    monkeypatch.setenv("SIGNALFACTORY_TRADING_REPORT_CRON", "")
    monkeypatch.setenv("SIGNALFACTORY_ANOMALY_SCAN_CRON", "")
    platform = build_platform(migrate_db=True)
    create_tables(engine_of(platform))
    try:
        yield platform
    finally:
        platform.close()


def scheduled_jobs(platform: Platform) -> list[tuple[str, dict[str, object]]]:
    with engine_of(platform).connect() as conn:
        rows = conn.execute(sa.select(jobs.c.dedupe_key, jobs.c.payload)
                            .order_by(jobs.c.created_at)).all()
    return [(r[0], r[1]) for r in rows]


def test_each_slot_fires_once_across_restarts_and_races(sp: Platform) -> None:
    assert [e.name for e in Scheduler(sp).entries] == ["every5", "typo"]
    first = Scheduler(sp)
    assert first.tick(at(10, 2, 30)) == []  # first sight: remember now, do not back-fill
    assert first.tick(at(10, 4, 59)) == []
    fired = first.tick(at(10, 5, 0.5))
    assert [j.dedupe_key for j in fired] == ["schedule:every5:2026-11-27T10:05Z"]
    assert fired[0].payload == {"steps": 0} and fired[0].status == "queued"

    restarted = Scheduler(sp)  # a new process: the slot is recorded, nothing repeats
    assert restarted.tick(at(10, 5, 3)) == []

    results: list[int] = []
    racers = [Scheduler(sp) for _ in range(4)]
    threads = [threading.Thread(target=lambda s=s: results.append(len(s.tick(at(10, 10, 1)))))
               for s in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 1

    # Down from 10:12 to 10:26: the missed slots coalesce into the latest one.
    assert [j.dedupe_key for j in restarted.tick(at(10, 26))] == [
        "schedule:every5:2026-11-27T10:25Z"]
    # Celery beat's task for the same slot finds it fired; the next slot it fires itself.
    assert fire_current_slot(sp, "every5", now=at(10, 25, 10)) is None
    beat_job = fire_current_slot(sp, "every5", now=at(10, 29, 59.0))  # a hair early
    assert beat_job is not None
    assert beat_job.dedupe_key == "schedule:every5:2026-11-27T10:30Z"
    assert restarted.tick(at(10, 30, 1)) == []
    assert [k for k, _ in scheduled_jobs(sp)] == [
        "schedule:every5:2026-11-27T10:05Z", "schedule:every5:2026-11-27T10:10Z",
        "schedule:every5:2026-11-27T10:25Z", "schedule:every5:2026-11-27T10:30Z"]
    assert fire_current_slot(sp, "gone", now=at(10, 31)) is None


def test_cron_is_read_in_the_configured_time_zone() -> None:
    entry = ScheduleEntry(name="kr-open", cron="0 9 * * 1-5", kind="collect")
    assert latest_slot(entry, at(0, 0, 30), "Asia/Seoul") == at(0, 0)  # 09:00 KST
    assert latest_slot(entry, at(0, 0), "UTC") == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="5-field cron"):
        ScheduleEntry(name="bad", cron="0 9 * *", kind="collect")


def test_seconds_until_next_slot(sp: Platform) -> None:
    scheduler = Scheduler(sp, [ScheduleEntry(name="m", cron="* * * * *", kind="test.slow")])
    assert scheduler.seconds_until_next(at(10, 0, 45)) == pytest.approx(15.0)
    assert Scheduler(sp, []).seconds_until_next(at(10, 0)) == 30.0
