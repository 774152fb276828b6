"""Jinja2 rendering of the dashboard's pages, with the headers every page carries.

Templates autoescape everything: user text (strategy names, descriptions, symbols, endpoint
names) is text, never markup. Data for charts travels as JSON in
``<script type="application/json">`` blocks (``tojson`` escapes ``<``, ``>``, ``&`` and
``'``), which the Content-Security-Policy below never executes: scripts come from
``/static`` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from signalfactory import __version__
from signalfactory.web import TEMPLATES_DIR

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # pages show the signed-in tenant's data: never kept by a shared cache
    "Cache-Control": "no-store",
}


def when(value: datetime | str | int | None) -> Markup:
    """A time as ``<time>``: UTC in the markup and on hover; app.js shows it in the
    browser's zone. An int is nanoseconds since the epoch (bar and trade times)."""
    if value is None or value == "":
        return Markup("<span class=\"muted\">–</span>")
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1e9, UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return escape(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    utc = value.astimezone(UTC)
    iso = utc.isoformat().replace("+00:00", "Z")
    shown = utc.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(iso, shown)


def number(value: object, digits: int = 2) -> str:
    if value is None or isinstance(value, bool):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:,.{digits}f}"
    return str(value)


def percent(value: object, digits: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage; ``signed`` for returns (+2.0 %, -1.5 %)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(
            float(value)):
        return "–"
    return f"{float(value) * 100:{'+' if signed else ''}.{digits}f}%"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(when=when, number=number, percent=percent)
    env.globals.update(version=__version__)
    return env


ENVIRONMENT = _environment()


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(request: Request, template: str, context: Mapping[str, Any],
           status_code: int = 200) -> HTMLResponse:
    """The page, or only its ``fragment`` block when htmx asks for a part of it."""
    page = ENVIRONMENT.get_template(template)
    values = {"request": request, **context}
    if request.headers.get("hx-request") and "fragment" in page.blocks:
        html = "".join(page.blocks["fragment"](page.new_context(values)))
    else:
        html = page.render(values)
    response = HTMLResponse(html, status_code=status_code)
    secured(response)
    return response


def redirect(url: str, status_code: int = 303) -> Response:
    return secured(RedirectResponse(url, status_code=status_code))
