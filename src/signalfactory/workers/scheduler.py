"""The embedded scheduler: a loop (thread or ``beat`` process) that fires the cron schedules
of the settings (see :mod:`signalfactory.services.jobs.schedules` for the exactly-once rules).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from signalfactory.domain.errors import TemporaryError
from signalfactory.domain.jobs import Job
from signalfactory.observability.logging import get_logger
from signalfactory.services.jobs.registry import ensure_tasks_loaded
from signalfactory.services.jobs.schedules import fire, latest_slot, next_slot
from signalfactory.services.sources.schedules import (
    fire_due_sources,
    seconds_until_next_source,
)
from signalfactory.settings import ScheduleEntry

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform

log = get_logger("signalfactory.jobs.scheduler")

#: the longest an idle scheduler sleeps, so new settings or a clock jump are noticed
MAX_SLEEP_SECONDS = 30.0


class Scheduler:
    """The embedded scheduler: a loop (thread or ``beat`` process) over the settings' entries."""

    def __init__(self, platform: Platform, entries: list[ScheduleEntry] | None = None) -> None:
        self.platform = platform
        self.entries = [e for e in (entries if entries is not None
                                    else platform.settings.schedules) if e.enabled]
        self.tz = platform.settings.schedule_timezone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: datetime | None = None) -> list[Job]:
        """Fire every schedule whose latest slot has not fired yet; returns new jobs."""
        now = now or self.platform.clock.now()
        fired: list[Job] = []
        for entry in self.entries:
            try:
                job = fire(self.platform, entry, latest_slot(entry, now, self.tz),
                           first_run_fires=False)
            except (TemporaryError, DBAPIError) as exc:
                log.warning("scheduler cannot reach the database; will retry",
                            schedule=entry.name, error=type(exc).__name__)
                continue
            if job is not None:
                fired.append(job)
        try:
            # Sources are records, read on every tick: one added or paused at run time is
            # picked up without a restart.
            fired.extend(fire_due_sources(self.platform, now))
        except (TemporaryError, DBAPIError) as exc:
            log.warning("scheduler cannot read the sources; will retry",
                        error=type(exc).__name__)
        return fired

    def seconds_until_next(self, now: datetime | None = None) -> float:
        now = now or self.platform.clock.now()
        waits = [(next_slot(e, now, self.tz) - now).total_seconds() for e in self.entries]
        try:
            source_wait = seconds_until_next_source(self.platform, now)
        except (TemporaryError, DBAPIError):
            source_wait = None
        if source_wait is not None:
            waits.append(source_wait)
        if not waits:
            return MAX_SLEEP_SECONDS
        return min(max(min(waits), 0.05), MAX_SLEEP_SECONDS)

    def run(self) -> None:
        ensure_tasks_loaded(self.platform.settings.task_module_names)
        log.info("scheduler started", schedules=[e.name for e in self.entries])
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.seconds_until_next())

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="job-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
