"""The job gauges (queue depth, running, dead letter), set from stored jobs at scrape time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from signalfactory.domain.jobs import DEAD, QUEUED, RUNNING

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform


class JobGauges:
    """Installation-wide gauges, whichever process runs the jobs."""

    def __init__(self) -> None:
        self.kinds_seen: set[str] = set()  # a kind whose queue emptied is set to 0, not left

    def refresh(self, platform: Platform) -> None:
        from signalfactory.observability.metrics import DEAD_LETTER, JOBS_QUEUED, JOBS_RUNNING

        with platform.database.read(primary=True) as uow:
            counts = uow.jobs.counts()
        queued = {c.kind: c.count for c in counts if c.status == QUEUED}
        for kind in self.kinds_seen | set(queued):
            JOBS_QUEUED.labels(kind).set(queued.get(kind, 0))
        self.kinds_seen |= set(queued)
        JOBS_RUNNING.set(sum(c.count for c in counts if c.status == RUNNING))
        DEAD_LETTER.set(sum(c.count for c in counts if c.status == DEAD))
