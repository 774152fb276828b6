"""Base models shared by routers: request bodies refuse unknown fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from signalfactory.domain.symbols import (
    ALLOWED,
    MAX_SYMBOL_LENGTH,
    SYMBOL_PATTERN,
    symbol_problem,
)
from signalfactory.domain.symbols import (
    RULE as SYMBOL_RULE,
)

TIME_RULE = "bad-time"
#: validation errors whose ``type`` is a bad-input rule id: the 422 carries it as ``rule``
RULE_ERRORS = frozenset({SYMBOL_RULE, TIME_RULE})


def _symbol(value: str) -> str:
    problem = symbol_problem(value)
    if problem is not None:
        raise PydanticCustomError(SYMBOL_RULE, "{problem}; a symbol is {allowed}",
                                  {"problem": problem, "allowed": ALLOWED})
    return value


#: A symbol in a request (parameter or body): the rule of ``domain.symbols``, refused with
#: rule ``bad-symbol``; the document publishes it as a pattern, so clients can check first.
Symbol = Annotated[str, AfterValidator(_symbol), WithJsonSchema({
    "type": "string", "minLength": 1, "maxLength": MAX_SYMBOL_LENGTH,
    "pattern": SYMBOL_PATTERN, "examples": ["AAPL"],
    "description": f"A symbol: {ALLOWED}"})]


MAX_EPOCH_SECONDS = 99_999_999_999
_EPOCH = re.compile(r"[0-9]{1,11}")
_TIME_HELP = ("a time is an ISO 8601 date or date-time (2024-01-31, 2024-01-31T09:30:00Z) or "
              "a whole number of seconds since 1970-01-01 UTC")


_DATETIME = TypeAdapter(datetime)


def _time(value: object, _handler: ValidatorFunctionWrapHandler,
          _info: ValidationInfo) -> datetime:
    """ISO 8601, or whole epoch seconds; never a fraction (0.5), an exponent or a sign."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 5.0 is the integer 5 in JSON (and in the document's schema)
    if isinstance(value, int) and not isinstance(value, bool) \
            and 0 <= value <= MAX_EPOCH_SECONDS:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH.fullmatch(text):
            return datetime.fromtimestamp(int(text), UTC)
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ].*)?", text):
            try:
                return _DATETIME.validate_python(text)
            except ValueError:
                pass
    raise PydanticCustomError(TIME_RULE, "{value} is not a time; {help}",
                              {"value": repr(value)[:40], "help": _TIME_HELP})


#: A time in a request: ISO 8601 or whole epoch seconds (refused with rule ``bad-time``).
Time = Annotated[datetime, WrapValidator(_time), WithJsonSchema({
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"},
              {"type": "string", "pattern": "^[0-9]{1,11}$"},
              {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_SECONDS}],
    "description": _TIME_HELP[0].upper() + _TIME_HELP[1:]})]


Given = str | tuple[str, dict[str, Any]]


def alternatives(*groups: tuple[Given, ...]) -> dict[str, Any]:
    """JSON Schema for a body whose fields come in groups of alternatives: exactly one field
    of each group is given. A field is given when present and not null, or, written
    ``(name, schema)``, when present and matching ``schema`` (``("all", {"const": True})``).
    Goes in a model's ``json_schema_extra``, so a client generated from the document cannot
    build a request the server refuses."""
    def given(field: Given) -> dict[str, Any]:
        name, schema = (field, {"not": {"type": "null"}}) if isinstance(field, str) else field
        return {"required": [name], "properties": {name: schema}}

    return {"allOf": [{"oneOf": [given(f) for f in group]} for group in groups]}


def _takes_bool(annotation: object) -> bool:
    if annotation is bool:
        return True
    return any(_takes_bool(arg) for arg in get_args(annotation))


def _holds_bool(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(isinstance(item, bool) for item in value)
    if isinstance(value, dict):
        return any(isinstance(item, bool) for item in value.values())
    return False


class RequestModel(BaseModel):
    """Base for every request body: an unknown or misspelt field is a 422, not silently lost;
    ``true``/``false`` where the document says number or text is a 422, not 1/0 (pydantic's
    lax mode would convert it; strict mode would also refuse ``5.0`` for an integer, which
    JSON Schema calls an integer). Booleans themselves are ``StrictBool``: ``0`` is not
    ``false``."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_other_types(cls, data: object) -> object:
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if field is not None and _holds_bool(value) \
                        and not _takes_bool(field.annotation):
                    raise PydanticCustomError("bool_not_allowed",
                                              "{name}: true/false is not a value of this field",
                                              {"name": name})
        return data


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
