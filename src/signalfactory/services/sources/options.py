"""How the collector treats a source (beside the adapter's own parameters).

They are stored in the source's ``params`` next to the adapter's and split off before the
adapter is built, so ``sources add --param`` sets either kind the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from signalfactory.domain.errors import BadInputError
from signalfactory.services.sources.resilience import MAX_ATTEMPTS


class CollectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime | None = Field(
        default=None, description="First bar time of a symbol never collected (ISO 8601); "
                                  "default: lookback_bars before now")
    lookback_bars: int = Field(default=1000, ge=1, le=1_000_000,
                               description="Bars fetched on a symbol's first run")
    retry_attempts: int = Field(default=MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS)
    retry_initial_seconds: float = Field(default=1.0, ge=0, le=600)
    retry_max_seconds: float = Field(default=60.0, ge=0, le=3600)
    breaker_failures: int = Field(default=3, ge=1, le=100,
                                  description="Failed runs in a row that open the breaker")
    breaker_reset_seconds: float = Field(default=300.0, ge=0.01, le=86_400,
                                         description="How long an open breaker refuses runs "
                                                     "before one probe run")
    batch_bars: int = Field(default=250_000, ge=1, le=10_000_000,
                            description="Bars (of whole symbols) stored per transaction")
    concurrency: int = Field(default=4, ge=1, le=64,
                             description="Symbols fetched at once")
    max_staleness_seconds: int | None = Field(
        default=None, ge=60, description="Age of the newest bar before the freshness alert "
                                         "fires; default: from timeframe and schedule")

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2024-01-01T00:00:00Z")
        return value


COLLECTOR_KEYS = frozenset(CollectorOptions.model_fields)


def split_params(params: dict[str, Any]) -> tuple[CollectorOptions, dict[str, Any]]:
    """(collector options, the adapter's parameters), or BadInputError naming the field."""
    mine = {k: v for k, v in params.items() if k in COLLECTOR_KEYS}
    theirs = {k: v for k, v in params.items() if k not in COLLECTOR_KEYS}
    try:
        return CollectorOptions.model_validate(mine), theirs
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        raise BadInputError(f"param {where}: {first['msg']}", rule="source-params") from None
