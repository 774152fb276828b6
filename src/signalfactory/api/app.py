"""FastAPI application factory. No engine is created at import time."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from signalfactory import __version__
from signalfactory.api.hot_reads import SignalPagesFastPath
from signalfactory.api.idempotency import IdempotencyMiddleware, document_idempotency
from signalfactory.api.middleware import LoadSheddingMiddleware, RequestContextMiddleware
from signalfactory.api.problems import document_problems, install_problem_handlers
from signalfactory.api.routers import account, health, instruments
from signalfactory.api.routers import audit as audit_router
from signalfactory.api.routers import backtests as backtests_router
from signalfactory.api.routers import bots as bots_router
from signalfactory.api.routers import campaigns as campaigns_router
from signalfactory.api.routers import deliveries as deliveries_router
from signalfactory.api.routers import endpoints as endpoints_router
from signalfactory.api.routers import exchange_accounts as exchange_accounts_router
from signalfactory.api.routers import jobs as jobs_router
from signalfactory.api.routers import kill_switch as kill_switch_router
from signalfactory.api.routers import operations as operations_router
from signalfactory.api.routers import orders as orders_router
from signalfactory.api.routers import reports as reports_router
from signalfactory.api.routers import scans as scans_router
from signalfactory.api.routers import signals as signals_router
from signalfactory.api.routers import sources as sources_router
from signalfactory.api.routers import strategies as strategies_router
from signalfactory.api.routers import stream as stream_router
from signalfactory.api.routers import subscriptions as subscriptions_router
from signalfactory.api.stream_framing import STREAM_FRAMINGS
from signalfactory.domain.backtest.warmup import warm_kernels
from signalfactory.services.jobs.registry import ensure_tasks_loaded
from signalfactory.services.platform import Platform
from signalfactory.services.streaming.hub import StreamHub
from signalfactory.web.app import mount_dashboard


def limit_api_threads(configured: int | None) -> None:
    """Size the thread pool sync endpoints and dependencies run in (anyio's default is 40).

    On a small machine 40 threads convoy on the GIL once a burst queues up: each request
    gets slower, the queue grows, and the server does not recover after the burst.
    """
    threads = configured or min(40, 4 * (os.cpu_count() or 1))
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


#: The collector's thresholds in a server (CPython's are 700, 10, 10). A larger youngest
#: generation lets the short-lived cycles of a bar write and a fan-out die before they are
#: promoted, so the oldest generation (a thousand stream connections' objects) grows, and is
#: walked in full, less often.
SERVER_GC_THRESHOLDS = (50_000, 20, 10)


def settle_heap() -> None:
    """Move what start-up made (modules, the platform, numba's kernels, the stream hub) out
    of the cyclic collector's reach for good, and collect less often from then on: with a
    thousand stream connections, full collections over it paused the event loop for
    0.2-0.3 s. Garbage is collected first, so none of it is kept for ever."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_GC_THRESHOLDS)


def create_app(platform: Platform | None = None, *,
               build: Callable[[], Platform] | None = None,
               server: bool = False) -> FastAPI:
    """Build the app over ``platform``, or over one that ``build`` makes when the app starts
    (and closes when it stops): ``create_app(build=bootstrap.build_platform)``.

    ``server``: this process is the app's server (``signalfactory serve`` and ``up``), so its
    heap is settled (``settle_heap``) once the app has started; tests and embedders keep
    their collector as it was.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = platform is None
        if platform is None and build is None:
            raise RuntimeError("create_app needs a platform or a function that builds one")
        app.state.platform = platform or build()  # type: ignore[misc]
        limit_api_threads(app.state.platform.settings.api_threads)
        # every kind known before the first request (job listings, submissions)
        ensure_tasks_loaded(app.state.platform.settings.task_module_names)
        # numba's first-call set-up at start, not in the first backtest request
        await anyio.to_thread.run_sync(warm_kernels)
        # The live stream's broadcaster: direct from bar writes in this process, and a relay
        # of signals other processes store.
        app.state.stream_hub = StreamHub(app.state.platform, framings=STREAM_FRAMINGS)
        await app.state.stream_hub.start()
        if server:
            settle_heap()
        try:
            yield
        finally:
            await app.state.stream_hub.stop()
            if owned:
                app.state.platform.close()

    app = FastAPI(title="Signal Factory", version=__version__, lifespan=lifespan,
                  description="Market data in; ranked trading signals, backtests and "
                              "deliveries out.")
    install_problem_handlers(app)
    # Starlette runs the last added middleware first: load shedding (a refusal costs
    # nothing, not even a request id) wraps request context (ids, size limit, RateLimit
    # headers), which wraps idempotency, which wraps the signal pages' fast path
    # (api/hot_reads.py), which wraps the routes.
    app.add_middleware(SignalPagesFastPath)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(LoadSheddingMiddleware)
    document_idempotency(app)
    document_problems(app)  # after: it also shapes the idempotency answers
    app.include_router(health.router)
    app.include_router(instruments.router)
    app.include_router(account.router)
    app.include_router(jobs_router.router)
    app.include_router(strategies_router.router)
    app.include_router(signals_router.router)
    app.include_router(scans_router.router)
    app.include_router(backtests_router.router)
    app.include_router(subscriptions_router.router)
    app.include_router(stream_router.router)
    app.include_router(endpoints_router.router)
    app.include_router(deliveries_router.router)
    app.include_router(campaigns_router.router)
    app.include_router(audit_router.router)
    app.include_router(reports_router.router)
    app.include_router(exchange_accounts_router.router)
    app.include_router(bots_router.router)
    app.include_router(orders_router.router)
    app.include_router(kill_switch_router.router)
    app.include_router(sources_router.router)
    app.include_router(operations_router.router)
    app.webhooks.include_router(endpoints_router.webhooks)
    mount_dashboard(app)  # the pages at / (sign-in by API key, then a session cookie)
    return app
