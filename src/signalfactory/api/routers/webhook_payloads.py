"""The JSON bodies webhook endpoints receive, published in the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WebhookSignal(BaseModel):
    """The signal, with the fields of an item of GET /api/v1/signals."""

    id: int
    bar_ts: str = Field(description="Bar time, ISO 8601 UTC")
    symbol: str
    side: str = Field(examples=["buy"])
    strategy: str
    strategy_version: int
    timeframe: str = Field(examples=["1d"])
    score: float | None
    price: float
    values: dict[str, float]
    created_at: str | None


class WebhookSignalPayload(BaseModel):
    """Body of a signal delivery (Standard Webhooks envelope: type, timestamp, data)."""

    type: Literal["signal"] = "signal"
    timestamp: str = Field(description="When the message was created, ISO 8601 UTC")
    subscription_id: int | None = Field(description="The subscription that matched")
    data: WebhookSignal


class WebhookTestPayload(BaseModel):
    """Body of POST /api/v1/endpoints/{id}/test deliveries."""

    type: Literal["endpoint.test"] = "endpoint.test"
    endpoint_id: int
    endpoint: str
    sent_at: str
    message: str
