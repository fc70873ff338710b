"""The one row shape every list in a digest uses, and the queries that fill it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from feedbot.core.digest.results import ReportLine, ReportList
from feedbot.models import OutboxMessage, Report


def line_columns() -> tuple[Any, ...]:
    return (
        Report.id,
        Report.text,
        Report.category,
        Report.location,
        Report.urgency,
        Report.status,
        Report.created_at,
        Report.me_too_count,
        Report.follow_up_at,
        OutboxMessage.result_channel,
        OutboxMessage.result_ts,
        case((col(Report.anonymous), None), else_=col(Report.source_permalink)),
    )


def lines(session: Session, query: Any) -> list[ReportLine]:
    return [ReportLine(*row) for row in session.exec(query).all()]


def line_query(*where: Any) -> Any:
    return (
        select(*line_columns())
        .outerjoin(OutboxMessage, col(OutboxMessage.id) == col(Report.card_message_id))
        .where(*where)
    )


def report_list(session: Session, where: list[Any], order: list[Any], limit: int) -> ReportList:
    total = session.exec(select(func.count()).select_from(Report).where(*where)).one()
    items = lines(session, line_query(*where).order_by(*order, col(Report.id)).limit(limit))
    return ReportList(items=items, total=int(total))
