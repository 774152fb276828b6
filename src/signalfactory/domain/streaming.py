"""The live stream's records: signal events, the filter of one connection, subscriptions.

An event is one stored signal. Its public JSON has the same fields as an item of
``GET /api/v1/signals`` and is serialised once, however many connections receive it.
Routing fields (owner tenant, built-in flag) never leave the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: PostgreSQL channel a process NOTIFYs after committing signals; streams LISTEN on it.


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with an offset; SQLite hands back naive datetimes that are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


class SignalEvent:
    """One new signal on its way to subscribers."""

    __slots__ = ("_json", "_sse", "arrival_ns", "builtin", "id", "payload", "score",
                 "strategy", "symbol", "tenant_id")

    def __init__(self, payload: Mapping[str, Any], *, tenant_id: int, builtin: bool,
                 arrival_ns: int | None = None) -> None:
        self.payload = payload
        self.id: int = int(payload["id"])
        self.symbol: str = str(payload["symbol"])
        self.strategy: str = str(payload["strategy"])
        score = payload["score"]
        self.score: float | None = float(score) if score is not None else None
        self.tenant_id = tenant_id
        self.builtin = builtin
        # Wall clock (ns) when the bars behind it were written; None when read back from the
        # table (replays, events relayed from another process).
        self.arrival_ns = arrival_ns
        self._json: str | None = None
        self._sse: bytes | None = None

    @property
    def json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.payload, separators=(",", ":"), allow_nan=False)
        return self._json

    @property
    def sse(self) -> bytes:
        """The Server-Sent Events block: ``id`` is the signal id, for Last-Event-ID."""
        if self._sse is None:
            self._sse = f"id: {self.id}\nevent: signal\ndata: {self.json}\n\n".encode()
        return self._sse

    def __repr__(self) -> str:
        return f"SignalEvent(id={self.id}, {self.strategy} {self.symbol})"


@dataclass(frozen=True)
class StreamFilter:
    """Which events one connection receives: the tenant's visibility plus optional filters.

    A tenant sees signals of its own strategies and of the built-ins (as ``GET /signals``
    does). ``None`` means no restriction.
    """

    tenant_id: int
    strategies: frozenset[str] | None = None
    symbols: frozenset[str] | None = None
    min_score: float | None = None
    subscription_id: int | None = None

    def matches(self, event: SignalEvent) -> bool:
        if not (event.builtin or event.tenant_id == self.tenant_id):
            return False
        if self.strategies is not None and event.strategy not in self.strategies:
            return False
        if self.symbols is not None and event.symbol not in self.symbols:
            return False
        return self.min_score is None or (event.score is not None
                                          and event.score >= self.min_score)

    def describe(self) -> dict[str, object]:
        """The filter as the stream's greeting shows it."""
        return {"subscription": self.subscription_id,
                "strategies": sorted(self.strategies) if self.strategies is not None else [],
                "symbols": sorted(self.symbols) if self.symbols is not None else [],
                "min_score": self.min_score}


@dataclass(frozen=True)
class NewSubscription:
    """A checked subscription about to be stored."""

    tenant_id: int
    name: str
    strategies: tuple[str, ...]
    symbols: tuple[str, ...]
    min_score: float | None


@dataclass(frozen=True)
class Subscription:
    """A tenant's named stream filter. Empty strategies: every strategy the tenant can see;
    empty symbols: every symbol."""

    id: int
    tenant_id: int
    name: str
    strategies: tuple[str, ...]
    symbols: tuple[str, ...]
    min_score: float | None
    created_at: datetime | None
