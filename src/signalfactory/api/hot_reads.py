"""``GET /api/v1/signals`` served beside the framework's per-request machinery.

An uncached signal page cost about 1.8 ms of CPU in the API process, and a quarter of it was
FastAPI and Starlette around the endpoint: the router's scan of every route, the exception
and exit-stack layers, the dependency solver (two documentation-only security schemes, the
platform, then each query parameter through several layers of generic checks). This pure
ASGI layer, the innermost of the app's middleware, answers the common request itself with
exactly what the route does:

- the key's presence and shape are checked first (``credentials``: 401 before anything else);
- each query parameter is validated by the route's own pydantic field, as FastAPI does;
- ``signal_page`` runs in one worker thread, as the route calls it, and errors become the
  problem answers the app's exception handlers give (``problem_for``).

Anything else (HEAD, another path, a parameter that fails validation) goes on to the route,
which answers it (the 422 in the framework's own shape) and documents the endpoint.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from signalfactory.api.auth import credentials
from signalfactory.api.problems import problem_for
from signalfactory.api.routers import signals

SIGNALS_PATH = "/api/v1/signals"


def _signals_route() -> APIRoute:
    return next(r for r in signals.router.routes if isinstance(r, APIRoute)
                and r.path == SIGNALS_PATH and "GET" in (r.methods or ()))


class SignalPagesFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = _signals_route()
        self.fields = list(self.route.dependant.query_params)
        # ``ModelField.default`` is worked out anew at every read; the defaults are immutable
        self.defaults = {field.name: field.default for field in self.fields}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] != SIGNALS_PATH
                or scope["method"] != "GET" or scope.get("root_path")):
            await self.app(scope, receive, send)
            return
        try:
            credentials(scope)  # the route's first dependency: no key, or a malformed one
        except Exception as exc:
            await self._problem(exc, scope, receive, send)
            return
        params = self._parameters(scope)
        if params is None:  # the route answers with its 422
            await self.app(scope, receive, send)
            return
        # The router would have put the route here: metrics label requests by its template.
        scope["route"] = self.route
        platform = scope["app"].state.platform
        try:
            response = await run_in_threadpool(signals.signal_page, platform, scope, **params)
        except Exception as exc:
            await self._problem(exc, scope, receive, send)
            return
        await response(scope, receive, send)

    def _parameters(self, scope: Scope) -> dict[str, Any] | None:
        """The validated query parameters as the route receives them, or None when one is
        not valid. FastAPI's rules for a single-valued query parameter: the last value
        given, the default when absent (the defaults here are immutable), else the field's
        validation with the location the route would report."""
        raw_query: bytes = scope["query_string"]
        if not raw_query:
            return dict(self.defaults)
        # QueryParams' parse; a dict keeps the last value of a repeated name, as its get()
        query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True))
        values: dict[str, Any] = {}
        for field in self.fields:
            raw = query.get(field.alias)
            if raw is None:
                values[field.name] = self.defaults[field.name]
                continue
            value, errors = field.validate(raw, values, loc=("query", field.alias))
            if errors:
                return None
            values[field.name] = value
        return values

    @staticmethod
    async def _problem(exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        # The app's handlers map exactly the classes ``problem_for`` maps; anything else
        # goes up, as it would from the route, to the server-error layer.
        answer = problem_for(exc, scope["path"])
        if answer is None:
            raise exc
        await answer(scope, receive, send)
