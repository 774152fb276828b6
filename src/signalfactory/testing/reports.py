"""Stored daily reports in memory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from signalfactory.domain.daily_report import StoredReport
from signalfactory.testing.memory import MemoryState


@dataclass
class ReportStore:
    reports: dict[int, StoredReport] = field(default_factory=dict)


class MemoryDailyReportRepository:
    def __init__(self, state: MemoryState) -> None:
        self.store = state.store("daily_reports", ReportStore)

    def add(self, tenant_id: int, day: date, report: dict[str, Any], text: str) -> int | None:
        if self.get(tenant_id, day) is not None:
            return None
        report_id = len(self.store.reports) + 1
        self.store.reports[report_id] = StoredReport(report_id, tenant_id, day, report, text,
                                                     None)
        return report_id

    def set_campaign(self, report_id: int, campaign_id: int) -> None:
        self.store.reports[report_id] = dataclasses.replace(self.store.reports[report_id],
                                                            campaign_id=campaign_id)

    def get(self, tenant_id: int, day: date) -> StoredReport | None:
        return next((r for r in self.store.reports.values()
                     if r.tenant_id == tenant_id and r.day == day), None)

    def days(self, tenant_id: int, limit: int = 100) -> list[date]:
        return sorted((r.day for r in self.store.reports.values() if r.tenant_id == tenant_id),
                      reverse=True)[:limit]
