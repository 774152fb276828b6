"""Ports of signal evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from signalfactory.domain.signals import (
    InsertedSignal,
    NewSignal,
    SignalQuery,
    SignalRow,
    StoredSignal,
)
from signalfactory.domain.strategies.stored import BuiltinInterest


class SignalRepository(Protocol):
    """Stored signals, idempotent per (version, instrument, timeframe, bar, side)."""

    def insert_new(self, signals: Sequence[NewSignal]) -> list[InsertedSignal]:
        """Store the signals not stored yet; the others are skipped. Returns the new ones
        (in no particular order). Serving processes learn of them after the commit (on
        PostgreSQL the insert notifies ``domain.signals.NOTIFY_CHANNEL``)."""
        ...

    def page(self, query: SignalQuery) -> list[StoredSignal]:
        """Signals the query selects, in id order (descending with ``newest_first``, then
        ``after_id`` bounds from above), at most ``query.limit``."""
        ...

    def page_rows(self, query: SignalQuery) -> list[SignalRow]:
        """The rows ``page`` would return, read lean for serving: the same selection and
        order, built without per-row mappings or validation (the API's hot path)."""
        ...

    def count_created_since(self, tenant_id: int, since: datetime) -> int:
        """How many signals visible to the tenant were stored at or after ``since``."""
        ...

    def builtin_interest(self) -> BuiltinInterest:
        """The built-ins that subscriptions ask for: what live evaluation must watch."""
        ...
