"""Incident groups in the digest's open, overdue and response-time figures.

A group counts there once, as one case with its number of reports, and the reports absorbed
into it are not counted there on their own (`figures` leaves out every report with an
`incident_id`). Group membership is read as it is when the digest is built. A group merged
into another is counted only as the group it went into. Groups are few (one per outage), so
these queries read `incident_group` and count each group's reports through the
`ix_report_incident_id` index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_
from sqlmodel import Session, col, select

from feedbot.core.digest.periods import OPEN
from feedbot.core.digest.results import ReportLine, ReportList
from feedbot.db import unindexed
from feedbot.models import IncidentGroup, IncidentReminder, OutboxMessage, Report, ReportStatus

UNMERGED = col(IncidentGroup.merged_into_id).is_(None)
UNGROUPED = unindexed(col(Report.incident_id)).is_(None)
"""Reports in an incident group count through their group (`digest.incidents`).

Written `+incident_id IS NULL`, which no index answers: almost every report is in no group,
yet SQLite, without statistics (feedbot never runs ANALYZE), takes a condition on an index
for a selective one and read every ungrouped report through `ix_report_incident_id` (0.3 s
each at 1,000,000 reports) instead of the status, time or urgency index of the query.
PostgreSQL, which knows from its statistics how few reports are grouped, did not read that
index for it either."""


def open_groups_at(session: Session, moment: datetime, scope: Sequence[Any] = ()) -> int:
    """Groups formed before `moment` and not resolved by then (within `scope`)."""
    return int(
        session.exec(
            select(func.count())
            .select_from(IncidentGroup)
            .where(
                UNMERGED,
                col(IncidentGroup.created_at) < moment,
                or_(
                    col(IncidentGroup.status).in_(OPEN),
                    col(IncidentGroup.resolved_at) >= moment,
                ),
                *scope,
            )
        ).one()
    )


def overdue_group() -> Any:
    """A group still waiting for acknowledgement after its response target: its first
    reminder has gone out (reminders go only after the target)."""
    return exists().where(col(IncidentReminder.incident_id) == col(IncidentGroup.id))


def group_list(session: Session, where: Sequence[Any], limit: int) -> tuple[list[ReportLine], int]:
    """Digest lines for the unmerged groups matching `where`, oldest first, and their total:
    reference `INC-…`, the first report's text, the most reported place, the report count."""
    conditions = [UNMERGED, *where]
    total = session.exec(select(func.count()).select_from(IncidentGroup).where(*conditions)).one()
    members = col(Report.incident_id) == col(IncidentGroup.id)
    count = select(func.count()).where(members).correlate(IncidentGroup).scalar_subquery()
    place = (
        select(Report.location)
        .where(members, col(Report.location).is_not(None))
        .group_by(col(Report.location))
        .order_by(func.count().desc(), col(Report.location))
        .limit(1)
        .correlate(IncidentGroup)
        .scalar_subquery()
    )
    me_too = (
        select(func.coalesce(func.sum(Report.me_too_count), 0))
        .where(members)
        .correlate(IncidentGroup)
        .scalar_subquery()
    )
    columns: tuple[Any, ...] = (
        IncidentGroup.id,
        IncidentGroup.example,
        IncidentGroup.category,
        place,
        IncidentGroup.urgency,
        IncidentGroup.status,
        IncidentGroup.created_at,
        me_too,
        OutboxMessage.result_channel,
        OutboxMessage.result_ts,
        count,
    )
    rows = session.exec(
        select(*columns)
        .outerjoin(OutboxMessage, col(OutboxMessage.id) == col(IncidentGroup.card_message_id))
        .where(*conditions)
        .order_by(col(IncidentGroup.created_at), col(IncidentGroup.id))
        .limit(limit)
    ).all()
    lines = [
        ReportLine(
            id=int(row[0] or 0),
            text=row[1],
            category=row[2],
            location=row[3],
            urgency=row[4],
            status=row[5],
            created_at=row[6],
            me_too_count=int(row[7] or 0),
            card_channel=row[8],
            card_ts=row[9],
            incident_reports=int(row[10] or 0),
        )
        for row in rows
    ]
    return lines, int(total)


def merged(
    reports: ReportList, groups: tuple[list[ReportLine], int], key: Any, limit: int
) -> ReportList:
    """One list of reports and groups, in `key` order, cut to `limit`; totals add up."""
    lines, total = groups
    items = sorted([*reports.items, *lines], key=key)[:limit]
    return ReportList(items=items, total=reports.total + total)


def group_seconds(
    session: Session,
    moment: Any,
    elapsed: Any,
    start: datetime,
    end: datetime,
    scope: Sequence[Any],
    *,
    resolved_only: bool,
) -> list[float]:
    """`elapsed` (`moment - created_at`, in seconds) of the groups acknowledged (or
    resolved) in the week: from when the group formed and its card went up, as its response
    target counts."""
    where = [UNMERGED, col(moment) >= start, col(moment) < end, *scope]
    if resolved_only:
        where.append(col(IncidentGroup.status) == ReportStatus.RESOLVED)
    return [float(v) for v in session.connection().execute(select(elapsed).where(*where)).scalars()]
