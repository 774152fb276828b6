"""Instrument rows: upsert by (symbol, venue), look-ups by tag, id <-> symbol maps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import instruments


@dataclass(frozen=True)
class InstrumentSpec:
    symbol: str
    venue: str = ""
    asset_class: str = "equity"
    currency: str = "USD"
    tags: Mapping[str, Any] = field(default_factory=dict)


# Set in ``conn.info`` when an upsert added or retagged instruments, so the caller can
# invalidate cached instrument lists after its commit (and only then).
CHANGED = "instruments_changed"


def upsert_instruments(conn: Connection, specs: Sequence[InstrumentSpec]) -> dict[str, int]:
    """Ensure every instrument exists; returns symbol -> id. Tags given here are merged in."""
    if not specs:
        return {}
    wanted = {(s.symbol, s.venue): s for s in specs}
    existing: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    symbols = sorted({s.symbol for s in specs})
    # Stored tags matter only to merge given ones into; a bar feed usually gives none.
    tags_column = (instruments.c.tags if any(s.tags for s in specs)
                   else sa.null().label("tags"))
    for chunk_start in range(0, len(symbols), 500):
        chunk = symbols[chunk_start:chunk_start + 500]
        for row in conn.execute(sa.select(instruments.c.id, instruments.c.symbol,
                                          instruments.c.venue, tags_column)
                                .where(instruments.c.symbol.in_(chunk))):
            existing[(row.symbol, row.venue)] = (row.id, dict(row.tags or {}))
    new_rows = [
        {"symbol": s.symbol, "venue": s.venue, "asset_class": s.asset_class,
         "currency": s.currency, "tags": dict(s.tags)}
        for key, s in wanted.items() if key not in existing
    ]
    if new_rows:
        conn.execute(instruments.insert(), new_rows)
        conn.info[CHANGED] = True
    for key, s in wanted.items():
        if key in existing and s.tags:
            ident, tags = existing[key]
            merged = {**tags, **s.tags}
            if merged != tags:
                conn.execute(instruments.update().where(instruments.c.id == ident)
                             .values(tags=merged))
                conn.info[CHANGED] = True
    ids = {key[0]: existing[key][0] for key in wanted if key in existing}
    # Only the new rows need their ids read back (a live feed re-sends known instruments).
    added = sorted({row["symbol"] for row in new_rows})
    for chunk_start in range(0, len(added), 500):
        chunk = added[chunk_start:chunk_start + 500]
        for row in conn.execute(sa.select(instruments.c.id, instruments.c.symbol,
                                          instruments.c.venue)
                                .where(instruments.c.symbol.in_(chunk))):
            if (row.symbol, row.venue) in wanted:
                ids[row.symbol] = row.id
    return ids


def list_instruments(conn: Connection, *, tag: str | None = None,
                     symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Instruments as dicts, optionally those carrying ``tag`` (``key=value`` or a bare value)."""
    query = sa.select(instruments).order_by(instruments.c.symbol)
    if symbols is not None:
        query = query.where(instruments.c.symbol.in_(list(symbols)))
    rows = [dict(r._mapping) for r in conn.execute(query)]
    if tag is None:
        return rows
    key, _, value = tag.partition("=")
    out = []
    for r in rows:
        tags = r.get("tags") or {}
        if value:
            if str(tags.get(key)) == value:
                out.append(r)
        elif key in tags.values() or tags.get(key) not in (None, False):
            out.append(r)
    return out


def symbol_map(conn: Connection) -> dict[int, str]:
    return {r.id: r.symbol for r in conn.execute(sa.select(instruments.c.id,
                                                           instruments.c.symbol))}
