"""Ports every feature shares: the database as units of work, the clock, the hot-read cache.

A port is a ``Protocol``: services depend on it, adapters implement it structurally, and
``signalfactory.testing`` ships an in-memory implementation of each. Repository ports live
beside the services that use them (``services/<feature>/ports.py``); the unit of work gathers
them so that one transaction can span several aggregates (a signal and the outbox rows that
deliver it, a backtest and the job that produced it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from signalfactory.services.accounts.ports import (
        AccountRepository,
        IdempotencyRepository,
        UsageRepository,
        WebSessionRepository,
    )
    from signalfactory.services.audit.ports import AuditRepository
    from signalfactory.services.backtests.ports import BacktestRepository
    from signalfactory.services.delivery.ports import (
        CampaignRepository,
        DeliveryRepository,
        EndpointRepository,
    )
    from signalfactory.services.jobs.ports import JobRepository, SplitRepository
    from signalfactory.services.marketdata.ports import BarRepository, InstrumentRepository
    from signalfactory.services.reports.ports import DailyReportRepository
    from signalfactory.services.sandbox.ports import SandboxRunRepository
    from signalfactory.services.scans.ports import ScanRepository
    from signalfactory.services.signals.ports import SignalRepository
    from signalfactory.services.sources.ports import SourceRepository
    from signalfactory.services.strategies.ports import StrategyRepository
    from signalfactory.services.streaming.ports import SubscriptionRepository
    from signalfactory.services.trading.ports import (
        BotMarkRepository,
        BotRepository,
        ExchangeAccountRepository,
        OrderRepository,
        PositionRepository,
        TradingStateRepository,
    )


class Clock(Protocol):
    """Time as the platform sees it; ``signalfactory.testing.FixedClock`` in tests."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch (latency measurements)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timeouts, intervals)."""
        ...


class UnitOfWork(Protocol):
    """One database transaction, with a repository per aggregate bound to it.

    Everything done through one unit of work commits together or not at all.
    """

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: the few behaviours that differ (id order) ask it."""
        ...

    @property
    def instruments(self) -> InstrumentRepository: ...

    @property
    def bars(self) -> BarRepository: ...

    @property
    def strategies(self) -> StrategyRepository: ...

    @property
    def signals(self) -> SignalRepository: ...

    @property
    def scans(self) -> ScanRepository: ...

    @property
    def backtests(self) -> BacktestRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def accounts(self) -> AccountRepository: ...

    @property
    def usage(self) -> UsageRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def web_sessions(self) -> WebSessionRepository: ...

    @property
    def subscriptions(self) -> SubscriptionRepository: ...

    @property
    def endpoints(self) -> EndpointRepository: ...

    @property
    def deliveries(self) -> DeliveryRepository: ...

    @property
    def campaigns(self) -> CampaignRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def daily_reports(self) -> DailyReportRepository: ...

    # -- trading --
    @property
    def exchange_accounts(self) -> ExchangeAccountRepository: ...

    @property
    def bots(self) -> BotRepository: ...

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def positions(self) -> PositionRepository: ...

    @property
    def trading_states(self) -> TradingStateRepository: ...

    @property
    def bot_marks(self) -> BotMarkRepository: ...

    @property
    def sources(self) -> SourceRepository: ...

    @property
    def sandbox_runs(self) -> SandboxRunRepository: ...

    @property
    def splits(self) -> SplitRepository: ...

    def on_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` after this transaction commits (never if it rolls back)."""
        ...


class Database(Protocol):
    """Where units of work come from: writes on the primary, reads on a replica when set."""

    @property
    def dialect(self) -> str: ...

    def write(self, *, durable: bool = True) -> AbstractContextManager[UnitOfWork]:
        """A read-write transaction on the primary, committed when the block ends without
        an exception. On SQLite it takes the write lock up front.

        ``durable=False``: the commit need not wait for the disk (PostgreSQL's
        ``synchronous_commit = off`` for this transaction): a crash of the database server
        may lose it, never corrupt anything. Only for writes that can be recovered from
        elsewhere (an exchange's acknowledgement, which reconciliation fetches again)."""
        ...

    def read(self, *, primary: bool = False) -> AbstractContextManager[UnitOfWork]:
        """A read-only unit of work: on the read replica when one is configured, unless
        ``primary`` (a caller that must read its own writes)."""
        ...

    @property
    def has_replica(self) -> bool:
        """True when ``read()`` reads a replica, so a read of the primary is another
        connection; False when ``read()`` and ``read(primary=True)`` are the same."""
        ...

    def read_only(self) -> str | None:
        """Why writes are refused now (the primary is unreachable, or an operator switched
        read-only mode on); None while they go through. ``write()`` raises
        ``ReadOnlyError`` (a ``TemporaryError``) meanwhile."""
        ...

    def set_read_only(self, reason: str | None) -> None:
        """The operator's switch: on with a reason, off with None; seen by every process."""
        ...

    def health(self) -> dict[str, str]:
        """Readiness checks of the database: ``{"database": "ok", "migrations": "ok"}`` or
        what is wrong and what to do."""
        ...

    def pool_usage(self) -> tuple[int, int] | None:
        """Connections checked out and the most this process opens (None: no pool)."""
        ...

    def close(self) -> None: ...


class HotCache(Protocol):
    """Hot reads, invalidated by namespace after committed writes (see adapters/cache.py)."""

    def get_or_load(self, namespace: str, parts: Sequence[object], load: Callable[[], str],
                    *, tenant_id: int | None = None) -> str: ...

    def invalidate(self, *namespaces: str) -> None: ...

    def health(self) -> str: ...


ReadinessProbe = Callable[[], str]
"""A named readiness check: ``"ok"``, ``"degraded: ..."`` (still serving) or a failure."""


