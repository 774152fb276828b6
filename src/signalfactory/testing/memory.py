"""The ``Database`` and ``UnitOfWork`` ports in memory, and a platform built on them.

Services are unit-tested against these: no file, no server, the same calls as production.
A write transaction works on a copy of the stored state and swaps it in on commit, so an
exception inside a unit of work leaves the state exactly as it was (as a rollback does).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from signalfactory.domain.errors import ReadOnlyError

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform
    from signalfactory.settings import Settings
    from signalfactory.testing.accounts import (
        MemoryAccountRepository,
        MemoryIdempotencyRepository,
        MemoryUsageRepository,
        MemoryWebSessionRepository,
    )
    from signalfactory.testing.audit import MemoryAuditRepository
    from signalfactory.testing.backtests import MemoryBacktestRepository
    from signalfactory.testing.clock import FixedClock
    from signalfactory.testing.delivery import MemoryDeliveryRepository
    from signalfactory.testing.endpoints import (
        MemoryCampaignRepository,
        MemoryEndpointRepository,
    )
    from signalfactory.testing.job_splits import MemorySplitRepository
    from signalfactory.testing.jobs import MemoryJobRepository
    from signalfactory.testing.marketdata import MemoryBarRepository, MemoryInstrumentRepository
    from signalfactory.testing.reports import MemoryDailyReportRepository
    from signalfactory.testing.sandbox import MemorySandboxRunRepository
    from signalfactory.testing.scans import MemoryScanRepository
    from signalfactory.testing.signals import MemorySignalRepository
    from signalfactory.testing.sources import MemorySourceRepository
    from signalfactory.testing.strategies import MemoryStrategyRepository
    from signalfactory.testing.streaming import MemorySubscriptionRepository
    from signalfactory.testing.trading import (
        MemoryBotMarkRepository,
        MemoryBotRepository,
        MemoryExchangeAccountRepository,
        MemoryOrderRepository,
        MemoryPositionRepository,
        MemoryTradingStateRepository,
    )

T = TypeVar("T")


class MemoryState:
    """Everything stored: one store object per aggregate, made on first use."""

    def __init__(self) -> None:
        self._stores: dict[str, object] = {}

    def store(self, name: str, factory: Callable[[], T]) -> T:
        found = self._stores.get(name)
        if found is None:
            found = self._stores[name] = factory()
        return cast(T, found)


class InMemoryUnitOfWork:
    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self._after_commit: list[Callable[[], None]] = []

    @property
    def dialect(self) -> str:
        return "memory"

    def on_commit(self, action: Callable[[], None]) -> None:
        self._after_commit.append(action)

    def _committed(self) -> None:
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            action()

    @property
    def instruments(self) -> MemoryInstrumentRepository:
        from signalfactory.testing.marketdata import MemoryInstrumentRepository
        return MemoryInstrumentRepository(self.state)

    @property
    def bars(self) -> MemoryBarRepository:
        from signalfactory.testing.marketdata import MemoryBarRepository
        return MemoryBarRepository(self.state)

    @property
    def strategies(self) -> MemoryStrategyRepository:
        from signalfactory.testing.strategies import MemoryStrategyRepository
        return MemoryStrategyRepository(self.state)

    @property
    def signals(self) -> MemorySignalRepository:
        from signalfactory.testing.signals import MemorySignalRepository
        return MemorySignalRepository(self.state)

    @property
    def scans(self) -> MemoryScanRepository:
        from signalfactory.testing.scans import MemoryScanRepository
        return MemoryScanRepository(self.state)

    @property
    def backtests(self) -> MemoryBacktestRepository:
        from signalfactory.testing.backtests import MemoryBacktestRepository
        return MemoryBacktestRepository(self.state)

    @property
    def jobs(self) -> MemoryJobRepository:
        from signalfactory.testing.jobs import MemoryJobRepository
        return MemoryJobRepository(self.state)

    @property
    def accounts(self) -> MemoryAccountRepository:
        from signalfactory.testing.accounts import MemoryAccountRepository
        return MemoryAccountRepository(self.state)

    @property
    def usage(self) -> MemoryUsageRepository:
        from signalfactory.testing.accounts import MemoryUsageRepository
        return MemoryUsageRepository(self.state)

    @property
    def idempotency(self) -> MemoryIdempotencyRepository:
        from signalfactory.testing.accounts import MemoryIdempotencyRepository
        return MemoryIdempotencyRepository(self.state)

    @property
    def web_sessions(self) -> MemoryWebSessionRepository:
        from signalfactory.testing.accounts import MemoryWebSessionRepository
        return MemoryWebSessionRepository(self.state)

    @property
    def subscriptions(self) -> MemorySubscriptionRepository:
        from signalfactory.testing.streaming import MemorySubscriptionRepository
        return MemorySubscriptionRepository(self.state)

    @property
    def endpoints(self) -> MemoryEndpointRepository:
        from signalfactory.testing.endpoints import MemoryEndpointRepository
        return MemoryEndpointRepository(self.state)

    @property
    def deliveries(self) -> MemoryDeliveryRepository:
        from signalfactory.testing.delivery import MemoryDeliveryRepository
        return MemoryDeliveryRepository(self.state)

    @property
    def campaigns(self) -> MemoryCampaignRepository:
        from signalfactory.testing.endpoints import MemoryCampaignRepository
        return MemoryCampaignRepository(self.state)

    @property
    def audit(self) -> MemoryAuditRepository:
        from signalfactory.testing.audit import MemoryAuditRepository
        return MemoryAuditRepository(self.state)

    @property
    def daily_reports(self) -> MemoryDailyReportRepository:
        from signalfactory.testing.reports import MemoryDailyReportRepository
        return MemoryDailyReportRepository(self.state)

    @property
    def exchange_accounts(self) -> MemoryExchangeAccountRepository:
        from signalfactory.testing.trading import MemoryExchangeAccountRepository
        return MemoryExchangeAccountRepository(self.state)

    @property
    def bots(self) -> MemoryBotRepository:
        from signalfactory.testing.trading import MemoryBotRepository
        return MemoryBotRepository(self.state)

    @property
    def orders(self) -> MemoryOrderRepository:
        from signalfactory.testing.trading import MemoryOrderRepository
        return MemoryOrderRepository(self.state)

    @property
    def positions(self) -> MemoryPositionRepository:
        from signalfactory.testing.trading import MemoryPositionRepository
        return MemoryPositionRepository(self.state)

    @property
    def trading_states(self) -> MemoryTradingStateRepository:
        from signalfactory.testing.trading import MemoryTradingStateRepository
        return MemoryTradingStateRepository(self.state)

    @property
    def bot_marks(self) -> MemoryBotMarkRepository:
        from signalfactory.testing.trading import MemoryBotMarkRepository
        return MemoryBotMarkRepository(self.state)

    @property
    def sources(self) -> MemorySourceRepository:
        from signalfactory.testing.sources import MemorySourceRepository
        return MemorySourceRepository(self.state)

    @property
    def sandbox_runs(self) -> MemorySandboxRunRepository:
        from signalfactory.testing.sandbox import MemorySandboxRunRepository
        return MemorySandboxRunRepository(self.state)

    @property
    def splits(self) -> MemorySplitRepository:
        from signalfactory.testing.job_splits import MemorySplitRepository
        return MemorySplitRepository(self.state)


class InMemoryDatabase:
    """One process's database in memory; transactions are serialised by a lock."""

    def __init__(self) -> None:
        self.state = MemoryState()
        self._lock = threading.RLock()
        #: why writes are refused (read-only mode); set it to simulate the mode in tests
        self.read_only_reason: str | None = None

    @property
    def dialect(self) -> str:
        return "memory"

    @property
    def has_replica(self) -> bool:
        return False

    def read_only(self) -> str | None:
        return self.read_only_reason

    def set_read_only(self, reason: str | None) -> None:
        self.read_only_reason = reason

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[InMemoryUnitOfWork]:
        if self.read_only_reason is not None:
            raise ReadOnlyError(f"the platform is read-only ({self.read_only_reason}); "
                                "nothing was stored, retry later")
        with self._lock:
            work = InMemoryUnitOfWork(copy.deepcopy(self.state))
            yield work
            self.state = work.state
        work._committed()

    @contextmanager
    def read(self, *, primary: bool = False) -> Iterator[InMemoryUnitOfWork]:
        with self._lock:
            yield InMemoryUnitOfWork(copy.deepcopy(self.state))

    def health(self) -> dict[str, str]:
        checks = {"database": "ok", "migrations": "ok"}
        if self.read_only_reason is not None:
            checks["read_only"] = f"degraded: read-only (operator: {self.read_only_reason})"
        return checks

    def pool_usage(self) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        """Nothing to release."""


