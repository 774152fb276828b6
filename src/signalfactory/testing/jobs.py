"""In-memory job ports."""

from __future__ import annotations

import threading
from collections.abc import Sequence


class RecordingJobQueue:
    """A job queue that remembers what it was asked to announce (and wakes local runners)."""

    def __init__(self) -> None:
        self.announced: list[str] = []
        self._wakers: list[threading.Event] = []

    def add_waker(self, event: threading.Event) -> None:
        self._wakers.append(event)

    def remove_waker(self, event: threading.Event) -> None:
        if event in self._wakers:
            self._wakers.remove(event)

    def announce(self, job_ids: Sequence[str]) -> None:
        self.announced.extend(job_ids)
        for event in self._wakers:
            event.set()
