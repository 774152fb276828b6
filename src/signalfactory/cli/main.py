"""The root Typer app: every command and command group, imported only when it is run.

Why lazy: a command module imports what its work needs (SQLAlchemy, Alembic, numba, the API),
and importing all of them made ``signalfactory --help`` take most of a second. The root group
lists each command from the table below (name, where it lives, its one-line help), and
imports a module only when its command runs or its own ``--help`` is asked for.
``tests/unit/test_cli_lazy.py`` renders ``--help`` both ways and checks the table's help text
against the commands themselves, so the table cannot drift from the code.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

from signalfactory import __version__
from signalfactory.cli import start_up

if TYPE_CHECKING:
    # Typer vendors click; these are the types its group methods take and return.
    from typer._click import Command, Context


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A command (a function) or a command group (a ``typer.Typer``) named ``attribute`` in
    ``module``; ``help`` is the first paragraph of its help, shown by the root ``--help``."""

    module: str
    attribute: str
    help: str


_CLI = "signalfactory.cli."
#: In the order ``--help`` lists them: commands first, then groups (as Typer orders them).
LAZY_COMMANDS: dict[str, LazyCommand] = {
    "init": LazyCommand(_CLI + "data", "init", "Create the database (SQLite file by default) "
                        "and migrate it to the newest schema."),
    "ingest": LazyCommand(_CLI + "data", "ingest", "Validate and store bar files; all or "
                          "nothing, re-ingesting is idempotent."),
    "sample": LazyCommand(_CLI + "data", "sample", "Generate and store a deterministic "
                          "synthetic universe (business days, sectors)."),
    "instruments": LazyCommand(_CLI + "data", "instruments", "List stored instruments."),
    "indicators": LazyCommand(_CLI + "indicators", "indicators", "Print the values of "
                              "expressions over one symbol's bars."),
    "signals": LazyCommand(_CLI + "signals", "signals", "List stored signals."),
    "evaluate": LazyCommand(_CLI + "signals", "evaluate", "Evaluate stored strategies over "
                            "stored bars and store their signals (idempotent)."),
    "scan": LazyCommand(_CLI + "scans", "scan", "Rank the universe by today's signals of a "
                        "strategy or rule; the scan is stored."),
    "backtest": LazyCommand(_CLI + "backtest", "backtest", "Backtest a strategy or rule on a "
                            "symbol, a universe, or a portfolio; stored under a\ndeterministic "
                            "id, so the same request returns the same result."),
    "serve": LazyCommand(_CLI + "serve", "serve", "Serve the HTTP API (health probes, "
                         "metrics, /api/v1)."),
    "up": LazyCommand(_CLI + "serve", "up", "Everything in one process: migrate, load sample "
                      "data if the store is empty, run jobs\nand schedules in background "
                      "threads, serve."),
    "worker": LazyCommand(_CLI + "jobs", "worker", "Run jobs: the embedded runner on the "
                          "database, or a Celery worker on the broker.\nEither also sends the "
                          "delivery outbox (with Celery, from a child process of its own)."),
    "beat": LazyCommand(_CLI + "jobs", "beat", "Submit scheduled jobs "
                        "(SIGNALFACTORY_SCHEDULES): embedded scheduler or Celery beat."),
    "db": LazyCommand(_CLI + "data", "db_app", "Database schema: upgrade, downgrade, current "
                      "revision."),
    "strategies": LazyCommand(_CLI + "strategies", "strategies_app", "Stored strategies: "
                              "list, show, add, validate, check, runs."),
    "tenants": LazyCommand(_CLI + "tenants", "tenants_app", "Tenants: create, list, change "
                           "tier."),
    "keys": LazyCommand(_CLI + "tenants", "keys_app", "API keys: create (shown once), list by "
                        "prefix, revoke."),
    "backup": LazyCommand(_CLI + "ops", "backup_app", "Encrypted backups: create, list, "
                          "verify, restore, prune."),
    "dr": LazyCommand(_CLI + "ops", "dr_app", "Disaster recovery drills."),
    "archive": LazyCommand(_CLI + "ops", "archive_app", "Signed daily archive snapshots "
                           "(Parquet)."),
    "data": LazyCommand(_CLI + "ops", "data_app", "Stored data housekeeping: retention."),
    "ops": LazyCommand(_CLI + "ops_mode", "ops_app", "Operating mode: read-only switch."),
    "jobs": LazyCommand(_CLI + "jobs", "jobs_app", "Jobs: list, schedules, show, submit, "
                        "cancel, retry."),
    "endpoints": LazyCommand(_CLI + "endpoints", "endpoints_app", "Delivery endpoints: "
                             "webhooks, Apprise URLs, e-mail."),
    "deliveries": LazyCommand(_CLI + "deliveries", "deliveries_app", "Deliveries: list, "
                              "show, dead-letter queue."),
    "campaigns": LazyCommand(_CLI + "campaigns", "campaigns_app", "Campaigns: send, list, "
                             "show."),
    "audit": LazyCommand(_CLI + "audit", "audit_app", "The tamper-evident audit log: verify "
                         "the hash chain, export it."),
    "report": LazyCommand(_CLI + "report", "report_app", "Trading reports."),
    "bots": LazyCommand(_CLI + "trading", "bots_app", "Trading bots: create, list, start, "
                        "stop, status."),
    "orders": LazyCommand(_CLI + "trading", "orders_app", "Orders of the tenant's bots."),
    "kill-switch": LazyCommand(_CLI + "trading", "kill_switch_app", "The kill switch: engage, "
                               "re-arm, resume, status."),
    "sources": LazyCommand(_CLI + "sources", "sources_app", "Market-data sources: collectors "
                           "on a schedule."),
    "web": LazyCommand(_CLI + "web", "web_app", "The web dashboard: one-time sign-in links."),
}

