"""``signalfactory ops``: the platform's operating mode (read-only switch)."""

from __future__ import annotations

from typing import Annotated

import typer

from signalfactory.cli.common import handle_errors, out, print_json

ops_app = typer.Typer(help="Operating mode: read-only switch.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]


@ops_app.command("read-only")
@handle_errors
def read_only(
    state: Annotated[str, typer.Argument(help="on, off, or status")] = "status",
    reason: Annotated[str, typer.Option(help="Why (required with 'on'; audited)")] = "",
    as_json: AsJson = False,
) -> None:
    """Switch read-only mode on or off for every process sharing this home, or show it.

    While on, reads keep working, every write answers 503 (problem type read-only) and jobs
    pause. The mode also starts and ends by itself when the primary database goes away and
    comes back.
    """
    from signalfactory.cli.common import build_platform
    from signalfactory.domain.errors import BadInputError
    from signalfactory.services import read_only as service

    if state not in ("on", "off", "status"):
        raise BadInputError(f"read-only takes on, off or status, not {state!r}",
                            rule="state")
    platform = build_platform()
    try:
        result = service.status(platform) if state == "status" else service.switch(
            platform, state == "on", reason, actor="cli")
    finally:
        platform.close()
    if as_json:
        print_json({"read_only": result.read_only, "reason": result.reason})
        return
    out.print("read-only: " + (f"on ({result.reason})" if result.read_only else "off"),
              soft_wrap=True, highlight=False)
