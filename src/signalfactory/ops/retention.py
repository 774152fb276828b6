"""Data retention per table and timeframe: what is older than its limit is deleted.

Limits are days (``null`` keeps forever), keyed by table, then by timeframe, with ``"*"`` for
any timeframe not listed. The defaults follow the reference documents (one-minute bars 90
days, daily bars 10 years, signals 3 years); ``SIGNALFACTORY_RETENTION`` holds JSON that is
merged over them, for example ``{"bars": {"1m": 30}, "signals": {"*": 365}}``.

Bars are deleted through the bar store: the columnar store rewrites a timeframe without the
expired bars (``replace``); the PostgreSQL ``bars`` table drops whole yearly partitions that
lie entirely before every timeframe's cutoff and deletes the remainder by ``ts`` (through the
PostgreSQL bar store, which keeps its packed copy in step, and rebuilds that copy first if
bars were written around the store). Any other
configured table needs a time column (``bar_ts``, ``ts`` or ``created_at``); rows that other
tables still reference by foreign key are kept, so a prune never breaks a delivery record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.cache import CACHED_NAMESPACES
from signalfactory.adapters.storage.bar_store import BarStore
from signalfactory.adapters.storage.columnar import ColumnarBarStore
from signalfactory.adapters.storage.tables import metadata
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.services.platform import Platform
from signalfactory.settings import RetentionLimits, Settings

if TYPE_CHECKING:
    from signalfactory.adapters.storage.postgres_bars import PostgresBarStore

DEFAULT_RETENTION: RetentionLimits = {
    "bars": {"1m": 90, "5m": 180, "15m": 365, "30m": 365, "1h": 730, "4h": 1825,
             "1d": 3650, "1w": None},
    "signals": {"*": 1095},
}
BARS = "bars"
_TIME_COLUMNS = ("bar_ts", "ts", "created_at")


def retention_config(settings: Settings) -> RetentionLimits:
    """The defaults with ``settings.retention`` (``SIGNALFACTORY_RETENTION``) merged over them.

    The settings object has checked the shape, timeframes and day counts; the table names are
    checked here, against the schema.
    """
    config = {table: dict(rules) for table, rules in DEFAULT_RETENTION.items()}
    for table, rules in settings.retention.items():
        if table != BARS and table not in metadata.tables:
            raise BadInputError(f"SIGNALFACTORY_RETENTION names table {table!r}, which does "
                                "not exist")
        config.setdefault(table, {}).update(rules)
    return config


def days_for(rules: dict[str, int | None], timeframe: str) -> int | None:
    """The limit of ``timeframe`` (a timeframe name, or ``"*"``); None keeps forever."""
    return rules[timeframe] if timeframe in rules else rules.get("*")


def cutoffs(rules: dict[str, int | None], timeframes: Iterable[str],
            now: datetime) -> dict[str, tuple[int, datetime]]:
    """(days kept, cutoff) of each present timeframe that has a limit: older data expires."""
    return {tf: (days, now - timedelta(days=days)) for tf in timeframes
            if (days := days_for(rules, tf)) is not None}


@dataclass(frozen=True)
class PruneItem:
    table: str
    timeframe: str
    keep_days: int
    cutoff: str
    rows: int
    partitions: tuple[str, ...] = ()
    kept_referenced: int = 0


@dataclass(frozen=True)
class RetentionReport:
    dry_run: bool
    items: tuple[PruneItem, ...]

    @property
    def rows(self) -> int:
        return sum(i.rows for i in self.items)

    def to_dict(self) -> dict[str, object]:
        """The ``data prune --json`` form (``partitions`` as a list)."""
        return {"dry_run": self.dry_run, "rows": self.rows,
                "items": [{**asdict(i), "partitions": list(i.partitions)} for i in self.items]}


# -- bars ---------------------------------------------------------------------------------

def _bars_columnar(conn: Connection, store: ColumnarBarStore, rules: dict[str, int | None],
                   now: datetime, apply: bool) -> list[PruneItem]:
    items = []
    for name, (days, cutoff) in sorted(cutoffs(rules, store.timeframes(conn), now).items()):
        tf = Timeframe.parse(name)
        cols = store.read_columns(conn, tf)
        keep = cols.ts >= datetime_to_ns(cutoff)
        expired = int(np.count_nonzero(~keep))
        if expired:
            items.append(PruneItem(BARS, name, days, cutoff.isoformat(), expired))
            if apply:
                store.replace(conn, tf, cols.take(keep))
    return items


_BOUND = re.compile(r"TO \('([^']+)'\)")


def _bar_partitions(conn: Connection) -> list[tuple[str, datetime]]:
    """(name, exclusive upper bound) of each ranged partition of ``bars`` on PostgreSQL."""
    rows = conn.exec_driver_sql(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'bars'::regclass").all()
    out = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match and match.group(1) != "MAXVALUE":
            upper = datetime.fromisoformat(match.group(1))
            out.append((name, upper if upper.tzinfo else upper.replace(tzinfo=UTC)))
    return out


def _bars_table(conn: Connection, store: BarStore, rules: dict[str, int | None],
                now: datetime, apply: bool) -> list[PruneItem]:
    present = [r[0] for r in conn.exec_driver_sql("SELECT DISTINCT timeframe FROM bars")]
    limits = cutoffs(rules, present, now)
    partitions: list[tuple[str, datetime]] = []
    if conn.dialect.name == "postgresql" and set(limits) == set(present) and limits:
        # A partition lying wholly before every timeframe's cutoff holds only expired bars.
        oldest = min(cutoff for _days, cutoff in limits.values())
        partitions = [(n, upper) for n, upper in _bar_partitions(conn) if upper <= oldest]
    items = []
    for tf, (days, cutoff) in sorted(limits.items()):
        count = conn.execute(sa.text("SELECT count(*) FROM bars WHERE timeframe = :tf AND "
                                     "ts < :cutoff"), {"tf": tf, "cutoff": cutoff}).scalar_one()
        if count:
            items.append(PruneItem(BARS, tf, days, cutoff.isoformat(), int(count),
                                   partitions=tuple(n for n, _u in partitions)))
    if apply:
        packed = _packed_store(conn, store)
        if packed is not None and not packed.packs_current(conn):
            packed.repack(conn)
        quote = conn.dialect.identifier_preparer.quote
        for name, _upper in partitions:
            conn.exec_driver_sql(f"ALTER TABLE bars DETACH PARTITION {quote(name)}")
            conn.exec_driver_sql(f"DROP TABLE {quote(name)}")
        for tf, (_days, cutoff) in limits.items():
            if packed is not None:  # its packs of the dropped partitions go too
                packed.delete_before(conn, Timeframe.parse(tf), datetime_to_ns(cutoff))
            else:
                conn.execute(sa.text("DELETE FROM bars WHERE timeframe = :tf AND ts < :cutoff"),
                             {"tf": tf, "cutoff": cutoff})
    return items


def _packed_store(conn: Connection, store: BarStore) -> PostgresBarStore | None:
    if conn.dialect.name != "postgresql":
        return None
    # Imported here: psycopg and the COPY reader only matter on PostgreSQL.
    from signalfactory.adapters.storage.postgres_bars import PostgresBarStore

    return store if isinstance(store, PostgresBarStore) else None


# -- other tables -------------------------------------------------------------------------

def _time_column(table: sa.Table) -> sa.Column[Any]:
    for name in _TIME_COLUMNS:
        if name in table.c:
            return table.c[name]
    raise BadInputError(f"table {table.name} has no time column ({', '.join(_TIME_COLUMNS)}); "
                        "it cannot have a retention limit")


def _unreferenced(table: sa.Table) -> list[sa.ColumnElement[bool]]:
    """Conditions excluding rows that another table still points at."""
    conditions = []
    for other in metadata.tables.values():
        for fk in other.foreign_keys:
            if fk.column.table is table:
                conditions.append(~sa.exists().where(fk.parent == fk.column))
    return conditions


def _plain_table(conn: Connection, table: sa.Table, rules: dict[str, int | None],
                 now: datetime, apply: bool) -> list[PruneItem]:
    ts = _time_column(table)
    has_tf = "timeframe" in table.c
    if has_tf:
        present = [r[0] for r in conn.execute(sa.select(table.c.timeframe).distinct())]
    else:
        present = ["*"]
    items = []
    for tf, (days, cutoff) in sorted(cutoffs(rules, present, now).items()):
        expired = [ts < cutoff] + ([table.c.timeframe == tf] if has_tf else [])
        free = [*expired, *_unreferenced(table)]
        total = conn.execute(sa.select(sa.func.count()).select_from(table)
                             .where(*expired)).scalar_one()
        deletable = conn.execute(sa.select(sa.func.count()).select_from(table)
                                 .where(*free)).scalar_one()
        if total:
            items.append(PruneItem(table.name, tf, days, cutoff.isoformat(), int(deletable),
                                   kept_referenced=int(total - deletable)))
            if apply and deletable:
                conn.execute(table.delete().where(*free))
    return items


def apply_retention(platform: Platform, *, dry_run: bool = False, now: datetime | None = None,
                    config: RetentionLimits | None = None) -> RetentionReport:
    """Delete (or, with ``dry_run``, count) everything past its retention, in one transaction.

    ``config`` (default: :func:`retention_config` of the platform's settings) is the whole
    set of limits, not an override.
    """
    config = config if config is not None else retention_config(platform.settings)
    now = now or datetime.now(UTC)
    database = sql_database(platform.database)
    items: list[PruneItem] = []
    with database.engine.begin() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table_name, rules in sorted(config.items()):
            if table_name == BARS:
                if isinstance(database.bar_store, ColumnarBarStore):
                    items += _bars_columnar(conn, database.bar_store, rules, now, not dry_run)
                elif BARS in present:
                    items += _bars_table(conn, database.bar_store, rules, now, not dry_run)
            elif table_name in present:
                items += _plain_table(conn, metadata.tables[table_name], rules, now,
                                      not dry_run)
    if not dry_run and any(item.rows for item in items):
        platform.cache.invalidate(*CACHED_NAMESPACES)
    return RetentionReport(dry_run=dry_run, items=tuple(items))


def run_scheduled_retention(platform: Platform) -> RetentionReport:
    """What the scheduler calls (daily is plenty)."""
    return apply_retention(platform)
