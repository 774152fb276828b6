"""Job payloads: a kind validates its JSON payload against a pydantic model."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.jobs import JsonObject

Model = TypeVar("Model", bound=BaseModel)


def parse_payload(model: type[Model], payload: JsonObject, kind: str) -> Model:
    """The payload as ``model``, or BadInputError naming the first wrong field (the job then
    fails at once: retrying the same payload cannot help)."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise BadInputError(f"{kind} payload: {where}: {first['msg']}") from None
