"""A leader's worklist: what they have on their plate, shown on their Home tab."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from feedbot.core.reports import OPEN_STATUSES
from feedbot.models import Report


@dataclass(frozen=True)
class Shelf:
    """A few reports to show, and how many there are in all."""

    reports: list[Report]
    total: int


@dataclass(frozen=True)
class LeaderQueue:
    unacknowledged: Shelf
    mine: Shelf
    overdue_follow_ups: Shelf


def _shelf(session: Session, condition: Any, order: Any, limit: int) -> Shelf:
    reports = list(session.exec(select(Report).where(condition).order_by(order).limit(limit)))
    if len(reports) < limit:
        return Shelf(reports, len(reports))
    total = session.exec(select(func.count()).select_from(Report).where(condition)).one()
    return Shelf(reports, int(total))


def leader_queue(
    session: Session, *, user_id: str, channels: list[str], now: datetime, limit: int = 8
) -> LeaderQueue:
    """Unacknowledged reports in `channels` (oldest first), the leader's own open reports,
    and their follow-ups past due."""
    is_open = col(Report.status).in_(OPEN_STATUSES)
    return LeaderQueue(
        unacknowledged=_shelf(
            session,
            is_open
            & col(Report.acknowledged_at).is_(None)
            & col(Report.leadership_channel).in_(channels),
            col(Report.created_at),
            limit,
        ),
        mine=_shelf(
            session, is_open & (col(Report.owner_id) == user_id), col(Report.created_at), limit
        ),
        overdue_follow_ups=_shelf(
            session,
            is_open
            & (col(Report.owner_id) == user_id)
            & (col(Report.follow_up_at) < now)
            & (col(Report.snoozed_until).is_(None) | (col(Report.snoozed_until) < now)),
            col(Report.follow_up_at),
            limit,
        ),
    )
