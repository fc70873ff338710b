"""Privacy: keeping reports only as long as configured, exporting them safely, and forgetting
a person on request.

Anonymous reporters are never named in an export, and a customer's contact never leaves
feedbot unmasked: the export is meant for analysis, not for calling people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from feedbot.core import attachments
from feedbot.models import (
    AuditEntry,
    MeToo,
    Report,
    ReportStatus,
)

EXPORT_FIELDS = (
    "reference",
    "created_at",
    "status",
    "category",
    "location",
    "urgency",
    "reporter",
    "text",
    "customers_affected",
    "callback_requested",
    "customer_contact",
    "me_too_count",
    "owner",
    "acknowledged_at",
    "resolved_at",
    "resolution_note",
    "leadership_channel",
    "files",
)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A cell a spreadsheet shows as the text it is: one that starts like a formula (`=`,
    `+`, `-`, `@`, tab, carriage return) gets a leading apostrophe, so opening the file runs
    nothing. Other values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def mask_contact(contact: str | None) -> str:
    """Enough to tell two contacts apart in an analysis, not enough to call anyone."""
    if not contact:
        return ""
    return "•••" + contact[-2:] if len(contact) > 4 else "•••"


@dataclass
class Purged:
    reports: int = 0
    files_to_delete: list[str] = field(default_factory=list)
    """feedbot's copies of the purged reports' files, to delete in Slack too."""


def purge_expired_reports(session: Session, *, now: datetime, retention_days: int) -> Purged:
    """`purge_resolved`, and which of feedbot's file copies went with the reports."""
    if retention_days <= 0:
        return Purged()
    copies = attachments.forget_files(session, _doomed(now, retention_days))
    return Purged(purge_resolved(session, now=now, retention_days=retention_days), copies)


def _doomed(now: datetime, retention_days: int) -> Any:
    cutoff = now - timedelta(days=retention_days)
    closed = (ReportStatus.RESOLVED, ReportStatus.DUPLICATE)
    return select(Report.id).where(col(Report.status).in_(closed), col(Report.resolved_at) < cutoff)


def purge_resolved(session: Session, *, now: datetime, retention_days: int) -> int:
    """Delete reports resolved (or merged) more than `retention_days` ago, with their
    timeline, *me too*s, search terms and file records (cascading). 0 days keeps everything."""
    if retention_days <= 0:
        return 0
    cutoff = now - timedelta(days=retention_days)
    closed = (ReportStatus.RESOLVED, ReportStatus.DUPLICATE)
    doomed = _doomed(now, retention_days)
    # Reports merged into a doomed one point at it; they go first, whatever their own age.
    session.execute(
        update(Report)
        .where(col(Report.duplicate_of_id).in_(doomed))
        .values(duplicate_of_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(MeToo)
        .where(col(MeToo.merged_from_id).in_(doomed))
        .values(merged_from_id=None)
        .execution_options(synchronize_session=False)
    )
    result = session.execute(
        delete(Report)
        .where(col(Report.status).in_(closed), col(Report.resolved_at) < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def export_rows(session: Session, *, since: datetime, batch: int = 1000) -> list[dict[str, Any]]:
    """Reports created since `since`, oldest first, ready for CSV or JSON; `files` lists each
    report's files by name and size in bytes."""
    rows = []
    ids: list[int] = []
    query = select(Report).where(col(Report.created_at) >= since).order_by(col(Report.id))
    for report in session.exec(query.execution_options(yield_per=batch)):
        ids.append(report.id or 0)
        rows.append(
            {
                "reference": report.reference,
                "created_at": report.created_at.isoformat(),
                "status": report.status.value,
                "category": report.category,
                "location": report.location or "",
                "urgency": report.urgency.value,
                "reporter": "" if report.anonymous else (report.reporter_id or ""),
                "text": report.text,
                "customers_affected": report.customers_affected,
                "callback_requested": report.callback_requested,
                "customer_contact": mask_contact(report.customer_contact),
                "me_too_count": report.me_too_count,
                "owner": report.owner_id or "",
                "acknowledged_at": report.acknowledged_at.isoformat()
                if report.acknowledged_at
                else "",
                "resolved_at": report.resolved_at.isoformat() if report.resolved_at else "",
                "resolution_note": report.resolution_note or "",
                "leadership_channel": report.leadership_channel or "",
            }
        )
    files = attachments.files_by_report(session, ids)
    for report_id, row in zip(ids, rows, strict=True):
        listed = files.get(report_id, [])
        row["files"] = "; ".join(f"{f.name} ({f.size} bytes)" for f in listed)
    return rows


def audit_log(session: Session, *, limit: int = 20) -> list[AuditEntry]:
    return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)))


def count_reports(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(Report)).one())
