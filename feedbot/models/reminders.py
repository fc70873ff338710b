"""Tables of follow-up reminders and escalations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from feedbot.models.core import utcnow


class Reminder(SQLModel, table=True):
    """A reminder that was (or is being) sent. `(report_id, kind, sequence)` is unique, so a
    given reminder goes out at most once whatever runs the scan."""

    __tablename__ = "reminder"
    __table_args__ = (
        UniqueConstraint("report_id", "kind", "sequence", name="uq_reminder_report_kind_sequence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=32)
    sequence: int = 0
    due_at: datetime
    sent_at: datetime = Field(default_factory=utcnow)
    recipient: str | None = Field(default=None, max_length=64)
    message_id: int | None = Field(default=None, foreign_key="outbox_message.id")
