"""Base models shared by routers: request bodies refuse unknown fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """Base for every request body: an unknown or misspelt field is a 422, not silently lost."""

    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details: every error has this shape (extra members may follow)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "https://signalfactory.dev/problems/unauthorized", "title": "Unauthorized",
        "status": 401, "detail": "this endpoint needs an API key: send 'Authorization: "
                                 "Bearer <key>' or 'X-API-Key: <key>'",
        "instance": "/api/v1/instruments"}]})

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(Problem):
    """A 422 for a request that does not fit the schema; ``errors`` lists every field."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "https://signalfactory.dev/problems/validation", "title": "Invalid request",
        "status": 422, "detail": "body.qty: Extra inputs are not permitted",
        "instance": "/api/v1/strategies",
        "errors": [{"loc": ["body", "qty"], "msg": "Extra inputs are not permitted",
                    "type": "extra_forbidden"}]}]})

    errors: list[FieldError] = []


def _problem_response(description: str) -> dict[str, Any]:
    # The problem+json content type and schema are filled in by ``document_problems``.
    return {"model": Problem, "description": description}


# Routers behind an API key pass this as ``responses=`` so OpenAPI documents the refusals.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem_response("No API key, or a malformed, unknown or revoked one"),
    403: _problem_response("The key's role is too low, or a tier quota is full"),
    429: _problem_response("Rate limit or daily quota exceeded; see Retry-After"),
}
