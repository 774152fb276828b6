"""Stored strategies on the command line: list, show, add, validate."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from signalfactory.bootstrap import build_platform
from signalfactory.cli.common import handle_errors, json_option, out, print_json
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.strategies import StrategyParam
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.platform import Platform

strategies_app = typer.Typer(help="Stored strategies: list, show, add, validate.",
                             no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
JsonValue = str | int | float | bool | None | dict[str, StrategyParam]


def platform_with_builtins() -> Platform:
    """A migrated platform whose database holds the shipped strategies."""
    from signalfactory.services.strategies.catalog import ensure_builtins

    platform = build_platform(migrate_db=True)
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


def _rule_from(rule: str | None, file: Path | None) -> str:
    if file is not None and rule is None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInputError(f"cannot read {file}: {exc.strerror}") from exc
    if rule is None or file is not None:
        raise BadInputError("give exactly one of --rule TEXT or --file PATH")
    return rule


def strategy_json(s: StoredStrategy) -> dict[str, JsonValue]:
    return {"id": s.id, "name": s.name, "kind": s.kind, "version": s.version,
            "rule_text": s.rule_text, "class_path": s.class_path,
            "parameters": dict(s.parameters), "timeframe": s.timeframe,
            "code_hash": s.code_hash, "created_by": s.created_by,
            "created_at": s.created_at.isoformat() if s.created_at else None,
            "builtin": s.builtin, "description": s.description, "versions": s.versions}


@strategies_app.command("list")
@handle_errors
def strategies_list(as_json: JsonOpt = False) -> None:
    """List strategies (built-ins and your own) at their newest version."""
    from signalfactory.services.strategies.catalog import list_strategies

    platform = platform_with_builtins()
    with platform.database.read(primary=True) as uow:
        items = list_strategies(uow, DEFAULT_TENANT_ID)
    platform.close()
    if as_json:
        print_json([strategy_json(s) for s in items])
        return
    table = Table("name", "kind", "version", "timeframe", "built-in", "description")
    for s in items:
        table.add_row(s.name, s.kind, str(s.version), s.timeframe, "yes" if s.builtin else "",
                      s.description or (s.rule_text or s.class_path or "").replace("\n", "; "))
    out.print(table)


@strategies_app.command("show")
@handle_errors
def strategies_show(name: str, version: Annotated[int | None, typer.Option()] = None,
                    as_json: JsonOpt = False) -> None:
    """Show one strategy and its versions."""
    from signalfactory.services.strategies.catalog import get_strategy, list_versions

    platform = platform_with_builtins()
    with platform.database.read(primary=True) as uow:
        item = get_strategy(uow, DEFAULT_TENANT_ID, name, version)
        history = list_versions(uow, DEFAULT_TENANT_ID, name)
    platform.close()
    versions = [{"version": v.version, "code_hash": v.code_hash, "created_by": v.created_by,
                 "created_at": str(v.created_at)} for v in history]
    if as_json:
        print_json(strategy_json(item) | {"history": versions})
        return
    for key, value in strategy_json(item).items():
        out.print(f"[bold]{key}[/]: {value}", highlight=False)
    out.print("versions: " + ", ".join(f"v{v['version']} {str(v['code_hash'])[:10]}"
                                       for v in versions))


@strategies_app.command("add")
@handle_errors
def strategies_add(
    name: str,
    rule: Annotated[str | None, typer.Option(help="Rule text")] = None,
    file: Annotated[Path | None, typer.Option(help="File holding the rule text")] = None,
    python: Annotated[str | None, typer.Option(
        "--class", help="Python strategy: entry point name or path/to/file.py:Class")] = None,
    params: Annotated[str | None, typer.Option(help="JSON parameters (Python strategies)")]
    = None,
    timeframe: Annotated[str, typer.Option(help="Timeframe it runs on")] = "1d",
    as_json: JsonOpt = False,
) -> None:
    """Add a strategy, or a new version if its code changed."""
    from signalfactory.services.strategies.catalog import (
        add_strategy,
        check_new_strategy,
        ensure_builtins,
    )

    parameters: dict[str, StrategyParam] | None = None
    if params is not None:
        value = json_option(params, "--params")
        if not isinstance(value, dict):
            raise BadInputError('--params must be a JSON object such as {"fast": 5}')
        parameters = value
    text = None if python is not None and rule is None and file is None else _rule_from(rule,
                                                                                        file)
    # bad input is refused before the database is opened (or created, in a new home)
    check_new_strategy(DEFAULT_TENANT_ID, name, rule_text=text, class_path=python,
                       parameters=parameters, timeframe=timeframe)
    platform = build_platform(migrate_db=True)
    try:
        with platform.database.write() as uow:  # the built-ins commit with the add, or not
            ensure_builtins(uow)
            item, created = add_strategy(uow, DEFAULT_TENANT_ID, name, rule_text=text,
                                         class_path=python, parameters=parameters,
                                         timeframe=timeframe, created_by="cli")
        # A serving process sharing a Redis cache shows the new version at once.
        platform.cache.invalidate("strategies")
    finally:
        platform.close()
    if as_json:
        print_json(strategy_json(item) | {"created": created})
    else:
        out.print(f"{item.name} v{item.version} " + ("stored" if created else
                                                      "unchanged (same code as the newest "
                                                      "version)"))


@strategies_app.command("validate")
@handle_errors
def strategies_validate(
    rule: Annotated[str | None, typer.Option(help="Rule text")] = None,
    file: Annotated[Path | None, typer.Option(help="File holding the rule text")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a rule without storing anything; errors point at the position of the mistake."""
    from signalfactory.domain.rules import check_rule

    text = _rule_from(rule, file)
    checked = check_rule(text)
    if as_json:
        print_json({"valid": True, "canonical": checked.canonical_text,
                    "lookback": checked.lookback})
    else:
        out.print(f"valid; needs {checked.lookback} bars of warm-up\n{checked.canonical_text}")
