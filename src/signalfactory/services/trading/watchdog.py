"""Read-only trading while the database is unreachable, or the platform is read-only.

The platform-wide read-only mode (adapters/storage/read_only.py: the primary unreachable
while the replica serves reads, or ``signalfactory ops read-only on``) shows in the
database's health as a ``read_only`` check; the probe treats it as the database gone, so
trading follows the platform into and out of the mode.

A process switches to read-only as soon as it notices the database is gone: the watchdog's
probe (every ``trading_probe_seconds``, a probe that does not answer within
``PROBE_TIMEOUT_SECONDS`` counts as a failure), or a tick whose database call failed. While
read-only the order path sends nothing (and could write no pending row anyway). When a probe
succeeds again the mode ends and every running bot gets a reconciling tick: orders that were
in flight when the database went are looked up on the exchange and stored.

Worst case from the outage to read-only: one probe period plus the probe timeout (1 s + 2 s
with the defaults), within the 5 s the issue allows. Processes without a watchdog thread (a
Celery pool process) probe inline from the order path, at most once per period.
"""

from __future__ import annotations

import threading
import time

from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import TRADING_READ_ONLY
from signalfactory.services.platform import Platform
from signalfactory.services.trading.runtime import ReadOnly

log = get_logger("signalfactory.trading.watchdog")

PROBE_TIMEOUT_SECONDS = 2.0


def probe(platform: Platform, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """None when the database answers in time, else what is wrong."""
    answer: list[str] = []

    def ask() -> None:
        try:
            checks = platform.database.health()
            # The platform's read-only mode (primary down with reads on the replica, or an
            # operator's switch) is read-only trading too: no order is sent while it lasts.
            answer.append(checks.get("database", "unknown") if checks.get("database") != "ok"
                          else checks.get("read_only", "ok"))
        except Exception as exc:  # any failure means unreachable; the message says which
            answer.append(f"unreachable: {type(exc).__name__}")

    worker = threading.Thread(target=ask, name="trading-db-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        return f"the database did not answer within {timeout:g} s"
    return None if answer[0] == "ok" else f"the database is {answer[0]}"


def enter(platform: Platform, reason: str) -> None:
    if platform.trading.enter_read_only(reason):
        TRADING_READ_ONLY.set(1)
        log.error("trading is read-only: no new orders until the database is back",
                  reason=reason)


def leave(platform: Platform) -> None:
    ended = platform.trading.leave_read_only()
    if ended is None:
        return
    TRADING_READ_ONLY.set(0)
    log.warning("the database is back: trading resumes after reconciliation",
                read_only_seconds=round(time.monotonic() - ended.since_monotonic, 3))
    from signalfactory.services.trading.tasks import resume_bots

    try:
        resume_bots(platform, reason="database-back")
    except Exception as exc:  # the periodic ticks reconcile anyway
        log.warning("could not queue reconciling ticks", error=f"{type(exc).__name__}: {exc}")


def check(platform: Platform) -> ReadOnly | None:
    """The read-only state, probing again first when the last probe is a period old."""
    current = platform.trading.read_only
    if current is None:
        return None
    runtime = platform.trading
    now = time.monotonic()
    if now - runtime.last_probe < platform.settings.trading_probe_seconds:
        return current
    runtime.last_probe = now
    if probe(platform) is None:
        leave(platform)
        return None
    return platform.trading.read_only


class Watchdog:
    """A thread probing the database every ``trading_probe_seconds``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        self.platform.trading.last_probe = time.monotonic()
        problem = probe(self.platform)
        if problem is None:
            leave(self.platform)
        else:
            enter(self.platform, problem)

    def run(self) -> None:
        period = self.platform.settings.trading_probe_seconds
        while not self._stop.is_set():
            started = time.monotonic()
            self.tick()
            self._stop.wait(max(period - (time.monotonic() - started), 0.05))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="trading-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
