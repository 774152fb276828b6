"""Composition root: settings -> adapters -> a typed ``Platform``, with its subscribers wired.

The only module that knows which adapter implements which port. Nothing happens at import.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from signalfactory.adapters.clock import SystemClock
from signalfactory.adapters.jobs.queues import LocalJobQueue
from signalfactory.adapters.message_renderer import JinjaMessageRenderer
from signalfactory.adapters.rate_limits import KeyRateLimiter
from signalfactory.adapters.secret_box import build_secret_box
from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.bar_store import BarStore
from signalfactory.adapters.storage.columnar import ColumnarBarStore
from signalfactory.adapters.storage.db import create_db_engine
from signalfactory.adapters.storage.read_only import ReadOnlyGuard
from signalfactory.adapters.storage.unit_of_work import SqlDatabase
from signalfactory.domain.errors import BadInputError
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings, load_settings

if TYPE_CHECKING:
    # Metrics are defined on import; a Celery worker must pick prometheus_client's
    # multiprocess mode first, so nothing that defines one is imported at module level.
    # The rest are imported where used: a command's start-up loads none of them.
    from collections.abc import Sequence

    from signalfactory.adapters.cache import HotCache
    from signalfactory.adapters.channels.pacing import Pacer
    from signalfactory.adapters.exchanges.factory import DefaultExchangeFactory
    from signalfactory.adapters.sandbox.pool import ProcessSandbox
    from signalfactory.domain.bars import BarUniverse
    from signalfactory.domain.delivery import SendResult
    from signalfactory.domain.sandbox import (
        ProgramInfo,
        SandboxLimits,
        SandboxProgram,
        SandboxResult,
    )
    from signalfactory.domain.trading.bots import ExchangeAccount
    from signalfactory.domain.trading.records import Credentials, PaperBook
    from signalfactory.services.delivery.ports import Channel
    from signalfactory.services.jobs.ports import JobQueue
    from signalfactory.services.ports import Clock, ReadinessProbe, UnitOfWork
    from signalfactory.services.sandbox.ports import StrategySandbox
    from signalfactory.services.streaming.ports import (
        CommitNotifications,
        SignalEventSource,
        SignalFeed,
    )
    from signalfactory.services.trading.ports import Exchange


class ExchangesOnFirstUse:
    """``platform.exchanges``: the default factory, imported and built when the first
    account's exchange is (its modules load the request budgets' rate-limit library and the
    paper exchange: most processes, every command-line one among them, never trade)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._factory: DefaultExchangeFactory | None = None

    def __call__(self, account: ExchangeAccount, credentials: Credentials | None, *,
                 paper: PaperBook | None = None) -> Exchange:
        if self._factory is None:
            from signalfactory.adapters.exchanges.factory import DefaultExchangeFactory

            self._factory = DefaultExchangeFactory(self.settings)
        return self._factory(account, credentials, paper=paper)


def make_bar_store(settings: Settings) -> BarStore:
    kind = settings.resolved_bar_store
    if kind == "columnar":
        return ColumnarBarStore(settings.data_dir / "bars")
    if settings.is_sqlite:
        raise BadInputError("SIGNALFACTORY_BAR_STORE=sql needs PostgreSQL; on SQLite use the "
                            "default columnar store (unset SIGNALFACTORY_BAR_STORE)")
    from signalfactory.adapters.storage.postgres_bars import PostgresBarStore

    return PostgresBarStore()


def with_password(url: str, settings: Settings) -> str:
    """Put SIGNALFACTORY_DATABASE_PASSWORD(_FILE) into a URL that carries no password."""
    from sqlalchemy.engine import make_url

    if settings.database_password is None:
        return url
    parsed = make_url(url)
    if parsed.password or parsed.get_backend_name() == "sqlite":
        return url
    return parsed.set(password=settings.database_password.get_secret_value()).render_as_string(
        hide_password=False)


def build_database(settings: Settings, probes: dict[str, ReadinessProbe]) -> SqlDatabase:
    engine = create_db_engine(with_password(settings.resolved_database_url, settings),
                              pool_size=settings.database_pool_size,
                              max_overflow=settings.database_max_overflow)
    read_engine = None
    if settings.database_read_url:
        from signalfactory.adapters.storage.read_replica import create_read_engine, replica_probe

        read_engine, state = create_read_engine(
            with_password(settings.database_read_url, settings), engine,
            pool_size=settings.database_read_pool_size,
            max_overflow=settings.database_read_max_overflow)
        probes["read_replica"] = replica_probe(read_engine, state)
    guard = ReadOnlyGuard(settings.read_only_flag, engine,
                          retry_seconds=settings.read_only_probe_seconds)
    return SqlDatabase(engine, make_bar_store(settings), read_engine, guard)


