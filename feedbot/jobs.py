"""What the scheduler runs. Each job opens its own session and is safe to run twice."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlmodel import col

from feedbot.core.events import prune_events
from feedbot.db import session_scope
from feedbot.models import OutboxMessage, OutboxStatus, Report, utcnow

log = logging.getLogger(__name__)

KEEP_DELIVERED = timedelta(days=30)


def prune(engine: Engine) -> None:
    """Forget old event ids, and delivered messages that no card, thread or edit refers to."""
    now = utcnow()
    with session_scope(engine) as session:
        events = prune_events(session, now=now)
        still_needed: tuple[Any, ...] = (
            select(col(Report.card_message_id)).where(col(Report.card_message_id).is_not(None)),
            select(col(OutboxMessage.thread_of_id)).where(
                col(OutboxMessage.thread_of_id).is_not(None)
            ),
            select(col(OutboxMessage.update_of_id)).where(
                col(OutboxMessage.update_of_id).is_not(None)
            ),
        )
        result = session.execute(
            delete(OutboxMessage).where(
                col(OutboxMessage.status).in_([OutboxStatus.SENT, OutboxStatus.SUPERSEDED]),
                col(OutboxMessage.created_at) < now - KEEP_DELIVERED,
                *(col(OutboxMessage.id).not_in(query) for query in still_needed),
            )
        )
    log.info("pruned %s event ids and %s delivered messages", events, result.rowcount)  # type: ignore[attr-defined]
