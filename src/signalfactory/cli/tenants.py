"""Tenants and API keys: ``signalfactory tenants ...`` and ``signalfactory keys ...``."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.table import Table

from signalfactory.adapters.storage import api_keys as key_store
from signalfactory.bootstrap import build_platform
from signalfactory.cli.common import err, handle_errors, out, print_json
from signalfactory.domain.api_keys import ROLES
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
        with platform.engine.begin() as conn:
            tenant = key_store.create_tenant(conn, name, tier)
    finally:
        platform.close()
    if as_json:
        print_json(tenant)
    else:
        out.print(f"tenant {tenant['name']!r} created (id {tenant['id']}, tier "
                  f"{tenant['tier']}); next: signalfactory keys create --tenant "
                  f"{tenant['name']} --role admin", highlight=False, soft_wrap=True)


@tenants_app.command("list")
@handle_errors
def tenants_list(as_json: JsonOption = False) -> None:
    """List tenants with their tier and number of active keys."""
    platform = _platform()
    try:
        with platform.engine.connect() as conn:
            rows = key_store.list_tenants(conn)
    finally:
        platform.close()
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "tier", "active keys")
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["tier"], str(row["active_keys"]))
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
        with platform.engine.begin() as conn:
            key_store.set_tier(conn, name, tier)
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
        with platform.engine.begin() as conn:
            owner = key_store.tenant_by_name(conn, tenant)
            new, key_id = key_store.create_key(conn, owner["id"], role, name)
    finally:
        platform.close()
    if as_json:
        print_json({"id": key_id, "key": new.secret, "prefix": new.prefix,
                    "tenant": owner["name"], "role": role, "name": name})
        return
    # The key alone on stdout (scripts capture it); the advice on stderr.
    typer.echo(new.secret)
    err.print(f"key {key_id} ({new.prefix}..., role {role}) for tenant {owner['name']!r}: "
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
        with platform.engine.connect() as conn:
            tenant_id = key_store.tenant_by_name(conn, tenant)["id"] if tenant else None
            records = key_store.list_keys(conn, tenant_id)
    finally:
        platform.close()
    rows = [r.as_dict() for r in records]
    if as_json:
        print_json(rows)
        return
    table = Table("id")
    table.add_column("prefix", no_wrap=True, min_width=len(rows[0]["prefix"]) + 3
                     if rows else 6)
    for column in ("tenant", "role", "name", "status", "created", "last used"):
        table.add_column(column)
    for row in rows:
        last_used = (row["last_used_at"] or "never")[:16].replace("T", " ")
        table.add_row(str(row["id"]), row["prefix"] + "...", row["tenant"], row["role"],
                      row["name"], row["status"], (row["created_at"] or "")[:10], last_used)
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
        with platform.engine.begin() as conn:
            record = key_store.resolve_key(conn, key)
            changed = key_store.revoke_key(conn, record.id)
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
