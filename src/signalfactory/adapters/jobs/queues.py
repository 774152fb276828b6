"""Job queue adapters: how a committed job is announced to the workers that run it."""

from __future__ import annotations

import threading
from collections.abc import Sequence


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

