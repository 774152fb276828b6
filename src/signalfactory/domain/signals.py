"""Stored signals: what an evaluation found, as stored and as read back page by page.

A signal is unique per (strategy version, instrument, timeframe, bar time, side): storing
the same signal twice keeps the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

#: The PostgreSQL channel a signal insert notifies (payload: the highest new id), so that
#: serving processes pick up signals stored elsewhere at once instead of at their next poll.
NOTIFY_CHANNEL = "signalfactory_signals"


@dataclass(frozen=True)
class NewSignal:
    """A signal to store. ``symbol`` names ``instrument_id`` (the stored row keeps the id)."""

    strategy_version_id: int
    instrument_id: int
    symbol: str
    timeframe: str
    bar_ts: datetime
    side: str
    score: float | None
    price: float
    values: Mapping[str, float]


@dataclass(frozen=True)
class InsertedSignal:
    """A signal that was new: its id, when it was stored, and its index in the batch given."""

    id: int
    created_at: datetime | None
    index: int


@dataclass(frozen=True)
class SignalQuery:
    """A page of signals visible to a tenant (its own strategies' and the built-ins'):
    ids above ``after_id`` in id order, so a cursor pages forward without gaps."""

    tenant_id: int
    since: datetime | None = None
    symbol: str | None = None
    strategy: str | None = None
    side: str | None = None
    min_score: float | None = None
    after_id: int | None = None
    limit: int = 100
    #: newest first (ids below ``after_id``, descending): the dashboard's latest signals
    newest_first: bool = False


@dataclass(frozen=True)
class StoredSignal:
    """A signal as a page shows it: named by symbol and strategy version."""

    id: int
    bar_ts: datetime
    symbol: str
    side: str
    strategy: str
    strategy_version: int
    timeframe: str
    score: float | None
    price: float
    values: Mapping[str, float]
    created_at: datetime | None
    #: sha256 of the code that produced it (its strategy version's; for an uploaded
    #: Python strategy, of the source as uploaded)
    code_hash: str = ""


class SignalRow(TypedDict):
    """One row of a signal page as the API serialises it, straight from the database.

    The keys are ``StoredSignal``'s fields, in the same order (build it as a literal in that
    order), because the API's page JSON is this dict as it is: orjson writes a page of dicts
    about four times faster than one of slotted dataclasses. ``values`` holds floats only,
    as the page schema promises.
    """

    id: int
    bar_ts: datetime
    symbol: str
    side: str
    strategy: str
    strategy_version: int
    timeframe: str
    score: float | None
    price: float
    values: dict[str, float]
    created_at: datetime | None
    code_hash: str
