"""The trading side of a worker process: the database watchdog (read-only within 5 s of an
outage) and, at start, a reconciling tick for every running bot (bots resume after a
restart; their ticks then run as jobs on this process's runner or on Celery)."""

from __future__ import annotations

from signalfactory.observability.logging import get_logger
from signalfactory.services.platform import Platform
from signalfactory.services.trading.sessions import close_exchanges
from signalfactory.services.trading.tasks import resume_bots
from signalfactory.services.trading.watchdog import Watchdog

log = get_logger("signalfactory.trading.worker")


class TradingWorker:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.watchdog = Watchdog(platform)

    def start(self) -> None:
        self.watchdog.start()
        try:
            resumed = resume_bots(self.platform, reason="worker-start")
        except Exception as exc:  # the database may be down: the watchdog resumes them later
            log.warning("could not resume running bots yet",
                        error=f"{type(exc).__name__}: {exc}")
            return
        if resumed:
            log.info("running bots resumed", bots=resumed)

    def stop(self) -> None:
        self.watchdog.stop()
        close_exchanges(self.platform)
