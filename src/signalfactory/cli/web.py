"""``signalfactory web link``: a one-time sign-in link to the dashboard for the local user."""

from __future__ import annotations

from typing import Annotated

import typer

from signalfactory.cli.common import err, handle_errors

web_app = typer.Typer(help="The web dashboard: one-time sign-in links.", no_args_is_help=True)


def sign_in_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/signin/link/{token}"


@web_app.command("link")
@handle_errors
def link(
    tenant: Annotated[str, typer.Option(help="Tenant to sign in as")] = "default",
    role: Annotated[str, typer.Option(help="viewer, trader or admin")] = "admin",
    url: Annotated[str, typer.Option(help="Where the dashboard is served")]
    = "http://127.0.0.1:8000",
) -> None:
    """Print a sign-in link that works once (and expires after
    SIGNALFACTORY_WEB_LINK_MINUTES): open it in a browser to sign in without a key."""
    from signalfactory.cli.common import build_platform
    from signalfactory.services.accounts.web_sessions import issue_sign_in_link

    platform = build_platform(migrate_db=True)
    try:
        token = issue_sign_in_link(platform, tenant, role)
        minutes = platform.settings.web_link_minutes
    finally:
        platform.close()
    typer.echo(sign_in_link(url, token))
    err.print(f"one-time link for the {role} of tenant {tenant!r}, valid {minutes:g} min",
              highlight=False)
