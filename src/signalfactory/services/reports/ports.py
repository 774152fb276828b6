"""Port of the stored daily reports."""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from signalfactory.domain.daily_report import StoredReport


class DailyReportRepository(Protocol):
    def add(self, tenant_id: int, day: date, report: dict[str, Any], text: str) -> int | None:
        """Store a tenant's report of ``day``; None when one is stored already."""
        ...

    def set_campaign(self, report_id: int, campaign_id: int) -> None: ...

    def get(self, tenant_id: int, day: date) -> StoredReport | None: ...

    def days(self, tenant_id: int, limit: int = 100) -> list[date]:
        """Days with a stored report, newest first."""
        ...
