"""The ingest journal: one entry per committed bar write (freshness metrics read it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class IngestRecord:
    """One bar write: where the bars came from and what time span they cover."""

    source: str
    timeframe: str
    rows: int
    instruments: int
    min_ts: datetime | None
    max_ts: datetime | None