#: Long-running services: they log to stdout, where a container runtime collects it. Every
#: other command logs to stderr, so that what it prints (``--json`` above all) is only its own.
SERVICE_COMMANDS = frozenset({"serve", "up", "worker", "beat"})

#: Commands imported so far in this process (the click group is rebuilt on every ``app()``).
_loaded: dict[str, Command] = {}


def load_command(name: str) -> Command:
    """Import the command or group ``name`` and build its click object (cached)."""
    found = _loaded.get(name)
    if found is not None:
        return found
    entry = LAZY_COMMANDS[name]
    target = getattr(importlib.import_module(entry.module), entry.attribute)
    if isinstance(target, typer.Typer):
        command: Command = typer.main.get_group(target)
    else:
        single = typer.Typer()
        single.command(name=name)(target)
        command = typer.main.get_command(single)
    command.name = name
    _loaded[name] = command
    return command


class _Placeholder(TyperCommand):
    """Stands in for a command not imported yet: carries its name and help for ``--help``."""


class LazyGroup(TyperGroup):
    """The root group: lists every command of ``LAZY_COMMANDS`` (a placeholder each, so help
    and "did you mean" see them all) and imports one only when it is resolved to run (or to
    print its own help)."""

    def __init__(self, **attrs: Any) -> None:  # noqa: ANN401 - Typer passes click's settings
        super().__init__(**attrs)
        for name, entry in LAZY_COMMANDS.items():
            self.commands.setdefault(name, _Placeholder(name=name, help=entry.help))

    def list_commands(self, ctx: Context) -> list[str]:
        names = list(LAZY_COMMANDS)
        first_group = names.index("db")  # commands defined here (version) go before groups
        eager = [n for n in super().list_commands(ctx) if n not in LAZY_COMMANDS]
        return [*names[:first_group], *eager, *names[first_group:]]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        return _loaded.get(cmd_name) or super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Context, args: list[str],
                        ) -> tuple[str | None, Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, _Placeholder) and name is not None:
            command = load_command(name)
        return name, command, rest


app = typer.Typer(name="signalfactory", cls=LazyGroup, no_args_is_help=True,
                  add_completion=False,
                  help="Signal Factory: market data in; ranked signals, backtests and "
                       "deliveries out.", pretty_exceptions_enable=False)


@app.callback()
def _configure(ctx: typer.Context) -> None:
    """Set up structured logging once per command, with every configured secret redacted."""
    one_shot = False
    if ctx.invoked_subcommand in SERVICE_COMMANDS:
        start_up.resume()  # a long-running process: the collector runs from the start
    elif start_up.in_command_process():
        from signalfactory.observability.recording import stop_recording_unless_shared

        stop_recording_unless_shared()  # a one-shot command: nobody reads its metrics
        one_shot = True
    if ctx.invoked_subcommand in (None, "version"):
        return  # nothing logs; loading settings (pydantic) would be most of the start-up
    from signalfactory.cli.structlog_import import import_structlog_without_rich

    import_structlog_without_rich()
    from signalfactory.observability.logging import configure_logging

    try:
        with start_up.pydantic_plugins_off() if one_shot else nullcontext():
            from signalfactory.settings import load_settings

            settings = load_settings()
    except Exception:
        return  # the command's own load reports what is wrong
    ctx.meta[start_up.COMMAND_SETTINGS] = settings  # the command's platform is built with these
    secrets = [getattr(settings, name).get_secret_value()
               for name in settings.secret_fields if getattr(settings, name) is not None]
    stream = "stdout" if ctx.invoked_subcommand in SERVICE_COMMANDS else "stderr"
    configure_logging(settings.log_format, settings.log_level, secrets, stream=stream)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    if not sys.argv[1:] or "--help" in sys.argv[1:]:
        from signalfactory.cli.rich_help import import_rich_utils

        import_rich_utils()  # a help page: without the modules it never uses
    app()
