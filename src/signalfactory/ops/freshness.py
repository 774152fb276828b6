"""Market-data freshness for Prometheus: the newest bar per source and timeframe.

Read from the ``ingests`` journal at scrape time, so bars written by any process (a worker's
collector, a CLI ingest) count. Sources are reduced to their kind (``files``, ``sample``, a
collector's name) to keep label cardinality bounded: never a symbol or a file path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import sqlalchemy as sa

from signalfactory.adapters.storage.tables import ingests
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.metrics import MARKET_DATA_LAST_BAR, MARKET_DATA_MAX_STALENESS
from signalfactory.services.platform import Platform

# Allowed age of the newest bar before data counts as stale, by timeframe: a few bars, and for
# daily and weekly bars a long weekend on top.
_DEFAULT_ALLOWANCE_BARS = 3
_WEEKEND_SECONDS = 3 * 86400


def source_kind(source: str) -> str:
    if source.startswith("sample("):
        return "sample"
    head, sep, _rest = source.partition(":")
    if sep and head and "/" not in head and "\\" not in head and len(head) <= 32:
        return head
    return "files"


def allowed_staleness(timeframe: Timeframe) -> int:
    allowance = timeframe.seconds * _DEFAULT_ALLOWANCE_BARS
    return allowance + (_WEEKEND_SECONDS if timeframe.seconds >= 86400 else 0)


@dataclass(frozen=True)
class Freshness:
    """The newest bar of one source kind and timeframe, and how old it may get."""

    source_kind: str
    timeframe: str
    newest: float  # seconds since the epoch
    allowed_staleness: int  # seconds


def newest_bars(conn: sa.Connection) -> list[Freshness]:
    rows = conn.execute(sa.select(ingests.c.source, ingests.c.timeframe,
                                  sa.func.max(ingests.c.max_ts))
                        .group_by(ingests.c.source, ingests.c.timeframe))
    newest: dict[tuple[str, str], float] = {}
    for source, timeframe, max_ts in rows:
        if max_ts is None:
            continue
        key = (source_kind(source), timeframe)
        stamp = (max_ts if max_ts.tzinfo else max_ts.replace(tzinfo=UTC)).timestamp()
        newest[key] = max(newest.get(key, 0.0), stamp)
    return [Freshness(kind, timeframe, stamp, allowed_staleness(Timeframe.parse(timeframe)))
            for (kind, timeframe), stamp in newest.items()]


def refresh_freshness(platform: Platform) -> None:
    """Scrape-time refresher (wired in bootstrap): sets the freshness gauges."""
    with sql_database(platform.database).reader.connect() as conn:
        found = newest_bars(conn)
    # Collected data is labelled by its source's name; a source's allowance follows its
    # schedule (or its max_staleness_seconds), not only the bar length.
    from signalfactory.services.sources.monitoring import source_allowances

    per_source = source_allowances(platform, {item.timeframe: item.allowed_staleness
                                              for item in found})
    for item in found:
        MARKET_DATA_LAST_BAR.labels(item.source_kind, item.timeframe).set(item.newest)
        MARKET_DATA_MAX_STALENESS.labels(item.source_kind, item.timeframe).set(
            per_source.get(item.source_kind, item.allowed_staleness))
