"""Signal events as the live stream carries them, their filters, and the queries behind them.

An event is one stored signal. Its public JSON has the same fields as an item of
``GET /api/v1/signals`` and is serialised once, however many connections receive it: the
WebSocket text and the Server-Sent Events block are built on first use and then shared.
Routing fields (owner tenant, built-in flag) never leave the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import (
    instruments,
    signals,
    strategies,
    strategy_versions,
)


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

    def __init__(self, payload: dict[str, Any], *, tenant_id: int, builtin: bool,
                 arrival_ns: int | None = None) -> None:
        self.payload = payload
        self.id: int = int(payload["id"])
        self.symbol: str = payload["symbol"]
        self.strategy: str = payload["strategy"]
        self.score: float | None = payload["score"]
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


def ws_message(events: Sequence[SignalEvent], *, replay: bool = False) -> str:
    """One WebSocket text message carrying several events, joined from their own JSON."""
    head = '{"type":"signals","replay":true,"items":[' if replay else \
        '{"type":"signals","items":['
    return head + ",".join(e.json for e in events) + "]}"


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it: built
    once per message and written to every connection that takes prepared frames."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return head + payload


def sse_block(events: Sequence[SignalEvent]) -> bytes:
    return b"".join(e.sse for e in events)


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

    def describe(self) -> dict[str, Any]:
        return {"subscription": self.subscription_id,
                "strategies": sorted(self.strategies) if self.strategies is not None else [],
                "symbols": sorted(self.symbols) if self.symbols is not None else [],
                "min_score": self.min_score}


def _event_query() -> sa.Select[Any]:
    return (sa.select(signals.c.id, signals.c.bar_ts, signals.c.side, signals.c.score,
                      signals.c.price, signals.c["values"], signals.c.timeframe,
                      signals.c.created_at, instruments.c.symbol,
                      strategies.c.name.label("strategy"),
                      strategy_versions.c.version.label("strategy_version"),
                      strategies.c.tenant_id, strategies.c.builtin)
            .join(instruments, instruments.c.id == signals.c.instrument_id)
            .join(strategy_versions, strategy_versions.c.id == signals.c.strategy_version_id)
            .join(strategies, strategies.c.id == strategy_versions.c.strategy_id)
            .order_by(signals.c.id))


def event_from_row(row: Any, arrival_ns: int | None = None) -> SignalEvent:
    m = row._mapping
    payload = {"id": int(m["id"]), "bar_ts": iso_utc(m["bar_ts"]), "symbol": m["symbol"],
               "side": m["side"], "strategy": m["strategy"],
               "strategy_version": int(m["strategy_version"]), "timeframe": m["timeframe"],
               "score": m["score"], "price": m["price"], "values": dict(m["values"] or {}),
               "created_at": iso_utc(m["created_at"])}
    return SignalEvent(payload, tenant_id=int(m["tenant_id"]), builtin=bool(m["builtin"]),
                       arrival_ns=arrival_ns)


def replay_events(conn: Connection, flt: StreamFilter, after_id: int, *,
                  limit: int = 1000) -> list[SignalEvent]:
    """Stored signals a reconnecting client missed: id > after_id, in id order."""
    query = (_event_query().where(signals.c.id > after_id,
                                  sa.or_(strategies.c.tenant_id == flt.tenant_id,
                                         strategies.c.builtin.is_(sa.true())))
             .limit(limit))
    if flt.strategies is not None:
        query = query.where(strategies.c.name.in_(sorted(flt.strategies)))
    if flt.symbols is not None:
        query = query.where(instruments.c.symbol.in_(sorted(flt.symbols)))
    if flt.min_score is not None:
        query = query.where(signals.c.score >= flt.min_score)
    return [event_from_row(r) for r in conn.execute(query)]


def events_by_id(conn: Connection, after_id: int,
                 ranges: Iterable[tuple[int, int]] = (), *,
                 limit: int = 5000) -> list[SignalEvent]:
    """Every tenant's signals with id > after_id or inside one of the (low, high) ranges."""
    where = [signals.c.id > after_id, *(signals.c.id.between(lo, hi) for lo, hi in ranges)]
    return [event_from_row(r) for r in conn.execute(
        _event_query().where(sa.or_(*where)).limit(limit))]


def max_signal_id(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(signals.c.id))).scalar() or 0)
