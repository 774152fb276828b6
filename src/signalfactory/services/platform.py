"""The typed platform every command, request and job works with, built by ``bootstrap``.

It names each port the services use and the after-write subscribers wired at start-up;
nothing is looked up by string and nothing is created behind the caller's back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from signalfactory.domain.strategies import Strategy
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.services.marketdata.live_window import LiveWindows
from signalfactory.services.ports import (
    Clock,
    Database,
    HotCache,
    ReadinessProbe,
)
from signalfactory.services.trading.runtime import TradingRuntime
from signalfactory.settings import Settings

if TYPE_CHECKING:
    from signalfactory.domain.bar_columns import BarColumns
    from signalfactory.domain.streaming import SignalEvent
    from signalfactory.domain.timeframes import Timeframe
    from signalfactory.services.accounts.ports import RateLimiter
    from signalfactory.services.delivery.ports import Channel, MessageRenderer, SecretBox
    from signalfactory.services.jobs.ports import JobQueue
    from signalfactory.services.marketdata.bars import BarsWritten
    from signalfactory.services.sandbox.ports import StrategySandbox
    from signalfactory.services.sources.ports import SourceFactory
    from signalfactory.services.streaming.ports import SignalFeed
    from signalfactory.services.trading.ports import AuditRecorder, ExchangeFactory

BarsWrittenSubscriber = Callable[["Platform", "BarsWritten"], object]
"""Runs after every committed bar write, in the writing process (live evaluation)."""

BarsPreparer = Callable[["Platform", "Timeframe", "BarColumns", Mapping[int, str]], object]
"""Runs inside a bar write before its commit, with the written columns and symbols; what it
returns reaches the subscribers in ``BarsWritten.prepared`` (live evaluation starts there)."""

MetricsRefresher = Callable[["Platform"], None]
"""Sets gauges from stored state at scrape time."""

SignalPublisher = Callable[[list["SignalEvent"]], None]
"""Receives newly stored signals in the process that stored them (the API's stream hub)."""


@dataclass(frozen=True, eq=False)
class Platform:
    """Everything a command, request or job needs, built once from settings.

    The lists and dicts are the explicit extension points: bootstrap fills them, a serving
    process adds its stream hub to ``signal_publishers``, tests may empty
    ``bar_subscribers`` to write bars without evaluating.
    """

    settings: Settings
    database: Database
    cache: HotCache
    rate_limiter: RateLimiter
    jobs: JobQueue
    clock: Clock
    # -- market data --------------------------------------------------------------------
    bar_subscribers: list[BarsWrittenSubscriber] = field(default_factory=list)
    bar_preparers: list[BarsPreparer] = field(default_factory=list)
    #: recent bars of the instruments evaluated live, kept current by ``write_bars``
    live_windows: LiveWindows = field(default_factory=LiveWindows)
    #: source kind -> what builds its adapter (collectors); a kind is present only when its
    #: library is installed (ccxt comes with the ``exchanges`` extra)
    source_factories: dict[str, SourceFactory] = field(default_factory=dict)

    # -- strategies -----------------------------------------------------------------------
    #: set once the shipped strategies are stored, so that reads need not write
    builtins_stored: threading.Event = field(default_factory=threading.Event)

    # -- signals and the live stream ----------------------------------------------------
    signal_publishers: list[SignalPublisher] = field(default_factory=list)
    #: where a serving process's stream hub reads stored signals and learns of commits
    #: (None: nothing streams from this platform)
    signal_feed: SignalFeed | None = None
    #: strategy objects by version id: a version never changes, parsing it once is enough
    live_strategies: dict[int, Strategy] = field(default_factory=dict)
    #: timeframe -> (stamp, the watched strategies read at it): live evaluation asks the
    #: store only for the stamp on every write (see ``services.signals.live``)
    live_watched: dict[str, tuple[object, list[StoredStrategy]]] = field(default_factory=dict)
    #: where uploaded Python strategies run (worker processes under limits; None: uploaded
    #: strategies cannot run in this process and fail saying so)
    sandbox: StrategySandbox | None = None

    # -- delivery ------------------------------------------------------------------------
    #: channel kind -> channel; a kind is present only when it can be used (loaded lazily)
    channels: dict[str, Channel] = field(default_factory=dict)
    #: seals endpoint targets and secrets at rest (None: no delivery key configured)
    secret_box: SecretBox | None = None
    #: renders message templates (None: plain default text, as in memory platforms)
    renderer: MessageRenderer | None = None
    #: announces committed outbox rows to delivery workers (the rows are the truth)
    delivery_queue: JobQueue | None = None

    # -- trading -------------------------------------------------------------------------
    #: builds an account's exchange adapter: paper or ccxt (None: this process cannot trade)
    exchanges: ExchangeFactory | None = None
    #: appends audit entries in the caller's transaction (None: transitions are only logged)
    audit: AuditRecorder | None = None
    #: this process's trading runtime: read-only mode, wake-ups of bot runners on new bars
    trading: TradingRuntime = field(default_factory=TradingRuntime)

    # -- serving: readiness and scrape-time gauges ---------------------------------------
    probes: dict[str, ReadinessProbe] = field(default_factory=dict)
    metrics_refreshers: list[MetricsRefresher] = field(default_factory=list)

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
        self.database.close()
