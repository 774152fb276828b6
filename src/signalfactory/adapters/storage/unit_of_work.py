"""The SQL implementation of the ``Database`` and ``UnitOfWork`` ports (SQLite, PostgreSQL).

A unit of work is one connection in one transaction; its repositories are made on first use
and bound to that connection. A database that is busy or unreachable surfaces as
``TemporaryError`` (retried by jobs, 503 with ``Retry-After`` in the API), never as a bare
driver error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Connection, Engine

from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.bar_store import BarStore
from signalfactory.adapters.storage.read_only import ReadOnlyGuard, is_unreachable
from signalfactory.domain.errors import (
    BadInputError,
    OperationalError,
    ReadOnlyError,
    TemporaryError,
)
from signalfactory.observability.logging import get_logger
from signalfactory.observability.recording import metrics

if TYPE_CHECKING:
    from signalfactory.adapters.storage.api_keys import SqlAccountRepository
    from signalfactory.adapters.storage.audit import SqlAuditRepository
    from signalfactory.adapters.storage.backtests import SqlBacktestRepository
    from signalfactory.adapters.storage.bar_repository import SqlBarRepository
    from signalfactory.adapters.storage.daily_reports import SqlDailyReportRepository
    from signalfactory.adapters.storage.deliveries import SqlDeliveryRepository
    from signalfactory.adapters.storage.endpoints import (
        SqlCampaignRepository,
        SqlEndpointRepository,
    )
    from signalfactory.adapters.storage.idempotency import SqlIdempotencyRepository
    from signalfactory.adapters.storage.instruments import SqlInstrumentRepository
    from signalfactory.adapters.storage.job_splits import SqlSplitRepository
    from signalfactory.adapters.storage.jobs import SqlJobRepository
    from signalfactory.adapters.storage.sandbox_runs import SqlSandboxRunRepository
    from signalfactory.adapters.storage.scans import SqlScanRepository
    from signalfactory.adapters.storage.signals import SqlSignalRepository
    from signalfactory.adapters.storage.sources import SqlSourceRepository
    from signalfactory.adapters.storage.strategies import SqlStrategyRepository
    from signalfactory.adapters.storage.subscriptions import SqlSubscriptionRepository
    from signalfactory.adapters.storage.trading_accounts import SqlExchangeAccountRepository
    from signalfactory.adapters.storage.trading_bots import SqlBotRepository
    from signalfactory.adapters.storage.trading_orders import SqlOrderRepository
    from signalfactory.adapters.storage.trading_positions import (
        SqlBotMarkRepository,
        SqlPositionRepository,
    )
    from signalfactory.adapters.storage.trading_states import SqlTradingStateRepository
    from signalfactory.adapters.storage.usage import SqlUsageRepository
    from signalfactory.adapters.storage.web_sessions import SqlWebSessionRepository

log = get_logger("signalfactory.storage")

#: Driver messages that mean "try again shortly", not "this is broken".
_TRANSIENT = ("database is locked", "database table is locked", "could not connect",
              "connection refused", "server closed the connection", "terminating connection",
              "connection timeout", "timeout expired", "too many clients")


def is_transient(exc: BaseException) -> bool:
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError |
                      sqlalchemy.exc.TimeoutError):
        return False
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True  # the pool had no free connection in time
    text = str(exc.orig if getattr(exc, "orig", None) is not None else exc).lower()
    return bool(getattr(exc, "connection_invalidated", False)) or any(
        marker in text for marker in _TRANSIENT)


def _count_refused_write() -> None:
    if (m := metrics()) is not None:
        m.WRITES_REFUSED_READ_ONLY.inc()


@contextmanager
def translated_errors() -> Iterator[None]:
    """Driver errors that a retry can fix become ``TemporaryError``; a value the database
    refuses (PostgreSQL: a NUL character in text, a number or date out of range) becomes
    ``BadInputError``. Nothing was stored either way: the transaction rolled back."""
    try:
        yield
    except sqlalchemy.exc.DataError as exc:
        log.warning("database refused a value",
                    error=str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__)
        raise BadInputError("a value in the request cannot be stored or compared by the "
                            "database (a NUL character, or a number or date out of range); "
                            "correct it") from exc
    except sqlalchemy.exc.DBAPIError as exc:
        if is_transient(exc):
            first = str(exc.orig if exc.orig is not None else exc).splitlines()[0]
            raise TemporaryError(f"the database is busy or unreachable ({first}); "
                                 "retry in a few seconds") from exc
        raise
    except sqlalchemy.exc.TimeoutError as exc:
        raise TemporaryError("no database connection was free in time; retry in a few "
                             "seconds") from exc


class SqlUnitOfWork:
    """Repositories bound to one connection in one transaction."""

    def __init__(self, conn: Connection, bar_store: BarStore,
                 known_instruments: dict[tuple[str, str], int] | None = None) -> None:
        self.connection = conn
        self.bar_store = bar_store
        self.known_instruments = known_instruments
        self._after_commit: list[Callable[[], None]] = []

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    def on_commit(self, action: Callable[[], None]) -> None:
        self._after_commit.append(action)

    def _committed(self) -> None:
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            action()

    # Repositories, made on first use: most units of work touch one or two of them.
    @property
    def instruments(self) -> SqlInstrumentRepository:
        from signalfactory.adapters.storage.instruments import SqlInstrumentRepository
        return SqlInstrumentRepository(self.connection, self.known_instruments, self.on_commit)

    @property
    def bars(self) -> SqlBarRepository:
        from signalfactory.adapters.storage.bar_repository import SqlBarRepository
        return SqlBarRepository(self.connection, self.bar_store)

    @property
    def strategies(self) -> SqlStrategyRepository:
        from signalfactory.adapters.storage.strategies import SqlStrategyRepository
        return SqlStrategyRepository(self.connection)

    @property
    def signals(self) -> SqlSignalRepository:
        from signalfactory.adapters.storage.signals import SqlSignalRepository
        return SqlSignalRepository(self.connection)

    @property
    def scans(self) -> SqlScanRepository:
        from signalfactory.adapters.storage.scans import SqlScanRepository
        return SqlScanRepository(self.connection)

    @property
    def backtests(self) -> SqlBacktestRepository:
        from signalfactory.adapters.storage.backtests import SqlBacktestRepository
        return SqlBacktestRepository(self.connection)

    @property
    def jobs(self) -> SqlJobRepository:
        from signalfactory.adapters.storage.jobs import SqlJobRepository
        return SqlJobRepository(self.connection)

    @property
    def accounts(self) -> SqlAccountRepository:
        from signalfactory.adapters.storage.api_keys import SqlAccountRepository
        return SqlAccountRepository(self.connection)

    @property
    def usage(self) -> SqlUsageRepository:
        from signalfactory.adapters.storage.usage import SqlUsageRepository
        return SqlUsageRepository(self.connection)

    @property
    def idempotency(self) -> SqlIdempotencyRepository:
        from signalfactory.adapters.storage.idempotency import SqlIdempotencyRepository
        return SqlIdempotencyRepository(self.connection)

    @property
    def web_sessions(self) -> SqlWebSessionRepository:
        from signalfactory.adapters.storage.web_sessions import SqlWebSessionRepository
        return SqlWebSessionRepository(self.connection)

    @property
    def subscriptions(self) -> SqlSubscriptionRepository:
        from signalfactory.adapters.storage.subscriptions import SqlSubscriptionRepository
        return SqlSubscriptionRepository(self.connection)

    @property
    def endpoints(self) -> SqlEndpointRepository:
        from signalfactory.adapters.storage.endpoints import SqlEndpointRepository
        return SqlEndpointRepository(self.connection)

    @property
    def deliveries(self) -> SqlDeliveryRepository:
        from signalfactory.adapters.storage.deliveries import SqlDeliveryRepository
        return SqlDeliveryRepository(self.connection)

    @property
    def campaigns(self) -> SqlCampaignRepository:
        from signalfactory.adapters.storage.endpoints import SqlCampaignRepository
        return SqlCampaignRepository(self.connection)

    @property
    def audit(self) -> SqlAuditRepository:
        from signalfactory.adapters.storage.audit import SqlAuditRepository
        return SqlAuditRepository(self.connection)

    @property
    def daily_reports(self) -> SqlDailyReportRepository:
        from signalfactory.adapters.storage.daily_reports import SqlDailyReportRepository
        return SqlDailyReportRepository(self.connection)

    @property
    def exchange_accounts(self) -> SqlExchangeAccountRepository:
        from signalfactory.adapters.storage.trading_accounts import SqlExchangeAccountRepository
        return SqlExchangeAccountRepository(self.connection)

    @property
    def bots(self) -> SqlBotRepository:
        from signalfactory.adapters.storage.trading_bots import SqlBotRepository
        return SqlBotRepository(self.connection)

    @property
    def orders(self) -> SqlOrderRepository:
        from signalfactory.adapters.storage.trading_orders import SqlOrderRepository
        return SqlOrderRepository(self.connection)

    @property
    def positions(self) -> SqlPositionRepository:
        from signalfactory.adapters.storage.trading_positions import SqlPositionRepository
        return SqlPositionRepository(self.connection)

    @property
    def trading_states(self) -> SqlTradingStateRepository:
        from signalfactory.adapters.storage.trading_states import SqlTradingStateRepository
        return SqlTradingStateRepository(self.connection)

    @property
    def bot_marks(self) -> SqlBotMarkRepository:
        from signalfactory.adapters.storage.trading_positions import SqlBotMarkRepository
        return SqlBotMarkRepository(self.connection)

    @property
    def sources(self) -> SqlSourceRepository:
        from signalfactory.adapters.storage.sources import SqlSourceRepository
        return SqlSourceRepository(self.connection)

    @property
    def sandbox_runs(self) -> SqlSandboxRunRepository:
        from signalfactory.adapters.storage.sandbox_runs import SqlSandboxRunRepository
        return SqlSandboxRunRepository(self.connection)

    @property
    def splits(self) -> SqlSplitRepository:
        from signalfactory.adapters.storage.job_splits import SqlSplitRepository
        return SqlSplitRepository(self.connection)


class SqlDatabase:
    """The primary engine, an optional read engine (replica, failing over to the primary)
    and the bar store, behind the ``Database`` port.

    With a ``guard``, writes are refused with ``ReadOnlyError`` while the platform is
    read-only (adapters/storage/read_only.py): the primary is unreachable, or an operator
    switched the mode on. Reads keep working from the replica.
    """

    def __init__(self, engine: Engine, bar_store: BarStore,
                 read_engine: Engine | None = None, guard: ReadOnlyGuard | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine
        self.bar_store = bar_store
        self.guard = guard
        # (symbol, venue) -> id of committed instrument rows, for writes. Rows are never
        # deleted nor re-keyed (a restore runs with every process stopped), so an id once
        # committed stays right; a live feed's write then skips looking its symbols up.
        self.known_instruments: dict[tuple[str, str], int] = {}

    @property
    def reader(self) -> Engine:
        return self.read_engine or self.engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def has_replica(self) -> bool:
        return self.read_engine is not None

    def read_only(self) -> str | None:
        return self.guard.reason() if self.guard is not None else None

    def set_read_only(self, reason: str | None) -> None:
        if self.guard is None:
            raise OperationalError("this database has no read-only switch")
        self.guard.set_operator(reason)

    @contextmanager
    def _noting_unreachable(self) -> Iterator[None]:
        """A primary that does not answer puts the process in read-only mode; the error the
        caller gets then says so (503 ``read-only``)."""
        try:
            yield
        except TemporaryError as exc:
            cause = exc.__cause__
            if self.guard is None or cause is None or not is_unreachable(cause):
                raise
            self.guard.mark_down(cause)
            _count_refused_write()
            raise ReadOnlyError(f"the platform is read-only: {self.guard.primary_reason()}; "
                                "nothing was stored, retry later") from exc

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[SqlUnitOfWork]:
        reason = self.read_only()
        if reason is not None:
            _count_refused_write()
            raise ReadOnlyError(f"the platform is read-only ({reason}); nothing was stored, "
                                "retry later")
        with self._noting_unreachable(), translated_errors(), self.engine.begin() as conn:
            if not durable and conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            uow = SqlUnitOfWork(conn, self.bar_store, self.known_instruments)
            yield uow
        uow._committed()

    @contextmanager
    def read(self, *, primary: bool = False) -> Iterator[SqlUnitOfWork]:
        with self._noting_unreachable(), translated_errors(), \
                self._read_connection(primary) as conn:
            yield SqlUnitOfWork(conn, self.bar_store)

    def _read_connection(self, primary: bool) -> Connection:
        """The replica's connection (failing over to the primary when it is down), or the
        primary's for a caller that must read its own writes; that caller gets the replica
        while the primary is unreachable (it cannot have written anything since)."""
        if self.read_engine is None:
            return self.engine.connect()
        if not primary or (self.guard is not None and self.guard.primary_down):
            return self.read_engine.connect()
        try:
            return self.engine.connect()
        except sqlalchemy.exc.DBAPIError as exc:
            if self.guard is None or not is_unreachable(exc):
                raise
            self.guard.mark_down(exc)
            return self.read_engine.connect()

    def health(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        guard = self.guard
        operator = guard.operator_reason() if guard is not None else None
        if operator is not None:
            checks["read_only"] = f"degraded: read-only (operator: {operator})"
        if guard is not None and guard.primary_down and not guard.probe():
            return self._primary_down(checks)
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; the probe names it
            if guard is not None and is_unreachable(exc):
                guard.mark_down(exc)
                return self._primary_down(checks)
            checks["database"] = f"unreachable: {type(exc).__name__}"
            return checks
        try:
            current, head = migrate.current_revision(self.engine), migrate.head_revision()
            checks["migrations"] = "ok" if current == head else (
                f"at {current or 'none'}, head is {head}; run `signalfactory db upgrade`")
        except Exception as exc:  # an unreadable version table is reported, not raised
            checks["migrations"] = f"unknown: {type(exc).__name__}"
        return checks

    def _primary_down(self, checks: dict[str, str]) -> dict[str, str]:
        """Readiness while the primary is unreachable: still ready (degraded) when a replica
        serves the reads, not ready without one."""
        if self.read_engine is None or self.guard is None:
            checks["database"] = f"unreachable: {self.guard.last_error if self.guard else ''}"
            return checks
        checks["database"] = "ok"
        checks["read_only"] = (f"degraded: read-only (primary unreachable: "
                               f"{self.guard.last_error}; reads from the replica)")
        return checks

    def pool_usage(self) -> tuple[int, int] | None:
        pool = self.engine.pool
        if not isinstance(pool, sa.pool.QueuePool):
            return None
        return pool.checkedout(), pool.size() + max(pool._max_overflow, 0)

    def close(self) -> None:
        self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()


def sql_database(database: object) -> SqlDatabase:
    """The SQL database behind a ``Database`` port, for the operations that work below the
    repositories (backups, restores, migrations, retention)."""
    if not isinstance(database, SqlDatabase):
        raise OperationalError(f"this operation needs the SQL database, not "
                               f"{type(database).__name__}")
    return database
