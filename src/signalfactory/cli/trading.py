"""Trading on the command line: ``signalfactory bots ...``, ``orders ...`` and
``kill-switch engage|rearm|resume|status``.

The command line is the operator's: it acts for any tenant (``--tenant``, the default tenant
when omitted) and on any kill switch scope, the global one included; every change is audited
as ``cli:<OS user>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from signalfactory.cli.common import cli_actor, handle_errors, out, print_json
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.bots import Bot, RiskLimits
from signalfactory.services.platform import Platform

bots_app = typer.Typer(help="Trading bots: create, list, start, stop, status.",
                       no_args_is_help=True)
orders_app = typer.Typer(help="Orders of the tenant's bots.", no_args_is_help=True)
kill_switch_app = typer.Typer(help="The kill switch: engage, re-arm, resume, status.",
                              no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option(help="Tenant name")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON")]
BotId = Annotated[int, typer.Argument(min=1, max=2**31 - 1, help="Bot id")]
Scope = Annotated[str, typer.Option(help="global, tenant or bot")]
ScopeId = Annotated[int | None, typer.Option(
    "--id", min=0, help="Bot or tenant id (default: the --tenant's id; 0 for global)")]


@contextmanager
def _tenant_platform(tenant: str) -> Iterator[tuple[Platform, int]]:
    from signalfactory.cli.common import build_platform
    from signalfactory.services.accounts.tenants import tenant_by_name

    platform = build_platform(migrate_db=True)
    try:
        with platform.database.read(primary=True) as uow:
            tenant_id = tenant_by_name(uow, tenant).id
        yield platform, tenant_id
    finally:
        platform.close()


def _bot_json(bot: Bot) -> dict[str, object]:
    return {"id": bot.id, "name": bot.name, "status": bot.status, "state": bot.state,
            "symbols": list(bot.symbols), "timeframe": bot.timeframe,
            "allocation": bot.allocation, "account_id": bot.account_id,
            "strategy_version_id": bot.strategy_version_id, "limits": asdict(bot.limits)}


def _say(text: str) -> None:
    out.print(text, highlight=False, soft_wrap=True, markup=False)


@bots_app.command("create")
@handle_errors
def bots_create(
    name: Annotated[str, typer.Argument(help="Bot name, unique in the tenant")],
    strategy: Annotated[str, typer.Option(help="Stored strategy name")],
    account: Annotated[int, typer.Option(min=1, help="Exchange account id")],
    symbols: Annotated[str, typer.Option(help="Comma-separated, e.g. BTC/USDT,ETH/USDT")],
    allocation: Annotated[float, typer.Option(help="Capital of the bot (quote currency)")],
    tenant: TenantOpt = "default",
    version: Annotated[int | None, typer.Option(min=1, help="Strategy version")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Default: the strategy's")] = None,
    sizing: Annotated[str, typer.Option(help="fraction, cash or units")] = "fraction",
    size: Annotated[float, typer.Option(help="The sizing's value")] = 1.0,
    daily_loss_limit: Annotated[float | None, typer.Option(help="Quote currency")] = None,
    max_drawdown: Annotated[float | None, typer.Option(help="Fraction, e.g. 0.2")] = None,
    max_order_notional: Annotated[float | None, typer.Option()] = None,
    max_open_positions: Annotated[int | None, typer.Option(min=1)] = None,
    as_json: AsJson = False,
) -> None:
    """Create a bot (stopped); start it with `signalfactory bots start ID`."""
    from signalfactory.services.trading.bots import create_bot

    limits = RiskLimits(daily_loss_limit=daily_loss_limit, max_drawdown=max_drawdown,
                        max_order_notional=max_order_notional,
                        max_open_positions=max_open_positions)
    with _tenant_platform(tenant) as (platform, tenant_id):
        bot = create_bot(platform, tenant_id, name=name, strategy=strategy,
                         account_id=account, version=version, timeframe=timeframe,
                         symbols=[s for s in symbols.split(",") if s.strip()],
                         allocation=allocation, sizing=sizing, size_value=size,
                         limits=limits, actor=cli_actor())
    if as_json:
        print_json(_bot_json(bot))
    else:
        _say(f"bot {bot.id} {bot.name!r} created (stopped); next: signalfactory bots start "
             f"{bot.id}")


@bots_app.command("list")
@handle_errors
def bots_list(tenant: TenantOpt = "default", as_json: AsJson = False) -> None:
    """The tenant's bots with their run status and state."""
    from signalfactory.services.trading.bots import list_bots

    with _tenant_platform(tenant) as (platform, tenant_id):
        bots = list_bots(platform, tenant_id)
    if as_json:
        print_json([_bot_json(b) for b in bots])
        return
    table = Table("id", "name", "status", "state", "timeframe", "symbols", "allocation")
    for b in bots:
        table.add_row(str(b.id), b.name, b.status, b.state, b.timeframe,
                      ",".join(b.symbols[:3]) + ("…" if len(b.symbols) > 3 else ""),
                      f"{b.allocation:,.2f}")
    out.print(table)


