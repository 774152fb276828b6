"""Delivery workers: threads that lease due outbox rows and send them.

Like the job runner it keeps nothing of its own: the rows are the queue, a claim is a lease,
and a worker that dies simply stops settling its rows, which become due again when their
lease expires. A wake-up from ``platform.delivery_queue`` (rows committed in this process)
or a poll (rows committed elsewhere, retries coming due) starts the next claim. The first
thread takes only real-time rows, so a campaign or digest batch on the other threads never
delays a signal.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

from signalfactory.domain.delivery import REALTIME
from signalfactory.domain.errors import TemporaryError
from signalfactory.observability.logging import get_logger
from signalfactory.services.delivery.dispatch import DispatchReport, deliver_due
from signalfactory.services.platform import Platform

log = get_logger("signalfactory.delivery.worker")


def worker_owner(name: str) -> str:
    """A lease owner unique to this thread of this process on this machine."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}:{uuid.uuid4().hex[:8]}"


class DeliveryWorker:
    """``concurrency`` threads dispatching outbox rows until :meth:`stop`."""

    def __init__(self, platform: Platform, concurrency: int = 2, *,
                 poll_seconds: float = 0.5, batch: int | None = None) -> None:
        if concurrency < 1:
            raise ValueError("a delivery worker needs at least one thread")
        self.platform = platform
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.batch = batch or platform.settings.delivery_batch
        self._stop = threading.Event()
        self._wakes: list[threading.Event] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.concurrency):
            wake = threading.Event()
            if self.platform.delivery_queue is not None:
                self.platform.delivery_queue.add_waker(wake)
            # thread 0 serves real-time rows only (when there is more than one thread)
            max_priority = REALTIME if i == 0 and self.concurrency > 1 else None
            thread = threading.Thread(target=self._loop, args=(wake, max_priority),
                                      name=f"delivery-{i}", daemon=True)
            self._wakes.append(wake)
            self._threads.append(thread)
            thread.start()
        log.info("delivery worker started", concurrency=self.concurrency)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop claiming; a batch being sent stops after its current message and hands its
        unsent rows back (their next claim does not count as an attempt)."""
        self._stop.set()
        for wake in self._wakes:
            wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        if self.platform.delivery_queue is not None:
            for wake in self._wakes:
                self.platform.delivery_queue.remove_waker(wake)
        log.info("delivery worker stopped")

    def run_once(self, owner: str, max_priority: int | None = None) -> DispatchReport:
        """One claim: real-time rows first, then (with room left) any priority."""
        first = deliver_due(self.platform, owner, limit=self.batch, max_priority=REALTIME,
                            stopping=self._stop)
        if max_priority == REALTIME or first.claimed >= self.batch or self._stop.is_set():
            return first
        rest = deliver_due(self.platform, owner, limit=self.batch - first.claimed,
                           max_priority=max_priority, stopping=self._stop)
        return _sum(first, rest)

    def _loop(self, wake: threading.Event, max_priority: int | None) -> None:
        owner = worker_owner(threading.current_thread().name)
        failures = 0
        while not self._stop.is_set():
            wake.clear()
            try:
                report = self.run_once(owner, max_priority)
                failures = 0
            except TemporaryError as exc:
                failures += 1
                log.warning("delivery worker cannot reach the database; retrying",
                            error=str(exc).splitlines()[0])
                self._stop.wait(min(self.poll_seconds * 2 ** min(failures, 5), 30.0))
                continue
            except Exception:  # one bad batch must not kill the thread
                log.exception("delivery worker error")
                self._stop.wait(self.poll_seconds)
                continue
            if report.claimed == 0 or report.claimed == report.deferred:
                wake.wait(self.poll_seconds)


def _sum(a: DispatchReport, b: DispatchReport) -> DispatchReport:
    return DispatchReport(claimed=a.claimed + b.claimed, delivered=a.delivered + b.delivered,
                          retried=a.retried + b.retried, dead=a.dead + b.dead,
                          suppressed=a.suppressed + b.suppressed,
                          deferred=a.deferred + b.deferred,
                          disabled_endpoints=a.disabled_endpoints + b.disabled_endpoints)
