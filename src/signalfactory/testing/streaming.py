"""In-memory live-stream ports: subscriptions, and stored signals as events."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from signalfactory.domain.errors import ConflictError
from signalfactory.domain.streaming import (
    NewSubscription,
    SignalEvent,
    StreamFilter,
    Subscription,
)
from signalfactory.testing.memory import MemoryState


@dataclass
class SubscriptionStore:
    rows: dict[int, Subscription] = field(default_factory=dict)
    next_id: int = 1


class MemorySubscriptionRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = state.store("subscriptions", SubscriptionStore)

    def add(self, new: NewSubscription) -> Subscription:
        if any(s.tenant_id == new.tenant_id and s.name == new.name
               for s in self.data.rows.values()):
            raise ConflictError(f"a subscription named {new.name!r} exists; choose another "
                                "name or delete it first")
        row = Subscription(id=self.data.next_id, created_at=None,
                           **dataclasses.asdict(new))
        self.data.rows[row.id] = row
        self.data.next_id += 1
        return row

    def for_tenant(self, tenant_id: int) -> list[Subscription]:
        return [s for _, s in sorted(self.data.rows.items()) if s.tenant_id == tenant_id]

    def get(self, tenant_id: int, subscription_id: int) -> Subscription | None:
        found = self.data.rows.get(subscription_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    def delete(self, tenant_id: int, subscription_id: int) -> bool:
        if self.get(tenant_id, subscription_id) is None:
            return False
        del self.data.rows[subscription_id]
        return True


class MemorySignalEventSource:
    """Stored signals as a list the test appends to (``store``), read like the table."""

    def __init__(self, *, commits_in_id_order: bool = True) -> None:
        self.events: list[SignalEvent] = []
        self._in_order = commits_in_id_order
        self._lock = threading.Lock()

    @property
    def commits_in_id_order(self) -> bool:
        return self._in_order

    def store(self, *events: SignalEvent) -> None:
        with self._lock:
            self.events.extend(events)

    def _sorted(self) -> list[SignalEvent]:
        with self._lock:
            return sorted(self.events, key=lambda e: e.id)

    def max_id(self) -> int:
        return max((e.id for e in self._sorted()), default=0)

    def events_after(self, after_id: int, ranges: Iterable[tuple[int, int]] = (), *,
                     limit: int = 5000) -> list[SignalEvent]:
        spans = list(ranges)
        return [e for e in self._sorted()
                if e.id > after_id or any(lo <= e.id <= hi for lo, hi in spans)][:limit]

    def replay(self, flt: StreamFilter, after_id: int, *,
               limit: int = 1000) -> list[SignalEvent]:
        return [e for e in self._sorted() if e.id > after_id and flt.matches(e)][:limit]


class ManualCommitNotifications:
    """Commit notifications a test sends by calling ``notify``."""

    def __init__(self) -> None:
        self._wakers: list[Callable[[], None]] = []

    async def listen(self, wake: Callable[[], None]) -> None:
        import asyncio

        self._wakers.append(wake)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            self._wakers.remove(wake)

    def notify(self) -> None:
        for wake in list(self._wakers):
            wake()
