"""The root Typer app: registers every command group."""

from __future__ import annotations

import typer

from signalfactory import __version__
from signalfactory.cli import backtest as backtest_cli
from signalfactory.cli import data, indicators, ops, scans, serve, signals, strategies, tenants
from signalfactory.cli import jobs as jobs_cli
from signalfactory.cli.audit import audit_app
from signalfactory.cli.campaigns import campaigns_app
from signalfactory.cli.deliveries import deliveries_app
from signalfactory.cli.endpoints import endpoints_app
from signalfactory.cli.ops_mode import ops_app
from signalfactory.cli.report import report_app
from signalfactory.cli.sources import sources_app
from signalfactory.cli.trading import bots_app, kill_switch_app, orders_app
from signalfactory.cli.web import web_app

app = typer.Typer(name="signalfactory", no_args_is_help=True, add_completion=False,
                  help="Signal Factory: market data in; ranked signals, backtests and "
                       "deliveries out.", pretty_exceptions_enable=False)
app.command()(data.init)
app.add_typer(data.db_app, name="db")
app.command()(data.ingest)
app.command()(data.sample)
app.command()(data.instruments)
app.command()(indicators.indicators)
app.add_typer(strategies.strategies_app, name="strategies")
app.command()(signals.signals)
app.command()(signals.evaluate)
app.command()(scans.scan)
app.command()(backtest_cli.backtest)
app.command()(serve.serve)
app.command()(serve.up)
app.add_typer(tenants.tenants_app, name="tenants")
app.add_typer(tenants.keys_app, name="keys")
app.add_typer(ops.backup_app, name="backup")
app.add_typer(ops.dr_app, name="dr")
app.add_typer(ops.archive_app, name="archive")
app.add_typer(ops.data_app, name="data")
app.add_typer(ops_app, name="ops")
app.command()(jobs_cli.worker)
app.command()(jobs_cli.beat)
app.add_typer(jobs_cli.jobs_app, name="jobs")
app.add_typer(endpoints_app, name="endpoints")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(audit_app, name="audit")
app.add_typer(report_app, name="report")
app.add_typer(bots_app, name="bots")
app.add_typer(orders_app, name="orders")
app.add_typer(kill_switch_app, name="kill-switch")
app.add_typer(sources_app, name="sources")
app.add_typer(web_app, name="web")


@app.callback()
def _configure() -> None:
    """Set up structured logging once per command, with every configured secret redacted."""
    from signalfactory.observability.logging import configure_logging
    from signalfactory.settings import load_settings

    try:
        settings = load_settings()
    except Exception:
        return
    secrets = [getattr(settings, name).get_secret_value()
               for name in settings.secret_fields if getattr(settings, name) is not None]
    configure_logging(settings.log_format, settings.log_level, secrets)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