class _SignalFeedOnFirstUse:
    """``platform.signal_feed``: built (its modules imported) when a stream hub first reads
    it; only serving processes stream, and its modules were part of every command's
    start-up."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._feed: SignalFeed | None = None

    def made(self) -> SignalFeed:
        if self._feed is None:
            with self._lock:
                if self._feed is None:
                    self._feed = build_signal_feed(self._database)
        return self._feed

    @property
    def events(self) -> SignalEventSource:
        return self.made().events

    @property
    def notifications(self) -> CommitNotifications | None:
        return self.made().notifications


def build_signal_feed(database: SqlDatabase) -> SignalFeed:
    """The live stream reads stored signals on the primary; on PostgreSQL it is also woken
    by LISTEN as soon as another process commits some."""
    from signalfactory.adapters.storage.signal_events import SqlSignalEventSource
    from signalfactory.services.streaming.ports import SignalFeed

    notifications = None
    if database.dialect == "postgresql":
        from signalfactory.adapters.signal_notifications import PostgresCommitNotifications
        from signalfactory.domain.signals import NOTIFY_CHANNEL

        conninfo = database.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        notifications = PostgresCommitNotifications(conninfo, NOTIFY_CHANNEL)
    return SignalFeed(SqlSignalEventSource(database.engine), notifications)


def job_queue_for(settings: Settings, database: SqlDatabase) -> JobQueue:
    """Celery when a broker is configured (it also wakes local runners), else local only.
    Celery is imported only then: processes without a broker never load it."""
    if not settings.broker_url:
        return LocalJobQueue()
    from signalfactory.adapters.jobs.celery_queue import CeleryJobQueue

    return CeleryJobQueue(settings, database)


class _ChannelOnFirstUse:
    """A channel of ``build_channels``, its module imported and the channel made on first
    use: most processes (every command-line one that sends nothing) never deliver, and the
    channels' modules (the delivery records, smtplib, address checks) were a sizeable part
    of their start-up."""

    def __init__(self, kind: str, make: Callable[[], Channel], lock: threading.Lock) -> None:
        self.kind = kind
        self._make = make
        self._lock = lock
        self._channel: Channel | None = None

    def made(self) -> Channel:
        if self._channel is None:
            with self._lock:
                if self._channel is None:
                    self._channel = self._make()
        return self._channel

    def send(self, target: str, secrets: Sequence[str], message_id: str, timestamp: int,
             subject: str, body: str, payload: bytes, *, html: str | None = None,
             max_per_second: float | None = None) -> SendResult:
        return self.made().send(target, secrets, message_id, timestamp, subject, body,
                                payload, html=html, max_per_second=max_per_second)

    def check_target(self, target: str) -> str:
        return self.made().check_target(target)

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever the channel has
        return getattr(self.made(), name)


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Channel kind -> channel, for the kinds this installation can use. Each is made on
    first use, and imports its library (httpx, apprise) only when it first sends; one pacer
    is shared, so a destination's rate holds across the channels of this process."""
    timeout = settings.delivery_timeout_seconds
    allow_private = settings.delivery_allow_private_targets
    lock = threading.Lock()  # one for all: the first channel made makes the shared pacer
    pacers: list[Pacer] = []

    def pacer() -> Pacer:
        if not pacers:
            from signalfactory.adapters.channels.pacing import Pacer

            pacers.append(Pacer())
        return pacers[0]

    def webhook() -> Channel:
        from signalfactory.adapters.channels.webhook import WebhookChannel

        return WebhookChannel(timeout, allow_private, pacer())

    def apprise() -> Channel:
        from signalfactory.adapters.channels.apprise_channel import AppriseChannel

        return AppriseChannel(timeout, allow_private, pacer())

    def email() -> Channel:
        from signalfactory.adapters.channels.email import EmailChannel

        return EmailChannel(timeout, pacer())

    return {kind: _ChannelOnFirstUse(kind, make, lock)
            for kind, make in (("webhook", webhook), ("apprise", apprise), ("email", email))}


