"""Errors as RFC 9457 problem details: one JSON shape for every 4xx and 5xx."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from signalfactory.domain.accounts import QuotaExceededError
from signalfactory.domain.errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    OperationalError,
    TemporaryError,
)

PROBLEM_TYPE_BASE = "https://signalfactory.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str, *, type_: str = "about:blank",
            instance: str | None = None, **extra: object) -> JSONResponse:
    body: dict[str, object] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


class ApiProblem(StarletteHTTPException):
    """An HTTP error with a problem ``type`` slug and extra members (RFC 9457 extensions)."""

    def __init__(self, status: int, detail: str, *, code: str = "",
                 headers: dict[str, str] | None = None, **extra: object) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.type_ = PROBLEM_TYPE_BASE + code if code else "about:blank"
        self.extra = extra


def quota_problem(exc: QuotaExceededError) -> ApiProblem:
    """A full count quota is a 403 (deleting something frees room); a used-up daily quota a
    429 with ``Retry-After`` until it frees at UTC midnight."""
    if exc.retry_after is not None:
        return ApiProblem(429, exc.detail, code=exc.code,
                          headers={"Retry-After": str(exc.retry_after)}, quota=exc.quota,
                          limit=exc.limit, used=exc.used, tier=exc.tier)
    return ApiProblem(403, exc.detail, code=exc.code, quota=exc.quota, limit=exc.limit,
                      used=exc.used, tier=exc.tier)


RETRY_AFTER_TEMPORARY_S = 5


def _http_problem(instance: str, exc: StarletteHTTPException) -> JSONResponse:
    extra: dict[str, object] = getattr(exc, "extra", {})
    response = problem(exc.status_code, _title(exc.status_code), str(exc.detail),
                       type_=getattr(exc, "type_", "about:blank"), instance=instance, **extra)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def problem_for(exc: BaseException, instance: str) -> JSONResponse | None:
    """The problem response of a classified error (None for any other exception).

    The one mapping of errors to answers: the app's exception handlers use it, and so does
    code outside them (middleware, the WebSocket handshake), so a database that is down
    answers 503 wherever it is met first.
    """
    if isinstance(exc, QuotaExceededError):
        return _http_problem(instance, quota_problem(exc))
    if isinstance(exc, StarletteHTTPException):
        return _http_problem(instance, exc)
    if isinstance(exc, BadInputError):
        status = 404 if isinstance(exc, NotFoundError) else 409 if isinstance(
            exc, ConflictError) else 422
        extra: dict[str, object] = {}
        for key in ("source", "row", "rule", "position"):
            value = getattr(exc, key, None)
            if value is not None:
                extra[key] = value
        return problem(status, _title(status), str(exc), type_=PROBLEM_TYPE_BASE + exc.code,
                       instance=instance, **extra)
    if isinstance(exc, TemporaryError):
        response = problem(503, "Temporarily unavailable", str(exc),
                           type_=PROBLEM_TYPE_BASE + exc.code, instance=instance)
        response.headers["Retry-After"] = str(RETRY_AFTER_TEMPORARY_S)
        return response
    if isinstance(exc, OperationalError):
        return problem(500, "Operational error", str(exc), type_=PROBLEM_TYPE_BASE + exc.code,
                       instance=instance)
    return None


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        from signalfactory.api.schemas import RULE_ERRORS

        # a field that breaks a bad-input rule (a symbol) names the rule, as services do
        rules = [str(e["type"]) for e in errors if e["type"] in RULE_ERRORS]
        extra: dict[str, object] = {"rule": rules[0]} if rules else {}
        return problem(422, "Invalid request", f"{where}: {first['msg']}",
                       type_=PROBLEM_TYPE_BASE + "validation", instance=request.url.path,
                       errors=errors, **extra)

    async def _classified(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
            return _method_not_allowed(request, exc)
        response = problem_for(exc, request.url.path)
        if response is None:  # registered only for classes problem_for maps
            raise exc
        return response

    for kind in (StarletteHTTPException, QuotaExceededError, BadInputError, TemporaryError,
                 OperationalError):
        app.add_exception_handler(kind, _classified)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs and re-raises after this; the client still gets the one JSON shape.
        return problem(500, "Internal Server Error",
                       "an unexpected error occurred and was logged; retry later or report "
                       "it with the time of the request", instance=request.url.path)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_Templates = list[tuple[re.Pattern[str], int, frozenset[str]]]


def _templates(app: FastAPI) -> _Templates:
    """The document's paths as (regex, number of parameters, methods), built once per app."""
    found: _Templates | None = getattr(app.state, "allow_templates", None)
    if found is None:
        found = []
        for template, operations in app.openapi().get("paths", {}).items():
            parts = re.split(r"(\{[^}]+\})", template)
            regex = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                            for part in parts)
            methods = frozenset(m.upper() for m in operations if m.upper() in _METHODS)
            found.append((re.compile(regex), template.count("{"), methods))
        app.state.allow_templates = found
    return found


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at the request's path, as the document defines it: a
    literal path wins over a template (OpenAPI's rule: ``/strategies/validate`` is not the
    strategy named "validate"). The router's own 405 names only the first route matching
    the path (GET where GET and POST are served). Paths outside the document (``/metrics``)
    are asked of the routes."""
    path = request.url.path
    matching = [(n, methods) for regex, n, methods in _templates(request.app)
                if regex.fullmatch(path)]
    methods = {"OPTIONS"}
    if matching:
        fewest = min(n for n, _ in matching)
        for n, served in matching:
            methods |= served if n == fewest else set()
        return sorted(methods)
    for method in _METHODS:  # routes may be nested routers: ask each whether it serves it
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes):
            methods.add(method)
    return sorted(methods)


def _method_not_allowed(request: Request, exc: StarletteHTTPException) -> Response:
    """``OPTIONS`` answers 204 with the resource's methods; any other method the resource
    does not serve answers 405 naming all of them (RFC 9110)."""
    allow = ", ".join(allowed_methods(request))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    response = problem(405, _title(405), f"{request.method} is not served here; use "
                                         f"{allow.replace(', OPTIONS', '')}",
                       instance=request.url.path)
    response.headers["Allow"] = allow
    return response


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def document_problems(app: FastAPI) -> None:
    """Make OpenAPI say what the handlers do: every 4xx/5xx is ``application/problem+json``
    (a ``ValidationProblem`` for 422, a ``Problem`` otherwise), and an operation with a body
    may answer 413 (the request size limit)."""
    from signalfactory.api.schemas import Problem, ValidationProblem

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Problem, ValidationProblem):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in definition.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components[model.__name__] = definition
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                if "requestBody" in operation:
                    responses.setdefault("413", {"description": "The request body is larger "
                                                                "than the limit"})
                for status, response in responses.items():
                    if status[:1] not in ("4", "5"):
                        continue
                    name = "ValidationProblem" if status == "422" else "Problem"
                    response["content"] = {MEDIA_TYPE: {
                        "schema": {"$ref": f"#/components/schemas/{name}"}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

