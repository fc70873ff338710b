"""\"You said, we did\": what leaders resolved in the week, for the all-staff post."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import (
    case,
    func,
    true,
)
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from feedbot.core.digest.figures import still_open_at
from feedbot.core.digest.periods import week_bounds
from feedbot.core.digest.results import Resolution, YouSaidWeDid
from feedbot.models import (
    Report,
    ReportStatus,
)


def build_you_said_we_did(
    session: Session,
    *,
    period: str,
    zone: ZoneInfo,
    confidential: Sequence[str] = (),
    limit: int = 15,
) -> YouSaidWeDid:
    """What was resolved in the week and shared with colleagues by the leader who resolved it,
    most *me too* first; never a report in a `confidential` category. Anonymous reporters
    come back with `reporter_id=None`: nothing downstream can name them by mistake."""
    start, end = week_bounds(period, zone)
    where = [
        col(Report.status) == ReportStatus.RESOLVED,
        col(Report.resolved_at) >= start,
        col(Report.resolved_at) < end,
        col(Report.solution_shared) == true(),
    ]
    if confidential:
        where.append(col(Report.category).not_in(list(confidential)))
    total, colleagues = session.exec(
        select(func.count(), func.coalesce(func.sum(Report.me_too_count), 0)).where(*where)
    ).one()
    rows = session.execute(
        sa_select(
            col(Report.id),
            col(Report.text),
            col(Report.category),
            col(Report.resolution_note),
            case((col(Report.anonymous), None), else_=col(Report.reporter_id)),
            col(Report.me_too_count),
        )
        .where(*where)
        .order_by(col(Report.me_too_count).desc(), col(Report.resolved_at), col(Report.id))
        .limit(limit)
    ).all()
    items = [
        Resolution(
            id=rid,
            text=said,
            category=category,
            note=note or "",
            reporter_id=reporter,
            me_too_count=me_too,
        )
        for rid, said, category, note, reporter, me_too in rows
    ]
    return YouSaidWeDid(
        period=period,
        start=start,
        end=end,
        items=items,
        total=int(total),
        still_open=still_open_at(session, end),
        colleagues=int(colleagues),
    )
