"""Instrument rows: upsert by (symbol, venue), look-ups by tag, id <-> symbol maps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables_core import instruments
from signalfactory.domain.instruments import (
    Instrument,
    InstrumentSpec,
    TagValue,
    UpsertedInstruments,
    has_tag,
    merge_tags,
)

_CHUNK = 500  # symbols per IN (...) list: well inside every driver's parameter limit


class SqlInstrumentRepository:
    """The ``InstrumentRepository`` port on the ``instruments`` table of one connection."""

    def __init__(self, conn: Connection, known: dict[tuple[str, str], int] | None = None,
                 on_commit: Callable[[Callable[[], None]], None] | None = None) -> None:
        """``known``: the database's committed ids by (symbol, venue), shared by its writing
        units of work, which learn new ones through ``on_commit``."""
        self.conn = conn
        self.known = known
        self.on_commit = on_commit

    def upsert(self, specs: Sequence[InstrumentSpec]) -> UpsertedInstruments:
        if not specs:
            return UpsertedInstruments({}, changed=False)
        wanted = {(s.symbol, s.venue): s for s in specs}
        known = self.known
        if known is not None and not any(s.tags for s in specs):
            try:  # every one committed before (a live feed): nothing to read or write
                return UpsertedInstruments({key[0]: known[key] for key in wanted},
                                           changed=False)
            except KeyError:
                pass
        existing: dict[tuple[str, str], tuple[int, dict[str, TagValue]]] = {}
        symbols = sorted({s.symbol for s in specs})
        # Stored tags matter only to merge given ones into; a bar feed usually gives none.
        tags_column = (instruments.c.tags if any(s.tags for s in specs)
                       else sa.null().label("tags"))
        for chunk_start in range(0, len(symbols), _CHUNK):
            chunk = symbols[chunk_start:chunk_start + _CHUNK]
            for ident, symbol, venue, tags in self.conn.execute(
                    sa.select(instruments.c.id, instruments.c.symbol, instruments.c.venue,
                              tags_column).where(self._symbol_in(chunk))).tuples():
                existing[(symbol, venue)] = (ident, dict(tags) if tags else {})
        new_rows = [
            {"symbol": s.symbol, "venue": s.venue, "asset_class": s.asset_class,
             "currency": s.currency, "tags": dict(s.tags)}
            for key, s in wanted.items() if key not in existing
        ]
        changed = False
        if new_rows:
            self.conn.execute(instruments.insert(), new_rows)
            changed = True
        for key, s in wanted.items():
            if key in existing and s.tags:
                ident, tags = existing[key]
                merged = merge_tags(tags, s.tags)
                if merged != tags:
                    self.conn.execute(instruments.update().where(instruments.c.id == ident)
                                      .values(tags=merged))
                    changed = True
        ids = {key[0]: existing[key][0] for key in wanted if key in existing}
        exact = {key: int(existing[key][0]) for key in wanted if key in existing}
        # Only the new rows need their ids read back (a live feed re-sends known instruments).
        added = sorted({str(row["symbol"]) for row in new_rows})
        for chunk_start in range(0, len(added), _CHUNK):
            chunk = added[chunk_start:chunk_start + _CHUNK]
            for added_row in self.conn.execute(
                    sa.select(instruments.c.id, instruments.c.symbol, instruments.c.venue)
                    .where(instruments.c.symbol.in_(chunk))):
                if (added_row.symbol, added_row.venue) in wanted:
                    ids[added_row.symbol] = added_row.id
                    exact[(added_row.symbol, added_row.venue)] = int(added_row.id)
        if known is not None and self.on_commit is not None:
            self.on_commit(lambda: known.update(exact))  # never ids a rollback undid
        return UpsertedInstruments(ids, changed=changed)

    def _symbol_in(self, symbols: list[str]) -> sa.ColumnElement[bool]:
        """``symbol IN (...)``. On SQLite the list travels as one JSON parameter: an IN of
        hundreds of parameters is rendered afresh on every execution (a live feed's batch of
        500 symbols spent most of its instrument look-up there)."""
        if self.conn.dialect.name != "sqlite":
            return instruments.c.symbol.in_(symbols)
        listed = sa.select(sa.column("value", sa.String)).select_from(
            sa.func.json_each(sa.bindparam("symbols", json.dumps(symbols))))
        return instruments.c.symbol.in_(listed.scalar_subquery())

    def find(self, *, tag: str | None = None,
             symbols: Iterable[str] | None = None) -> list[Instrument]:
        query = sa.select(instruments).order_by(instruments.c.symbol)
        if symbols is not None:
            query = query.where(instruments.c.symbol.in_(list(symbols)))
        found = [Instrument(id=r.id, symbol=r.symbol, venue=r.venue, asset_class=r.asset_class,
                            currency=r.currency, tags=dict(r.tags or {}),
                            created_at=r.created_at)
                 for r in self.conn.execute(query)]
        if tag is None:
            return found
        return [i for i in found if has_tag(i.tags, tag)]

    def symbols(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        query = sa.select(instruments.c.id, instruments.c.symbol)
        if ids is not None:
            query = query.where(instruments.c.id.in_([int(i) for i in ids]))
        return {int(r.id): str(r.symbol) for r in self.conn.execute(query)}
