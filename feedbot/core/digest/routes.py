"""The company digest's line per route: which region answers slowly, at a glance.

Counted like the digest's own figures: *new* counts reports; *open*, *overdue* and the time
to acknowledge count cases, a report outside any incident group or a group once (see
`feedbot.core.digest.figures`). One grouped query per figure, whatever the number of routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from feedbot.core.digest.elapsed import percentile, seconds_between
from feedbot.core.digest.incidents import UNGROUPED, UNMERGED, overdue_group
from feedbot.core.digest.periods import COUNTED, OPEN
from feedbot.core.digest.results import RouteLine
from feedbot.models import IncidentGroup, Report, ReportStatus


def route_lines(
    session: Session, channels: Sequence[str], *, start: datetime, end: datetime, now: datetime
) -> list[RouteLine]:
    """New this week, open and overdue now, and the median time to acknowledge of the
    week's acknowledgements, for each of `channels`."""
    if not channels:
        return []
    wanted = list(channels)

    def reports(*where: Any) -> dict[str, int]:
        rows = session.exec(
            select(Report.leadership_channel, func.count())
            .where(col(Report.leadership_channel).in_(wanted), *where)
            .group_by(col(Report.leadership_channel))
        ).all()
        return {str(channel): int(count) for channel, count in rows}

    def groups(*where: Any) -> dict[str, int]:
        rows = session.exec(
            select(IncidentGroup.leadership_channel, func.count())
            .where(col(IncidentGroup.leadership_channel).in_(wanted), UNMERGED, *where)
            .group_by(col(IncidentGroup.leadership_channel))
        ).all()
        return {str(channel): int(count) for channel, count in rows}

    new = reports(
        col(Report.status).in_(COUNTED),
        col(Report.created_at) >= start,
        col(Report.created_at) < end,
    )
    open_reports = reports(col(Report.status).in_(OPEN), UNGROUPED)
    open_groups = groups(col(IncidentGroup.status).in_(OPEN))
    overdue_reports = reports(
        col(Report.status).in_(OPEN), col(Report.follow_up_at) < now, UNGROUPED
    )
    overdue_groups = groups(col(IncidentGroup.status) == ReportStatus.OPEN, overdue_group())
    waits: dict[str, list[float]] = {}
    for table, where in (
        (Report, [col(Report.status) != ReportStatus.DUPLICATE, UNGROUPED]),
        (IncidentGroup, [UNMERGED]),
    ):
        elapsed = seconds_between(session, col(table.acknowledged_at), col(table.created_at))
        for channel, seconds in session.exec(
            select(table.leadership_channel, elapsed).where(
                col(table.leadership_channel).in_(wanted),
                col(table.acknowledged_at) >= start,
                col(table.acknowledged_at) < end,
                *where,
            )
        ).all():
            waits.setdefault(str(channel), []).append(max(float(seconds), 0.0))
    return [
        RouteLine(
            channel=channel,
            new=new.get(channel, 0),
            open=open_reports.get(channel, 0) + open_groups.get(channel, 0),
            overdue=overdue_reports.get(channel, 0) + overdue_groups.get(channel, 0),
            acknowledge_median=(
                timedelta(seconds=round(percentile(sorted(waits[channel]), 0.5)))
                if waits.get(channel)
                else None
            ),
        )
        for channel in channels
    ]
