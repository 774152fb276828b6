"""``signalfactory report daily``: the daily trading report, on demand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from signalfactory.cli.common import err, handle_errors, out
from signalfactory.domain.errors import BadInputError

report_app = typer.Typer(help="Trading reports.", no_args_is_help=True)


@report_app.command("daily")
@handle_errors
def report_daily(
    tenant: Annotated[str, typer.Option(help="Tenant name")] = "default",
    day: Annotated[str | None, typer.Option(
        help="UTC day YYYY-MM-DD (default: yesterday, the last whole day)")] = None,
    to: Annotated[Path | None, typer.Option(
        "--to", help="Write the HTML page (charts included, opens offline) to this file")
    ] = None,
    store: Annotated[bool, typer.Option(
        "--store", help="Also store it and send its text to the tenant's endpoints, as the "
                        "scheduled job does (once per tenant and day)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Render the tenant's report of a day from the stored equity marks; print its text."""
    from signalfactory.cli.common import build_platform
    from signalfactory.domain.daily_report import DailyReport, summary_text
    from signalfactory.services.accounts.tenants import tenant_by_name
    from signalfactory.services.reports import daily

    if to is not None and not to.parent.is_dir():  # checked before anything is stored
        raise BadInputError(f"cannot write {to}: folder {to.parent} does not exist")
    platform = build_platform(migrate_db=True)
    try:
        when = daily.parse_day(day, platform.clock.now())
        with platform.database.read(primary=True) as uow:
            tenant_id = tenant_by_name(uow, tenant).id
        if store:
            stored, made = daily.store_and_deliver(platform, tenant_id, when)
            report = DailyReport.from_json(stored.report)
            err.print(("stored and sent" if made else "already stored (not sent again)")
                      + f": report of {when.isoformat()}, campaign {stored.campaign_id}",
                      highlight=False)
        else:
            report = daily.generate(platform, tenant_id, when)
    finally:
        platform.close()
    if to is not None:
        try:
            to.write_text(daily.render_html(report), encoding="utf-8")
        except OSError as exc:
            raise BadInputError(f"cannot write {to}: {exc.strerror}") from None
        err.print(f"page written to {to}", highlight=False)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        out.print(summary_text(report), highlight=False, soft_wrap=True, markup=False)
