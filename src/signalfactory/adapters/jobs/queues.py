"""Job queue adapters: how a committed job is announced to the workers that run it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signalfactory.adapters.jobs.celery_queue import CeleryJobQueue
    from signalfactory.adapters.storage.unit_of_work import SqlDatabase
    from signalfactory.settings import Settings


class LocalJobQueue:
    """Wakes the embedded runners of this process; they claim the job from the database."""

    def __init__(self) -> None:
        self._wakers: list[threading.Event] = []
        self._lock = threading.Lock()

    def add_waker(self, event: threading.Event) -> None:
        with self._lock:
            self._wakers.append(event)

    def remove_waker(self, event: threading.Event) -> None:
        with self._lock:
            if event in self._wakers:
                self._wakers.remove(event)

    def announce(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            wakers = list(self._wakers)
        for event in wakers:
            event.set()


def job_queue_for(settings: Settings, database: SqlDatabase) -> LocalJobQueue | CeleryJobQueue:
    """Celery when a broker is configured (it also wakes local runners), else local only.
    Celery is imported only then: processes without a broker never load it."""
    if not settings.broker_url:
        return LocalJobQueue()
    from signalfactory.adapters.jobs.celery_queue import CeleryJobQueue

    return CeleryJobQueue(settings, database)
