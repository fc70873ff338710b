"""Exactly-once handling of Slack events across retries and replicas.

Slack retries an event it thinks was missed with the same `event_id`. The id is inserted into
a table with a primary key on it; whichever process inserts first handles the event, every
other attempt finds the row and stops. `INSERT … ON CONFLICT DO NOTHING` behaves the same on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col

from feedbot.db import upsert_insert
from feedbot.models import ProcessedEvent

KEEP_FOR = timedelta(days=2)
"""Slack's last retry comes about five minutes after the first attempt; two days is plenty."""


def claim_event(session: Session, *, event_id: str, now: datetime) -> bool:
    """True if this call is the first to see `event_id` (the caller then handles it).

    Asks for the inserted row back (RETURNING) instead of reading `rowcount`: psycopg
    reports -1 rows for this statement, which read as "inserted" every time and let Slack's
    retries of an event through on PostgreSQL."""
    statement = (
        upsert_insert(session, ProcessedEvent)
        .values(event_id=event_id, received_at=now)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(col(ProcessedEvent.event_id))
    )
    return session.execute(statement).first() is not None


def release_event(session: Session, *, event_id: str) -> None:
    """Forget a claim whose handling failed, so Slack's next retry is handled."""
    session.execute(delete(ProcessedEvent).where(col(ProcessedEvent.event_id) == event_id))


def prune_events(session: Session, *, now: datetime) -> int:
    result = session.execute(
        delete(ProcessedEvent).where(col(ProcessedEvent.received_at) < now - KEEP_FOR)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
