"""``signalfactory deliveries ...``: the outbox of a tenant and its dead-letter queue."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from signalfactory.cli.common import handle_errors, out, print_json
from signalfactory.cli.endpoints import JsonOption, TenantOption, tenant_platform
from signalfactory.domain.delivery import DEAD, Delivery
from signalfactory.domain.errors import BadInputError
from signalfactory.services.delivery import records

deliveries_app = typer.Typer(help="Deliveries: list, show, dead-letter queue.",
                             no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue: list and replay.", no_args_is_help=True)
deliveries_app.add_typer(dlq_app, name="dlq")

LimitOption = Annotated[int, typer.Option(min=1, max=records.MAX_PAGE)]


def _table(items: list[Delivery], as_json: bool) -> None:
    if as_json:
        print_json({"items": [asdict(d) for d in items],
                    "next_after": items[-1].id if items else None})
        return
    table = Table("id", "endpoint", "subscription", "campaign", "status", "attempts",
                  "last error")
    for d in items:
        table.add_row(d.id, str(d.endpoint_id), str(d.subscription_id or ""),
                      str(d.campaign_id or ""), d.status, str(d.attempts),
                      escape((d.last_error or "")[:60]))
    out.print(table)


@deliveries_app.command("list")
@handle_errors
def deliveries_list(
    status: Annotated[str | None, typer.Option(help="pending, sending, delivered, dead, "
                                                     "suppressed")] = None,
    endpoint: Annotated[int | None, typer.Option(min=1)] = None,
    subscription: Annotated[int | None, typer.Option(min=1)] = None,
    campaign: Annotated[int | None, typer.Option(min=1)] = None,
    channel: Annotated[str | None, typer.Option(help="webhook, apprise or email")] = None,
    after: Annotated[str | None, typer.Option(help="Only ids after this one (paging)")] = None,
    limit: LimitOption = 100, tenant: TenantOption = "default", as_json: JsonOption = False,
) -> None:
    """Deliveries, oldest first, filtered."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        items = records.find_deliveries(uow, tenant_id, status=status,
                                        endpoint_id=endpoint, subscription_id=subscription,
                                        campaign_id=campaign, channel=channel, after=after,
                                        limit=limit)
    _table(items, as_json)


@deliveries_app.command("show")
@handle_errors
def deliveries_show(delivery_id: Annotated[str, typer.Argument()],
                    tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """One delivery with every attempt."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        found = records.get_delivery(uow, tenant_id, delivery_id)
    data = asdict(found.delivery) | {"attempt_log": [asdict(a) for a in found.attempts]}
    if as_json:
        print_json(data)
        return
    d = found.delivery
    out.print(f"delivery {d.id}: {d.status}, endpoint {d.endpoint_id}, {d.attempts} "
              f"attempt(s)", highlight=False)
    for a in found.attempts:
        out.print(f"  #{a.attempt} {a.started_at:%Y-%m-%d %H:%M:%S} status "
                  f"{a.status_code or '-'} {a.latency_ms:.0f} ms {escape(a.error or '')}",
                  highlight=False, soft_wrap=True)


@deliveries_app.command("attempts")
@handle_errors
def deliveries_attempts(delivery_id: Annotated[str, typer.Argument()],
                        tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Every attempt of one delivery: time, status code, latency, error, response excerpt."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        found = records.get_delivery(uow, tenant_id, delivery_id)
    if as_json:
        print_json({"items": [asdict(a) for a in found.attempts]})
        return
    table = Table("#", "started", "status", "latency ms", "error", "response")
    for a in found.attempts:
        table.add_row(str(a.attempt), f"{a.started_at:%Y-%m-%d %H:%M:%S}",
                      str(a.status_code or "-"), f"{a.latency_ms:.0f}",
                      escape(a.error or ""), escape((a.response_excerpt or "")[:60]))
    out.print(table)


@dlq_app.command("list")
@handle_errors
def dlq_list(endpoint: Annotated[int | None, typer.Option(min=1)] = None,
             after: Annotated[str | None, typer.Option()] = None, limit: LimitOption = 100,
             tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Dead-lettered deliveries (every attempt failed)."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        items = records.find_deliveries(uow, tenant_id, status=DEAD, endpoint_id=endpoint,
                                        after=after, limit=limit)
    _table(items, as_json)


@dlq_app.command("replay")
@handle_errors
def dlq_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Delivery ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead delivery")] = False,
    endpoint: Annotated[int | None, typer.Option(min=1, help="An endpoint's")] = None,
    tenant: TenantOption = "default", as_json: JsonOption = False,
) -> None:
    """Send dead deliveries again: these ids, --endpoint N's, or --all."""
    if not ids and endpoint is None and not all_:
        raise BadInputError("name delivery ids, --endpoint N or --all")
    with tenant_platform(tenant) as (platform, tenant_id):
        replayed = records.replay_dead(platform, tenant_id, ids=ids or (),
                                       endpoint_id=endpoint, replay_all=all_)
    if as_json:
        print_json({"replayed": replayed})
    else:
        out.print(f"{replayed} deliveries queued again", highlight=False)
