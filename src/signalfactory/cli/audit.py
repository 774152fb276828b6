"""The audit log on the command line: ``signalfactory audit verify`` and ``audit export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from signalfactory.cli.common import (
    EXIT_FAILURE,
    err,
    handle_errors,
    out,
    print_json,
    progress_bar,
)
from signalfactory.domain.audit import AuditHead, ChainReport
from signalfactory.domain.errors import BadInputError

audit_app = typer.Typer(help="The tamper-evident audit log: verify the hash chain, export it.",
                        no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]


def _report_json(report: ChainReport, source: str) -> dict[str, object]:
    return {"ok": report.ok, "source": source, "entries": report.entries,
            "head": f"{report.head.seq}:{report.head.hash}" if report.head else None,
            "broken_seq": report.broken.seq if report.broken else None,
            "problem": report.broken.problem if report.broken else None}


def _anchor(text: str | None) -> AuditHead | None:
    from signalfactory.services.audit.log import parse_anchor

    return parse_anchor(text) if text is not None else None


@audit_app.command("verify")
@handle_errors
def audit_verify(
    anchor: Annotated[str | None, typer.Option(
        help="SEQ:HASH the chain must still contain: a backup manifest's audit_head "
             "(`signalfactory backup list --json`)")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="Verify an `audit export` file instead of the database")] = None,
    as_json: AsJson = False,
) -> None:
    """Walk the hash chain from the first entry; name the first broken entry (exit 1)."""
    from signalfactory.services.audit import log as audit

    expected = _anchor(anchor)
    if file is not None:
        try:
            with file.open(encoding="utf-8") as lines:
                report = audit.verify_lines(lines, anchor=expected)
        except OSError as exc:
            raise BadInputError(f"cannot read {file}: {exc.strerror}") from None
        source = str(file)
    else:
        from signalfactory.cli.common import build_platform

        platform = build_platform()
        try:
            newest = audit.head(platform)
            with progress_bar("audit entries", newest.seq if newest else 0) as advance:
                report = audit.verify(platform, anchor=expected, progress=advance)
        finally:
            platform.close()
        source = "database"
    if as_json:
        print_json(_report_json(report, source))
    elif report.ok:
        head = f"; head {report.head.seq}:{report.head.hash}" if report.head else ""
        out.print(f"audit chain intact: {report.entries} entries{head}", highlight=False,
                  soft_wrap=True)
    if report.broken is not None:
        err.print(f"[bold red]audit chain broken at {report.broken}[/]", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE)


@audit_app.command("export")
@handle_errors
def audit_export(
    to: Annotated[Path | None, typer.Option(
        "--to", help="File to write (default: standard output)")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's entries")] = None,
    after: Annotated[int, typer.Option(min=0, help="Only entries after this seq")] = 0,
) -> None:
    """Write entries as JSON lines (RFC 8785 canonical, hash included)."""
    from signalfactory.cli.common import build_platform
    from signalfactory.services.accounts.tenants import tenant_by_name
    from signalfactory.services.audit import log as audit

    platform = build_platform()
    try:
        tenant_id = None
        if tenant is not None:
            with platform.database.read(primary=True) as uow:
                tenant_id = tenant_by_name(uow, tenant).id
        if to is None:
            count = audit.export(platform, sys.stdout.write, tenant_id=tenant_id,
                                 after_seq=after)
        else:
            partial = to.with_name(to.name + ".partial")
            try:
                with partial.open("w", encoding="utf-8") as stream:
                    count = audit.export(platform, stream.write, tenant_id=tenant_id,
                                         after_seq=after)
                partial.replace(to)  # a file at ``to`` is always a whole export
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise BadInputError(f"cannot write {to}: {exc.strerror}") from None
    finally:
        platform.close()
    err.print(f"{count} audit entries exported" + (f" to {to}" if to else ""),
              highlight=False, soft_wrap=True)
