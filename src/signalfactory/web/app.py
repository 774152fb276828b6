"""Mounting the dashboard on the API's FastAPI app: pages at ``/``, assets at ``/static``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from signalfactory.web import STATIC_DIR
from signalfactory.web.pages import (
    admin,
    auth,
    backtests,
    deliveries,
    jobs,
    overview,
    scans,
    signals,
    strategies,
    trading,
)
from signalfactory.web.rendering import redirect, secured
from signalfactory.web.session import SignInRequiredError, sign_in_url

PAGE_ROUTERS = (auth, overview, signals, scans, strategies, backtests, trading, jobs,
                deliveries, admin)


def mount_dashboard(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in PAGE_ROUTERS:
        app.include_router(module.router)

    @app.exception_handler(SignInRequiredError)
    async def _sign_in(request: Request, exc: SignInRequiredError) -> Response:
        target = sign_in_url(exc.next_url)
        if request.headers.get("hx-request"):  # htmx follows this header, not a 303
            return secured(Response(status_code=204, headers={"HX-Redirect": target}))
        return redirect(target)
