"""Serving: the API alone, or everything in one process."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from signalfactory.cli.common import err, handle_errors


def _server_options() -> dict[str, Any]:
    """uvicorn options for the live stream: WebSockets that take a message framed once for
    all subscribers (api/ws_protocol.py), without permessage-deflate (compression needs
    bytes of its own per connection; stream messages are small JSON). The app itself settles
    the heap once it has started (``create_app(server=True)``)."""
    from signalfactory.api.ws_protocol import BroadcastWebSocketProtocol

    return {"ws": BroadcastWebSocketProtocol, "ws_per_message_deflate": False}


@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Serve the HTTP API (health probes, metrics, /api/v1)."""
    import uvicorn

    from signalfactory.api import create_app
    from signalfactory.bootstrap import build_platform

    uvicorn.run(create_app(build=build_platform, server=True), host=host, port=port,
                log_level="warning", **_server_options())


@handle_errors
def up(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    sample_symbols: Annotated[int, typer.Option(help="Sample universe size when empty")] = 50,
    sample_bars: Annotated[int, typer.Option(help="Sample bars per symbol")] = 1000,
) -> None:
    """Everything in one process: migrate, load sample data if the store is empty, run jobs
    and schedules in background threads, serve."""
    import uvicorn

    from signalfactory.api import create_app
    from signalfactory.bootstrap import build_platform
    from signalfactory.services.marketdata.sample import store_sample

    platform = build_platform(migrate_db=True)
    with platform.database.read() as uow:
        empty = not uow.bars.timeframes()
    if empty:
        report = store_sample(platform, symbols=sample_symbols, bars=sample_bars, seed=42)
        err.print(f"loaded the sample universe: {report.rows} bars of "
                  f"{report.instruments} instruments")
    from signalfactory.workers.delivery import DeliveryWorker
    from signalfactory.workers.runner import EmbeddedRunner
    from signalfactory.workers.scheduler import Scheduler
    from signalfactory.workers.trading import TradingWorker

    runner, scheduler = EmbeddedRunner(platform), Scheduler(platform)
    delivery = DeliveryWorker(platform, concurrency=2)
    trading = TradingWorker(platform)
    runner.start()
    trading.start()
    scheduler.start()
    delivery.start()
    from signalfactory.cli.web import sign_in_link
    from signalfactory.services.accounts.web_sessions import issue_sign_in_link

    address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    link = sign_in_link(address, issue_sign_in_link(platform, "default", "admin"))
    err.print(f"serving on {address} (livez, readyz, /api/v1, /docs); "
              f"{runner.concurrency} job worker(s), {len(scheduler.entries)} schedule(s)\n"
              f"dashboard: open {address}/ and sign in with an API key "
              "(signalfactory keys create --tenant default --role admin),\n"
              f"or sign in once as the local admin with this link "
              f"(valid {platform.settings.web_link_minutes:g} min; a new one: "
              f"signalfactory web link):\n{link}", highlight=False, soft_wrap=True)
    # uvicorn shuts down on SIGTERM/SIGINT and then re-raises the signal to the handler that
    # was installed before it ran; a no-op one lets us stop the runner (handing unfinished
    # jobs back) and exit 0 instead of dying on the re-raised signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        uvicorn.run(create_app(platform=platform, server=True), host=host, port=port,
                    log_level="warning", **_server_options())
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C aborts
        scheduler.stop()
        delivery.stop()
        runner.stop()
        trading.stop()
