"""Instruments: what a bar belongs to (symbol and venue), and the tags universes select by.

Instruments are shared by every tenant. A writer describes them with ``InstrumentSpec``
(upserted by symbol and venue, given tags merged into stored ones); readers get
``Instrument`` records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from signalfactory.domain.symbols import check_symbol

TagValue = str | int | float | bool | None
"""Tags are flat JSON: ``{"sector": "energy", "universe": "sample"}``."""


@dataclass(frozen=True)
class InstrumentSpec:
    """An instrument as a writer (ingest, sample, collector, source) describes it."""

    symbol: str
    venue: str = ""
    asset_class: str = "equity"
    currency: str = "USD"
    tags: Mapping[str, TagValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_symbol(self.symbol)  # every writer: ingest, collectors, sources, sample


@dataclass(frozen=True)
class Instrument:
    """A stored instrument."""

    id: int
    symbol: str
    venue: str
    asset_class: str
    currency: str
    tags: Mapping[str, TagValue]
    created_at: datetime | None = None


@dataclass(frozen=True)
class UpsertedInstruments:
    """What an upsert did: each symbol's id, and whether any instrument was added or
    retagged (cached instrument lists are stale after the commit then)."""

    ids: dict[str, int]
    changed: bool


def has_tag(tags: Mapping[str, TagValue], tag: str) -> bool:
    """Does an instrument with ``tags`` carry ``tag``: ``key=value``, or a bare word that is
    either some tag's value or a key whose value is set (not null, not false)."""
    key, _, value = tag.partition("=")
    if value:
        return str(tags.get(key)) == value
    return key in tags.values() or tags.get(key) not in (None, False)


def merge_tags(stored: Mapping[str, TagValue],
               given: Mapping[str, TagValue]) -> dict[str, TagValue]:
    """Given tags win over stored ones; stored tags not given are kept."""
    return {**stored, **given}
