"""Ports of the live stream."""

from __future__ import annotations

from typing import Protocol


class SubscriptionRepository(Protocol):
    """Named stream filters of tenants."""
