"""What every command shares: error handling with exit codes, output, progress bars.

rich is imported when something is first printed through ``out`` or ``err`` (or a progress
bar opens): a command that only writes JSON (``scan --json``) never loads it.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import typer
from typer._click.globals import get_current_context

from signalfactory.cli import start_up
from signalfactory.domain.errors import BadInputError, OperationalError, TemporaryError

if TYPE_CHECKING:
    from rich.console import Console

    from signalfactory.services.platform import Platform
    from signalfactory.settings import Settings


class _ConsoleOnFirstUse:
    """A ``rich.console.Console`` made (and rich imported) on the first attribute asked."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever Console has
        return getattr(self.made(), name)


out = cast("Console", _ConsoleOnFirstUse(stderr=False))
err = cast("Console", _ConsoleOnFirstUse(stderr=True))

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Bad input exits 2 with the message; other classified errors exit 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BadInputError as exc:
            from rich.markup import escape

            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except (OperationalError, TemporaryError) as exc:
            from rich.markup import escape

            err.print(f"[bold red]{exc.code} error:[/] {escape(str(exc))}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def cli_actor() -> str:
    """Who runs this command, as the audit log names them: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in this environment (some containers)
        return "cli"


def json_option(text: str, option: str) -> object:
    """Parse the JSON text of ``option``; bad input (exit 2) when it is not JSON, or nests so
    deep that the decoder would exhaust the stack (it recurses once per level)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{option} is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise BadInputError(f"{option} is nested too deeply; give a flat JSON object") from None


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def progress_bar(description: str, total: float | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; silent when output is piped or in CI logs."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=cast("_ConsoleOnFirstUse", err).made(),
                        disable=not err.is_terminal, transient=False)
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def build_platform(settings: Settings | None = None, *, migrate_db: bool = False) -> Platform:
    """``bootstrap.build_platform`` for a command, with the settings the root callback loaded
    (unless given); the start-up is over once it is built (the garbage collector's pause
    ends: ``cli/start_up.py``)."""
    # Imported here, not at module level: a command's ``--help`` and its bad input are
    # answered before the composition root (SQLAlchemy, the indicators) is loaded.
    from signalfactory.bootstrap import build_platform as build

    if settings is None:
        ctx = get_current_context(silent=True)
        settings = None if ctx is None else ctx.meta.get(start_up.COMMAND_SETTINGS)
    platform = build(settings, migrate_db=migrate_db)
    start_up.resume()
    return platform


def platform_with_builtins() -> Platform:
    """A migrated platform whose database holds the shipped strategies."""
    from signalfactory.services.strategies.catalog import builtins_current, ensure_builtins

    platform = build_platform(migrate_db=True)
    with platform.database.read(primary=True) as uow:
        current = builtins_current(uow)
    if not current:
        with platform.database.write() as uow:
            ensure_builtins(uow)
    return platform


def parse_date(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise BadInputError(f"{option} {value!r} is not a date; use YYYY-MM-DD or an ISO "
                            "timestamp") from None