def memory_platform(settings: Settings | None = None, *,
                    clock: FixedClock | None = None, home: Path | None = None) -> Platform:
    """A platform on the in-memory ports: database, cache, rate limiter, job queue, clock.

    Nothing runs after bar writes unless the test subscribes something. Uploaded Python
    strategies run in a real sandbox (worker processes start on first use; ``close()`` the
    platform to stop them).
    """
    from signalfactory.adapters.cache import HotCache, MemoryCache
    from signalfactory.adapters.rate_limits import KeyRateLimiter
    from signalfactory.bootstrap import build_sandbox
    from signalfactory.services.audit.log import record as audit_record
    from signalfactory.services.platform import Platform
    from signalfactory.settings import Settings
    from signalfactory.testing.clock import FixedClock
    from signalfactory.testing.jobs import RecordingJobQueue

    if settings is None:
        settings = Settings(home=home or Path("/nonexistent/signalfactory-memory"))
    return Platform(settings=settings, database=InMemoryDatabase(),
                    cache=HotCache(MemoryCache(), ttl=settings.cache_ttl_seconds),
                    rate_limiter=KeyRateLimiter("memory://"), jobs=RecordingJobQueue(),
                    clock=clock or FixedClock(), audit=audit_record,
                    sandbox=build_sandbox(settings))