class _SandboxOnFirstUse:
    """``platform.sandbox``: the worker pool, imported and made when the first uploaded
    strategy runs (its modules were a sizeable part of every process's start-up, and most
    never run one)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pool: ProcessSandbox | None = None

    def made(self) -> ProcessSandbox:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    from signalfactory.adapters.sandbox.pool import ProcessSandbox

                    self._pool = ProcessSandbox(sandbox_limits(self._settings),
                                                self._settings.sandbox_pool_size)
        return self._pool

    def load(self, program: SandboxProgram) -> ProgramInfo:
        return self.made().load(program)

    def evaluate(self, program: SandboxProgram, universe: BarUniverse) -> SandboxResult:
        return self.made().evaluate(program, universe)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever the pool has
        return getattr(self.made(), name)


def build_sandbox(settings: Settings) -> StrategySandbox:
    """Worker processes for uploaded strategies; nothing starts (or is imported) until the
    first one runs."""
    return _SandboxOnFirstUse(settings)


def sandbox_limits(settings: Settings) -> SandboxLimits:
    from signalfactory.domain.sandbox import SandboxLimits

    return SandboxLimits(cpu_seconds=settings.sandbox_cpu_seconds,
                         memory_mb=settings.sandbox_memory_mb,
                         wall_seconds=settings.sandbox_wall_seconds)


def build_rate_limiter(settings: Settings) -> KeyRateLimiter:
    """Per-key limits in memory, or shared by every process in Redis when it is set."""
    return KeyRateLimiter(settings.redis_url or "memory://")


def build_hot_cache(settings: Settings) -> HotCache:
    from signalfactory.adapters.cache import build_cache

    return build_cache(settings.redis_url, ttl=settings.cache_ttl_seconds)


def build_platform(settings: Settings | None = None, *, migrate_db: bool = False,
                   cache: HotCache | None = None, rate_limiter: KeyRateLimiter | None = None,
                   clock: Clock | None = None) -> Platform:
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    probes: dict[str, ReadinessProbe] = {}
    database = build_database(settings, probes)
    hot_cache = cache or build_hot_cache(settings)
    if settings.redis_url:
        probes["cache"] = hot_cache.health
    from signalfactory.adapters.sources.registry import source_factories
    from signalfactory.services.trading.runtime import TradingRuntime

    platform = Platform(settings=settings, database=database, cache=hot_cache,
                        exchanges=ExchangesOnFirstUse(settings),
                        trading=TradingRuntime(settings.trading_worker_id),
                        source_factories=dict(source_factories(settings.home / "yfinance")),
                        channels=build_channels(settings), renderer=JinjaMessageRenderer(),
                        secret_box=build_secret_box(settings), delivery_queue=LocalJobQueue(),
                        rate_limiter=rate_limiter or build_rate_limiter(settings),
                        jobs=job_queue_for(settings, database),
                        clock=clock or SystemClock(), probes=probes,
                        signal_feed=cast("SignalFeed", _SignalFeedOnFirstUse(database)),
                        audit=audit_record,
                        sandbox=build_sandbox(settings))
    wire_subscribers(platform)
    if migrate_db:
        migrate.ensure_at_head(database.engine)
    return platform


def audit_record(uow: UnitOfWork, actor: str, action: str, subject: str,
                 details: Mapping[str, object] | None = None,
                 tenant_id: int | None = None) -> object:
    """``platform.audit``: ``services.audit.log.record``, imported when first called (the
    audit log's module is a sizeable import, and most processes record nothing)."""
    from signalfactory.services.audit.log import record

    return record(uow, actor, action, subject, details, tenant_id)


class _OnFirstCall:
    """``module.attribute`` (for a class: the ``refresh`` of one instance of it), imported on
    its first call. Most processes (every command-line one) write no bars and serve no
    metrics, and these modules were a sizeable part of their start-up."""

    def __init__(self, module: str, attribute: str) -> None:
        self.module, self.attribute = module, attribute
        self._target: Callable[..., Any] | None = None
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:  # noqa: ANN401 - the target's own signature
        if self._target is None:
            with self._lock:
                if self._target is None:
                    found = getattr(importlib.import_module(self.module), self.attribute)
                    self._target = found().refresh if isinstance(found, type) else found
        return self._target(*args)


def wire_subscribers(platform: Platform) -> None:
    """What runs after a write, and what refreshes gauges at scrape time, in one place."""
    def later(module: str, attribute: str) -> Callable[..., Any]:
        return _OnFirstCall("signalfactory." + module, attribute)

    if platform.settings.live_overlap:
        platform.bar_preparers.append(later("services.signals.live", "prepare_new_bars"))
    # (the job kinds a task module registers at import are loaded by the job runtime itself
    # before any job is submitted or run: services/jobs/registry.py)
    platform.bar_subscribers.extend([later("services.signals.live", "evaluate_new_bars"),
                                     later("services.trading.tasks", "on_bars_written")])
    platform.metrics_refreshers.extend([
        later("services.jobs.monitoring", "JobGauges"),
        later("ops.backup.metrics", "refresh_from_jobs"),
        later("ops.freshness", "refresh_freshness"),
        later("services.delivery.replay", "DeliveryGauges"),
        later("services.trading.monitoring", "TradingGauges"),
        later("services.sources.monitoring", "SourceGauges"),
        later("ops.database_size", "refresh_database_size"),
        later("ops.anomaly", "refresh_from_jobs")])
    if platform.settings.broker_url:
        from signalfactory.adapters.jobs.celery_queue import broker_probe

        platform.probes["broker"] = broker_probe(platform.settings.broker_url)
