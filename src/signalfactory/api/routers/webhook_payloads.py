"""The JSON bodies webhook endpoints receive, published in the OpenAPI ``webhooks``.

Bodies are sent as canonical JSON (sorted keys, no spaces) and signed per Standard Webhooks;
``type`` tells them apart. A signal's fields are those of an item of GET /api/v1/signals.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SignalFields(BaseModel):
    id: int = Field(description="The signal id")
    bar_ts: str = Field(description="Bar time, ISO 8601 UTC")
    symbol: str
    side: str = Field(examples=["buy"])
    strategy: str
    strategy_version: int
    code_hash: str = Field(description="sha256 of the code that produced the signal (for an "
                                       "uploaded Python strategy: of its source)")
    timeframe: str = Field(examples=["1d"])
    score: float | None
    price: float
    values: dict[str, float]
    created_at: str | None


class WebhookSignalPayload(SignalFields):
    """A new signal a subscription matched (``webhook-id`` is the same on every attempt)."""

    type: Literal["signal.created"] = "signal.created"


class WebhookDigestPayload(BaseModel):
    """Digest mode or quiet hours: the signals of one interval in one message."""

    type: Literal["signal.digest"] = "signal.digest"
    count: int
    signals: list[SignalFields]


class WebhookSummaryPayload(BaseModel):
    """The throttle held signals back this hour: what was not sent one by one."""

    type: Literal["signal.summary"] = "signal.summary"
    count: int
    signal_ids: list[int]
    text: str


class WebhookCampaignPayload(BaseModel):
    """An operator's announcement (POST /api/v1/campaigns)."""

    type: Literal["campaign.message"] = "campaign.message"
    campaign_id: int
    subject: str
    body: str


class WebhookTestPayload(BaseModel):
    """POST /api/v1/endpoints/{id}/test."""

    type: Literal["endpoint.test"] = "endpoint.test"
    endpoint_id: int
    endpoint: str
    sent_at: str
    message: str
