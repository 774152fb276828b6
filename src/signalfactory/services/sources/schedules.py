"""Sources on their cron schedules: each source with a cron and not paused is one schedule
(``source:NAME``) of the job runtime, so the exactly-once rules of
:mod:`signalfactory.services.jobs.schedules` hold (one job per slot across schedulers and
restarts; a source seen for the first time starts at the next slot).

The embedded scheduler fires them on every tick; under Celery, beat runs
:func:`fire_due_sources` every ``job_sweep_seconds`` (sources change at run time, so they
cannot be beat entries of their own).
"""

from __future__ import annotations

from datetime import datetime

from signalfactory.domain.jobs import Job
from signalfactory.domain.sources import Source
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.observability.logging import get_logger
from signalfactory.services.jobs.schedules import fire, latest_slot, next_slot
from signalfactory.services.platform import Platform
from signalfactory.services.sources.records import COLLECT_SOURCE
from signalfactory.settings import ScheduleEntry

log = get_logger("signalfactory.sources")


def schedule_entry(source: Source) -> ScheduleEntry | None:
    if source.cron is None or source.paused:
        return None
    return ScheduleEntry(name=f"source:{source.name}", cron=source.cron, kind=COLLECT_SOURCE,
                         payload={"source": source.name}, tenant_id=DEFAULT_TENANT_ID)


def scheduled_sources(platform: Platform) -> list[ScheduleEntry]:
    with platform.database.read(primary=True) as uow:
        found = uow.sources.all()
    return [e for e in (schedule_entry(s) for s in found) if e is not None]


def fire_due_sources(platform: Platform, now: datetime | None = None) -> list[Job]:
    """Submit a run of every source whose latest cron slot has not fired yet."""
    now = now or platform.clock.now()
    tz = platform.settings.schedule_timezone
    fired = []
    for entry in scheduled_sources(platform):
        job = fire(platform, entry, latest_slot(entry, now, tz), first_run_fires=False)
        if job is not None:
            fired.append(job)
    return fired


def seconds_until_next_source(platform: Platform, now: datetime) -> float | None:
    entries = scheduled_sources(platform)
    if not entries:
        return None
    tz = platform.settings.schedule_timezone
    soonest = min(next_slot(e, now, tz) for e in entries)
    return max((soonest - now).total_seconds(), 0.0)
