"""``signalfactory campaigns ...``: one message to every subscriber of a tenant."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from signalfactory.cli.common import handle_errors, out, print_json
from signalfactory.cli.endpoints import JsonOption, TenantOption, tenant_platform
from signalfactory.domain.delivery import Campaign, NewCampaign
from signalfactory.services.delivery import campaign_records as service
from signalfactory.services.delivery.campaigns import start_campaign

campaigns_app = typer.Typer(help="Campaigns: send, list, show.", no_args_is_help=True)


def _data(c: Campaign) -> dict[str, object]:
    return asdict(c)


def _print(c: Campaign, as_json: bool) -> None:
    if as_json:
        print_json(_data(c))
        return
    out.print(f"campaign {c.id} {escape(c.subject)!r}: {c.status}, {c.enqueued}/{c.total} "
              "enqueued", highlight=False, soft_wrap=True)


@campaigns_app.command("send")
@handle_errors
def campaigns_send(
    subject: Annotated[str, typer.Option(help="Subject line")],
    body: Annotated[str, typer.Option(help="Message text")],
    subscription: Annotated[list[int] | None, typer.Option(
        min=1, help="Only this subscription (repeatable); default: every one")] = None,
    tenant: TenantOption = "default", as_json: JsonOption = False,
) -> None:
    """Send a message to every subscriber of the tenant (or the given subscriptions)."""
    with tenant_platform(tenant) as (platform, tenant_id):
        campaign = start_campaign(platform, tenant_id, NewCampaign(
            tenant_id=tenant_id, subject=subject, body=body,
            subscription_ids=tuple(subscription or ())))
    _print(campaign, as_json)


@campaigns_app.command("list")
@handle_errors
def campaigns_list(tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """The tenant's campaigns, newest first."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        items = service.list_campaigns(uow, tenant_id)
    if as_json:
        print_json({"items": [_data(c) for c in items]})
        return
    table = Table("id", "subject", "status", "enqueued", "total", "created")
    for c in items:
        table.add_row(str(c.id), escape(c.subject), c.status, str(c.enqueued), str(c.total),
                      f"{c.created_at:%Y-%m-%d %H:%M}")
    out.print(table)


@campaigns_app.command("show")
@handle_errors
def campaigns_show(campaign_id: Annotated[int, typer.Argument(min=1)],
                   tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """One campaign with its progress."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        campaign = service.get_campaign(uow, tenant_id, campaign_id)
    _print(campaign, as_json)