def _run_status_change(tenant: str, bot_id: int, start: bool, as_json: bool) -> None:
    from signalfactory.services.trading.bots import start_bot, stop_bot

    with _tenant_platform(tenant) as (platform, tenant_id):
        change = start_bot if start else stop_bot
        bot = change(platform, tenant_id, bot_id, actor=cli_actor())
    if as_json:
        print_json(_bot_json(bot))
    else:
        _say(f"bot {bot.id} {bot.name!r} is {bot.status}")


@bots_app.command("start")
@handle_errors
def bots_start(bot_id: BotId, tenant: TenantOpt = "default", as_json: AsJson = False) -> None:
    """Start a bot: reconcile with its exchange, then trade each new bar."""
    _run_status_change(tenant, bot_id, True, as_json)


@bots_app.command("stop")
@handle_errors
def bots_stop(bot_id: BotId, tenant: TenantOpt = "default", as_json: AsJson = False) -> None:
    """Stop a bot (working orders stay; the kill switch cancels them)."""
    _run_status_change(tenant, bot_id, False, as_json)


@bots_app.command("status")
@handle_errors
def bots_status(bot_id: BotId, tenant: TenantOpt = "default", as_json: AsJson = False) -> None:
    """A bot's state, runner, positions, working orders and latest equity."""
    from signalfactory.services.trading.bots import bot_status

    with _tenant_platform(tenant) as (platform, tenant_id):
        status = bot_status(platform, tenant_id, bot_id)
    mark = status.last_mark
    body: dict[str, object] = {
        **_bot_json(status.bot), "effective_state": status.effective.state,
        "state_reason": status.effective.message if status.effective.rule else None,
        "working_orders": status.working_orders,
        "positions": [{"symbol": p.symbol, "quantity": p.quantity,
                       "average_price": p.average_price} for p in status.positions],
        "equity": mark.equity if mark else None,
        "lease_owner": status.runtime.lease_owner}
    if as_json:
        print_json(body)
        return
    for key, value in body.items():
        _say(f"{key}: {json.dumps(value, default=str)}")


@orders_app.command("list")
@handle_errors
def orders_list(
    tenant: TenantOpt = "default",
    bot: Annotated[int | None, typer.Option(min=1, help="Only this bot's")] = None,
    status: Annotated[str | None, typer.Option(help="pending, open, filled...")] = None,
    symbol: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: AsJson = False,
) -> None:
    """The tenant's orders, newest first."""
    from signalfactory.services.portfolio.views import list_orders

    with _tenant_platform(tenant) as (platform, tenant_id):
        orders = list_orders(platform, tenant_id, bot_id=bot, status=status, symbol=symbol,
                             limit=limit)
    if as_json:
        print_json([asdict(o) for o in orders])
        return
    table = Table("id", "bot", "symbol", "side", "qty", "status", "filled", "avg price",
                  "created")
    for o in orders:
        table.add_row(str(o.id), str(o.bot_id or ""), o.symbol, o.side, f"{o.quantity:g}",
                      o.status, f"{o.filled_quantity:g}",
                      f"{o.average_price:g}" if o.average_price is not None else "",
                      o.created_at.isoformat()[:19])
    out.print(table)


@orders_app.command("show")
@handle_errors
def orders_show(order_id: Annotated[int, typer.Argument(min=1)], tenant: TenantOpt = "default"
                ) -> None:
    """One order as JSON."""
    from signalfactory.services.portfolio.views import get_order

    with _tenant_platform(tenant) as (platform, tenant_id):
        order = get_order(platform, tenant_id, order_id)
    print_json(asdict(order))


