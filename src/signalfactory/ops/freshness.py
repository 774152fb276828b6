"""Market-data freshness for Prometheus: the newest bar per source and timeframe.

Read from the ``ingests`` journal at scrape time, so bars written by any process (a worker's
collector, a CLI ingest) count. Sources are reduced to their kind (``files``, ``sample``, a
collector's name) to keep label cardinality bounded: never a symbol or a file path.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import sqlalchemy as sa

from signalfactory.adapters.storage.tables import ingests
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.metrics import MARKET_DATA_LAST_BAR, MARKET_DATA_MAX_STALENESS

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


def newest_bars(conn: sa.Connection) -> dict[tuple[str, str], float]:
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
    return newest


def refresh_freshness(platform: Any) -> None:
    with platform.reader.connect() as conn:
        for (kind, timeframe), stamp in newest_bars(conn).items():
            MARKET_DATA_LAST_BAR.labels(kind, timeframe).set(stamp)
            MARKET_DATA_MAX_STALENESS.labels(kind, timeframe).set(
                allowed_staleness(Timeframe.parse(timeframe)))
