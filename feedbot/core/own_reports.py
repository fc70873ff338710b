"""A person's own reports, as `/feedback mine` and their Home list them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from feedbot.core.identity import Identities
from feedbot.core.reports import mine
from feedbot.models import Report, TimelineEntry


@dataclass(frozen=True)
class ReportSummary:
    report: Report
    last_action: str
    last_at: datetime


def reports_by(
    session: Session, *, user_id: str, identities: Identities, limit: int = 20
) -> list[ReportSummary]:
    """The caller's own reports (anonymous ones too), newest first, each with its latest
    timeline entry."""
    reports = session.exec(
        select(Report)
        .where(mine(identities, user_id))
        .order_by(col(Report.created_at).desc(), col(Report.id).desc())
        .limit(limit)
    ).all()
    if not reports:
        return []
    latest_ids = (
        select(func.max(TimelineEntry.id))
        .where(col(TimelineEntry.report_id).in_([r.id for r in reports]))
        .group_by(col(TimelineEntry.report_id))
    )
    latest = {
        entry.report_id: entry
        for entry in session.exec(
            select(TimelineEntry).where(col(TimelineEntry.id).in_(latest_ids))
        )
    }
    return [
        ReportSummary(
            report=report,
            last_action=latest[report.id].action if report.id in latest else "created",
            last_at=latest[report.id].at if report.id in latest else report.created_at,
        )
        for report in reports
    ]