def _scope(scope: str, scope_id: int | None, tenant_id: int) -> tuple[str, int]:
    if scope not in ("global", "tenant", "bot"):
        raise BadInputError("--scope must be global, tenant or bot", rule="scope")
    if scope_id is None:
        if scope == "bot":
            raise BadInputError("--scope bot needs --id BOT_ID", rule="scope")
        scope_id = 0 if scope == "global" else tenant_id
    return scope, scope_id


@kill_switch_app.command("engage")
@handle_errors
def kill_engage(
    reason: Annotated[str, typer.Option(help="Why (audited)")],
    scope: Scope = "global", scope_id: ScopeId = None, tenant: TenantOpt = "default",
    flatten: Annotated[bool, typer.Option(help="Also close the scope's positions")] = False,
    as_json: AsJson = False,
) -> None:
    """Engage: refuse new orders at once, cancel working orders, optionally flatten."""
    from signalfactory.services.trading.killswitch import engage_kill_switch

    with _tenant_platform(tenant) as (platform, tenant_id):
        where, where_id = _scope(scope, scope_id, tenant_id)
        report = engage_kill_switch(platform, where, where_id, actor=cli_actor(),
                                    reason=reason, flatten=flatten)
    body = {"scope": where, "scope_id": where_id, "changed": report.changed,
            "cancelled": report.sweep.cancelled, "not_found": report.sweep.not_found,
            "flatten_orders": report.sweep.flatten_orders, "errors": report.sweep.errors}
    if as_json:
        print_json(body)
    else:
        _say(f"kill switch {where}:{where_id} "
             + ("engaged" if report.changed else "was engaged already")
             + f"; {report.sweep.cancelled} order(s) cancelled, "
               f"{report.sweep.flatten_orders} flatten order(s); release with "
               f"`kill-switch rearm` then `kill-switch resume`")


@kill_switch_app.command("rearm")
@handle_errors
def kill_rearm(scope: Scope = "global", scope_id: ScopeId = None,
               tenant: TenantOpt = "default",
               reason: Annotated[str, typer.Option()] = "") -> None:
    """Step one of releasing: re-arm (trading stays halted until `resume`)."""
    from signalfactory.services.trading.killswitch import rearm_kill_switch

    with _tenant_platform(tenant) as (platform, tenant_id):
        where, where_id = _scope(scope, scope_id, tenant_id)
        switch = rearm_kill_switch(platform, where, where_id, actor=cli_actor(),
                                   reason=reason)
    _say(f"kill switch {where}:{where_id} re-armed (engaged={switch.engaged}); next: "
         "signalfactory kill-switch resume")


@kill_switch_app.command("resume")
@handle_errors
def kill_resume(scope: Scope = "global", scope_id: ScopeId = None,
                tenant: TenantOpt = "default",
                reason: Annotated[str, typer.Option()] = "") -> None:
    """Step two: resume trading (a re-armed switch, or a halted/reducing scope)."""
    from signalfactory.services.trading.killswitch import resume_trading

    with _tenant_platform(tenant) as (platform, tenant_id):
        where, where_id = _scope(scope, scope_id, tenant_id)
        resumed = resume_trading(platform, where, where_id, actor=cli_actor(), reason=reason)
    _say(f"{where}:{where_id} resumed ({resumed})")


@kill_switch_app.command("status")
@handle_errors
def kill_status(as_json: AsJson = False) -> None:
    """Every kill switch and every scope not trading normally."""
    from signalfactory.cli.common import build_platform
    from signalfactory.services.trading.killswitch import kill_switches

    platform = build_platform(migrate_db=True)
    try:
        switches, states = kill_switches(platform)
    finally:
        platform.close()
    body = {"switches": [{**asdict(s), "changed_at": s.changed_at.isoformat()}
                         for s in switches],
            "states": [{"scope": s.scope, "scope_id": s.scope_id, "state": s.state,
                        "reason": s.reason} for s in states]}
    if as_json:
        print_json(body)
        return
    engaged = [s for s in switches if s.engaged]
    _say(f"{len(engaged)} kill switch(es) engaged" + "".join(
        f"\n  {s.scope}:{s.scope_id} since {s.changed_at.isoformat()[:19]} by {s.changed_by}"
        f" ({'re-armed, awaiting resume' if s.rearmed else 'engaged'}): {s.reason}"
        for s in engaged))
    for s in states:
        _say(f"  {s.scope}:{s.scope_id} is {s.state}: {s.reason}")
