"""Ports of the live stream: stored subscriptions, stored signals as events, commit wake-ups."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from signalfactory.domain.streaming import (
    NewSubscription,
    SignalEvent,
    StreamFilter,
    Subscription,
)


class SubscriptionRepository(Protocol):
    """Named stream filters of tenants."""

    def add(self, new: NewSubscription) -> Subscription:
        """Store; ``ConflictError`` when the tenant has a subscription of that name."""
        ...

    def for_tenant(self, tenant_id: int) -> list[Subscription]:
        """The tenant's subscriptions in id order."""
        ...

    def get(self, tenant_id: int, subscription_id: int) -> Subscription | None:
        """The subscription, or None (also when it is another tenant's)."""
        ...

    def delete(self, tenant_id: int, subscription_id: int) -> bool:
        """False when the tenant has no such subscription."""
        ...

class SignalEventSource(Protocol):
    """Stored signals as stream events, read on the primary database (no replica lag: the
    seam between replay and live events is only gap-free against where they commit)."""

    def max_id(self) -> int:
        """The highest stored signal id (0 when none)."""
        ...

    def events_after(self, after_id: int, ranges: Iterable[tuple[int, int]] = (), *,
                     limit: int = 5000) -> list[SignalEvent]:
        """Every tenant's signals with id > after_id or inside one of the (low, high)
        ranges, in id order."""
        ...

    def replay(self, flt: StreamFilter, after_id: int, *,
               limit: int = 1000) -> list[SignalEvent]:
        """The signals ``flt`` matches with id > after_id, in id order (a reconnect)."""
        ...

    @property
    def commits_in_id_order(self) -> bool:
        """False where a lower id may commit after a higher one (PostgreSQL sequences): the
        relay then re-reads gaps for a while."""
        ...


class CommitNotifications(Protocol):
    """Wakes the stream as soon as another process commits signals (PostgreSQL NOTIFY)."""

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` on every notification, reconnecting after failures, until
        cancelled."""
        ...


@dataclass(frozen=True)
class SignalFeed:
    """Where the stream hub learns of stored signals: read by id, woken on commit (None:
    polling alone)."""

    events: SignalEventSource
    notifications: CommitNotifications | None = None
