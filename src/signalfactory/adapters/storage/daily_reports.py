"""Stored daily reports in SQL: the ``DailyReportRepository`` port."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import daily_reports
from signalfactory.domain.daily_report import StoredReport


class SqlDailyReportRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, tenant_id: int, day: date, report: dict[str, Any], text: str) -> int | None:
        if self.get(tenant_id, day) is not None:
            return None
        generated = datetime.fromisoformat(str(report["generated_at"]))
        return int(self.conn.execute(daily_reports.insert().values(
            tenant_id=tenant_id, day=day, generated_at=generated, report=report, text=text)
            .returning(daily_reports.c.id)).scalar_one())

    def set_campaign(self, report_id: int, campaign_id: int) -> None:
        self.conn.execute(daily_reports.update().where(daily_reports.c.id == report_id)
                          .values(campaign_id=campaign_id))

    def get(self, tenant_id: int, day: date) -> StoredReport | None:
        row = self.conn.execute(sa.select(daily_reports).where(
            daily_reports.c.tenant_id == tenant_id, daily_reports.c.day == day)).first()
        if row is None:
            return None
        return StoredReport(id=int(row.id), tenant_id=int(row.tenant_id), day=row.day,
                            report=row.report, text=row.text, campaign_id=row.campaign_id)

    def days(self, tenant_id: int, limit: int = 100) -> list[date]:
        rows = self.conn.execute(sa.select(daily_reports.c.day)
                                 .where(daily_reports.c.tenant_id == tenant_id)
                                 .order_by(daily_reports.c.day.desc()).limit(limit))
        return [r.day for r in rows]
