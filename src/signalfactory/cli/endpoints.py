"""``signalfactory endpoints ...``: a tenant's delivery endpoints from the command line.

A webhook's signing secret is printed once, when it is made (add, rotate). ``--target -``
reads the target from stdin, so a URL carrying a token stays out of the process list and
the shell history.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from signalfactory.cli.common import err, handle_errors, out, print_json
from signalfactory.domain.delivery import Endpoint
from signalfactory.domain.streaming import iso_utc
from signalfactory.services.accounts.tenants import tenant_by_name
from signalfactory.services.delivery import endpoints as service
from signalfactory.services.platform import Platform

endpoints_app = typer.Typer(help="Delivery endpoints: webhooks, Apprise URLs, e-mail.",
                            no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant name")]
EndpointId = Annotated[int, typer.Argument(min=1, help="Endpoint id (see endpoints list)")]


@contextmanager
def tenant_platform(tenant: str) -> Iterator[tuple[Platform, int]]:
    """A migrated platform and the id of the named tenant (NotFoundError: exit 2)."""
    from signalfactory.cli.common import build_platform

    # Alembic announces itself on stdout, where --json output goes.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    platform = build_platform(migrate_db=True)
    try:
        with platform.database.read(primary=True) as uow:
            tenant_id = tenant_by_name(uow, tenant).id
        yield platform, tenant_id
    finally:
        platform.close()


def endpoint_data(ep: Endpoint, secret: str | None = None) -> dict[str, object]:
    data: dict[str, object] = {
        "id": ep.id, "name": ep.name, "kind": ep.kind, "target_hint": ep.target_hint,
        "enabled": ep.enabled, "disabled_reason": ep.disabled_reason,
        "max_per_second": ep.max_per_second, "created_at": iso_utc(ep.created_at)}
    if secret is not None:
        data["secret"] = secret
    return data


def _print(ep: Endpoint, as_json: bool, secret: str | None = None) -> None:
    if as_json:
        print_json(endpoint_data(ep, secret))
        return
    state = "enabled" if ep.enabled else f"disabled ({ep.disabled_reason or 'no reason'})"
    out.print(f"endpoint {ep.id} {escape(ep.name)!r}: {ep.kind} {escape(ep.target_hint)}, "
              f"{state}", highlight=False, soft_wrap=True)
    if secret is not None:
        out.print(f"signing secret (shown once, store it now): {secret}", highlight=False,
                  soft_wrap=True)


@endpoints_app.command("add")
@handle_errors
def endpoints_add(
    name: Annotated[str, typer.Argument(help="A name unique in the tenant")],
    kind: Annotated[str, typer.Option(help="webhook, apprise or email")],
    target: Annotated[str, typer.Option(help="URL or address; - reads it from stdin")],
    max_per_second: Annotated[float | None, typer.Option(help="Pace sends")] = None,
    tenant: TenantOption = "default", as_json: JsonOption = False,
) -> None:
    """Add an endpoint; a webhook's signing secret is printed once."""
    clear = sys.stdin.readline().strip() if target == "-" else target
    with tenant_platform(tenant) as (platform, tenant_id):
        created = service.create_endpoint(platform, tenant_id, name=name, kind=kind,
                                          target=clear, max_per_second=max_per_second)
    _print(created.endpoint, as_json, created.secret)


@endpoints_app.command("list")
@handle_errors
def endpoints_list(tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """List the tenant's endpoints (targets redacted)."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        items = service.list_endpoints(uow, tenant_id)
    if as_json:
        print_json({"items": [endpoint_data(e) for e in items]})
        return
    table = Table("id", "name", "kind", "target", "enabled")
    for e in items:
        table.add_row(str(e.id), escape(e.name), e.kind, escape(e.target_hint),
                      "yes" if e.enabled else "no")
    out.print(table)


@endpoints_app.command("show")
@handle_errors
def endpoints_show(endpoint_id: EndpointId, tenant: TenantOption = "default",
                   as_json: JsonOption = False) -> None:
    """One endpoint."""
    with tenant_platform(tenant) as (platform, tenant_id), platform.database.read() as uow:
        ep = service.get_endpoint(uow, tenant_id, endpoint_id)
    _print(ep, as_json)


@endpoints_app.command("rotate")
@handle_errors
def endpoints_rotate(endpoint_id: EndpointId, tenant: TenantOption = "default",
                     as_json: JsonOption = False) -> None:
    """New signing secret (printed once); the previous one signs for 24 h more."""
    with tenant_platform(tenant) as (platform, tenant_id):
        rotated = service.rotate_secret(platform, tenant_id, endpoint_id)
    _print(rotated.endpoint, as_json, rotated.secret)


@endpoints_app.command("test")
@handle_errors
def endpoints_test(endpoint_id: EndpointId, tenant: TenantOption = "default",
                   as_json: JsonOption = False) -> None:
    """Queue a test message to the endpoint."""
    with tenant_platform(tenant) as (platform, tenant_id):
        delivery_id = service.send_test(platform, tenant_id, endpoint_id)
    if as_json:
        print_json({"delivery_id": delivery_id})
    else:
        out.print(f"test message queued: {delivery_id} (signalfactory deliveries show "
                  f"{delivery_id})", highlight=False)


def _set_enabled(endpoint_id: int, tenant: str, as_json: bool, enabled: bool) -> None:
    with tenant_platform(tenant) as (platform, tenant_id):
        ep = service.set_endpoint_enabled(platform, tenant_id, endpoint_id, enabled)
    _print(ep, as_json)


@endpoints_app.command("enable")
@handle_errors
def endpoints_enable(endpoint_id: EndpointId, tenant: TenantOption = "default",
                     as_json: JsonOption = False) -> None:
    """Enable an endpoint."""
    _set_enabled(endpoint_id, tenant, as_json, True)


@endpoints_app.command("disable")
@handle_errors
def endpoints_disable(endpoint_id: EndpointId, tenant: TenantOption = "default",
                      as_json: JsonOption = False) -> None:
    """Disable an endpoint: nothing is sent to it until it is enabled."""
    _set_enabled(endpoint_id, tenant, as_json, False)


@endpoints_app.command("remove")
@handle_errors
def endpoints_remove(endpoint_id: EndpointId, tenant: TenantOption = "default") -> None:
    """Remove an endpoint and its deliveries."""
    with tenant_platform(tenant) as (platform, tenant_id):
        service.delete_endpoint(platform, tenant_id, endpoint_id)
    err.print(f"endpoint {endpoint_id} removed", highlight=False)
