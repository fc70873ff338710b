"""The inbox: Slack's requests, stored as they arrive and answered at once, handled after."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text
from sqlmodel import Field, SQLModel, UTCDateTime

from feedbot.models.core import _stored_as_value, utcnow


class InboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class InboxEntry(SQLModel, table=True):
    """One request from Slack that changes something, acked before it was handled.

    `dedupe_key` is unique: Slack's `event_id` for an event, the `trigger_id` of a command or
    an interaction, so a retried delivery lands once. A handled entry stays (as `done`, its
    body emptied) for `feedbot.core.inbox.KEEP_FOR`, so a late retry still finds its key.
    """

    __tablename__ = "inbox_entry"
    __table_args__ = (Index("ix_inbox_entry_due", "status", "next_attempt_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    dedupe_key: str = Field(max_length=128, unique=True)
    body: str
    status: InboxStatus = Field(default=InboxStatus.PENDING, sa_type=_stored_as_value(InboxStatus))
    received_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    handled_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    last_error: str | None = None


ARRIVALS_METADATA = MetaData()
"""The arrivals file's one table, apart from the main database's metadata: Alembic migrates
the main database only, and `feedbot.db.arrivals_engine` creates this table where it is
missing."""

ARRIVAL = Table(
    "arrival",
    ARRIVALS_METADATA,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("dedupe_key", String(128), nullable=False, unique=True),
    Column("body", Text, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
)
"""On SQLite, a request stored but not yet moved into `inbox_entry`, in a database file of
its own (`feedbot.core.inbox.move_arrivals` says why)."""
