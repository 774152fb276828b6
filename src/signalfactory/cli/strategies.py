"""Stored strategies on the command line: list, show, add, validate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from signalfactory.cli.common import (
    JsonOpt,
    handle_errors,
    json_option,
    out,
    platform_with_builtins,
    print_json,
)
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.strategies import StrategyParam
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.domain.tenants import DEFAULT_TENANT_ID

strategies_app = typer.Typer(help="Stored strategies: list, show, add, validate, check, runs.",
                             no_args_is_help=True)

JsonValue = str | int | float | bool | None | dict[str, StrategyParam]


def _rule_from(rule: str | None, file: Path | None) -> str:
    if file is not None and rule is None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInputError(f"cannot read {file}: {exc.strerror}") from exc
    if rule is None or file is not None:
        raise BadInputError("give exactly one of --rule TEXT or --file PATH")
    return rule


def _source_from(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}") from exc


def strategy_json(s: StoredStrategy) -> dict[str, JsonValue]:
    return {"id": s.id, "name": s.name, "kind": s.kind, "version": s.version,
            "rule_text": s.rule_text, "class_path": s.class_path,
            "parameters": dict(s.parameters), "timeframe": s.timeframe,
            "code_hash": s.code_hash, "created_by": s.created_by,
            "created_at": s.created_at.isoformat() if s.created_at else None,
            "builtin": s.builtin, "description": s.description, "versions": s.versions,
            "sandboxed": s.sandboxed, "source": s.source}


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
        "--class", help="An installed Python plug-in (trusted, runs in-process): entry point "
                        "name, package.module:Class or path/to/file.py:Class")] = None,
    source: Annotated[Path | None, typer.Option(
        "--source", help="Upload a Python strategy file: checked, stored with its sha256 and "
                         "run only in the sandbox")] = None,
    class_name: Annotated[str | None, typer.Option(
        "--class-name", help="With --source: the class to run if the file defines several")]
    = None,
    params: Annotated[str | None, typer.Option(help="JSON parameters (Python strategies)")]
    = None,
    timeframe: Annotated[str, typer.Option(help="Timeframe it runs on")] = "1d",
    as_json: JsonOpt = False,
) -> None:
    """Add a strategy, or a new version if its code changed."""
    from signalfactory.domain.strategies.source_check import check_source
    from signalfactory.services.strategies.catalog import (
        add_strategy,
        check_new,
        check_new_strategy,
        ensure_builtins,
        prepare_upload,
    )

    parameters: dict[str, StrategyParam] | None = None
    if params is not None:
        value = json_option(params, "--params")
        if not isinstance(value, dict):
            raise BadInputError('--params must be a JSON object such as {"fast": 5}')
        parameters = value
    if source is not None and (python is not None or rule is not None or file is not None):
        raise BadInputError("--source uploads a Python file; give it without --rule, --file "
                            "or --class")
    if class_name is not None and source is None:
        raise BadInputError("--class-name goes with --source")
    text = None if (python is not None or source is not None) and rule is None \
        and file is None else _rule_from(rule, file)
    code = _source_from(source) if source is not None else None
    # bad input is refused before the database is opened (or created, in a new home); an
    # upload's load in the sandbox needs the platform, its static check does not
    if code is None:
        check_new_strategy(DEFAULT_TENANT_ID, name, rule_text=text, class_path=python,
                           parameters=parameters, timeframe=timeframe)
    else:
        check_new(DEFAULT_TENANT_ID, name, timeframe)
        check_source(code, class_name)
    from signalfactory.cli.common import build_platform

    platform = build_platform(migrate_db=True)
    try:
        upload = None if code is None else prepare_upload(
            platform, DEFAULT_TENANT_ID, name, code, class_name=class_name,
            parameters=parameters, timeframe=timeframe)
        with platform.database.write() as uow:  # the built-ins commit with the add, or not
            ensure_builtins(uow)
            item, created = add_strategy(uow, DEFAULT_TENANT_ID, name, rule_text=text,
                                         class_path=python,
                                         parameters=None if upload else parameters,
                                         timeframe=timeframe, created_by="cli", upload=upload)
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


@strategies_app.command("check")
@handle_errors
def strategies_check(
    source: Annotated[Path, typer.Argument(help="Python strategy file")],
    class_name: Annotated[str | None, typer.Option("--class-name")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the upload's static check on a Python file (nothing runs, nothing is stored)."""
    from signalfactory.domain.sandbox import source_sha256
    from signalfactory.domain.strategies.source_check import check_source

    code = _source_from(source)
    checked = check_source(code, class_name)
    result = {"valid": True, "class_name": checked.class_name, "imports": list(checked.imports),
              "code_hash": source_sha256(code)}
    if as_json:
        print_json(result)
    else:
        out.print(f"passes the static check; class {checked.class_name}, sha256 "
                  f"{result['code_hash']}", highlight=False)


@strategies_app.command("runs")
@handle_errors
def strategies_runs(
    name: Annotated[str | None, typer.Argument(help="Only this strategy's runs")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Sandbox runs of uploaded Python strategies: input, duration, outcome, limit hit."""
    from signalfactory.services.strategies.catalog import get_strategy

    if not 1 <= limit <= 10_000:
        raise BadInputError("--limit must be between 1 and 10000")
    platform = platform_with_builtins()
    try:
        with platform.database.read(primary=True) as uow:
            version_id = None
            if name is not None:
                version_id = get_strategy(uow, DEFAULT_TENANT_ID, name).version_id
            runs = uow.sandbox_runs.recent(DEFAULT_TENANT_ID, strategy_version_id=version_id,
                                           limit=limit)
    finally:
        platform.close()
    rows = [{"id": ident, "strategy_version_id": r.strategy_version_id,
             "code_hash": r.code_hash, "purpose": r.purpose, "instruments": r.instruments,
             "bars": r.bars, "first_bar": r.first_bar.isoformat() if r.first_bar else None,
             "last_bar": r.last_bar.isoformat() if r.last_bar else None,
             "started_at": r.started_at.isoformat(), "duration_ms": round(r.duration_ms, 3),
             "outcome": r.outcome, "limit_hit": r.limit_hit, "error": r.error,
             "signals": r.signals, "fresh_worker": r.fresh_worker} for ident, r in runs]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "purpose", "code", "bars", "ms", "outcome", "limit", "error")
    for row in rows:
        table.add_row(str(row["id"]), str(row["purpose"]), str(row["code_hash"])[:10],
                      str(row["bars"]), f"{row['duration_ms']:.1f}", str(row["outcome"]),
                      str(row["limit_hit"] or ""), str(row["error"] or "")[:60])
    out.print(table)
