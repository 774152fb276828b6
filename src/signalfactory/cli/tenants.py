"""Tenants and API keys: ``signalfactory tenants ...`` and ``signalfactory keys ...``."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.table import Table

from signalfactory.cli.common import build_platform, cli_actor, err, handle_errors, out, print_json
from signalfactory.domain.api_keys import ROLES
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.platform import Platform

tenants_app = typer.Typer(help="Tenants: create, list, change tier.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create (shown once), list by prefix, revoke.",
                       no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]


def _platform() -> Platform:
    # Alembic announces itself at INFO on stdout; these commands print a key or JSON there
    # that scripts capture, so keep it quiet.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return build_platform(migrate_db=True)


@tenants_app.command("create")
@handle_errors
def tenants_create(
    name: Annotated[str, typer.Argument(help="Unique tenant name")],
    tier: Annotated[str, typer.Option(help="free, premium or enterprise")] = "free",
    as_json: JsonOption = False,
) -> None:
    """Create a tenant on a tier (free by default)."""
    platform = _platform()
    try:
        with platform.database.write() as uow:
            tenant = accounts.create_tenant(uow, name, tier)
    finally:
        platform.close()
    if as_json:
        print_json({"id": tenant.id, "name": tenant.name, "tier": tenant.tier})
    else:
        out.print(f"tenant {tenant.name!r} created (id {tenant.id}, tier "
                  f"{tenant.tier}); next: signalfactory keys create --tenant "
                  f"{tenant.name} --role admin", highlight=False, soft_wrap=True)


@tenants_app.command("list")
@handle_errors
def tenants_list(as_json: JsonOption = False) -> None:
    """List tenants with their tier and number of active keys."""
    platform = _platform()
    try:
        with platform.database.read(primary=True) as uow:
            rows = accounts.list_tenants(uow)
    finally:
        platform.close()
    if as_json:
        print_json([{"id": r.id, "name": r.name, "tier": r.tier, "active_keys": r.active_keys}
                    for r in rows])
        return
    table = Table("id", "name", "tier", "active keys")
    for row in rows:
        table.add_row(str(row.id), row.name, row.tier, str(row.active_keys))
    out.print(table)


@tenants_app.command("set-tier")
@handle_errors
def tenants_set_tier(
    name: Annotated[str, typer.Argument(help="Tenant name")],
    tier: Annotated[str, typer.Argument(help="free, premium or enterprise")],
    as_json: JsonOption = False,
) -> None:
    """Move a tenant to another tier (quotas and rate limits follow at once)."""
    platform = _platform()
    try:
        with platform.database.write() as uow:
            accounts.set_tier(uow, name, tier, actor=cli_actor(),
                              now=platform.clock.now())
    finally:
        platform.close()
    if as_json:
        print_json({"name": name, "tier": tier})
    else:
        out.print(f"tenant {name!r} is now on the {tier} tier", highlight=False)


@keys_app.command("create")
@handle_errors
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}")],
    name: Annotated[str, typer.Option(help="A label, e.g. what uses the key")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an API key and print it ONCE; only its SHA-256 digest is stored."""
    platform = _platform()
    try:
        with platform.database.write() as uow:
            owner = accounts.tenant_by_name(uow, tenant)
            new, key_id = accounts.create_key(uow, owner.id, role, name,
                                              now=platform.clock.now(), actor=cli_actor())
    finally:
        platform.close()
    if as_json:
        print_json({"id": key_id, "key": new.secret, "prefix": new.prefix,
                    "tenant": owner.name, "role": role, "name": name})
        return
    # The key alone on stdout (scripts capture it); the advice on stderr.
    typer.echo(new.secret)
    err.print(f"key {key_id} ({new.prefix}..., role {role}) for tenant {owner.name!r}: "
              "store it now, it is not shown again", highlight=False, soft_wrap=True)


@keys_app.command("list")
@handle_errors
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys")] = None,
    as_json: JsonOption = False,
) -> None:
    """List keys by prefix with role, status and last use (never the key itself)."""
    platform = _platform()
    try:
        with platform.database.read(primary=True) as uow:
            tenant_id = accounts.tenant_by_name(uow, tenant).id if tenant else None
            records = accounts.list_keys(uow, tenant_id)
    finally:
        platform.close()
    if as_json:
        print_json([r.as_json() for r in records])
        return
    table = Table("id")
    table.add_column("prefix", no_wrap=True, min_width=len(records[0].prefix) + 3
                     if records else 6)
    for column in ("tenant", "role", "name", "status", "created", "last used"):
        table.add_column(column)
    for record in records:
        row = record.as_json()
        last_used = str(row["last_used_at"] or "never")[:16].replace("T", " ")
        table.add_row(str(record.id), record.prefix + "...", record.tenant_name, record.role,
                      record.name, record.status, str(row["created_at"] or "")[:10],
                      last_used)
    out.print(table)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(
    key: Annotated[str, typer.Argument(help="Key id or prefix (sf_live_XXXXXXXX)")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key at once; requests with it get 401 from now on."""
    platform = _platform()
    try:
        with platform.database.write() as uow:
            record = accounts.resolve_key(uow, key)
            changed = accounts.revoke_key(uow, record.id, now=platform.clock.now(),
                                          actor=cli_actor())
    finally:
        platform.close()
    if as_json:
        print_json({"id": record.id, "prefix": record.prefix, "revoked": True,
                    "already_revoked": not changed})
    elif changed:
        out.print(f"key {record.id} ({record.prefix}...) of tenant {record.tenant_name!r} "
                  "revoked", highlight=False)
    else:
        out.print(f"key {record.id} ({record.prefix}...) was already revoked", highlight=False)
