"""Tables of follow-up reminders and escalations, and the indexes the reminder scan needs.

The scan runs every minute over every open report, so its three candidate queries (waiting
for acknowledgement, follow-up date passed, customer call-back pending) each get an index on
`report` here, next to the code that needs them rather than in the report model.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel, col

from feedbot.models.core import Report, utcnow


class Reminder(SQLModel, table=True):
    """A reminder that was (or is being) sent. `(report_id, kind, sequence)` is unique, so a
    given reminder goes out at most once whatever runs the scan."""

    __tablename__ = "reminder"
    __table_args__ = (
        UniqueConstraint("report_id", "kind", "sequence", name="uq_reminder_report_kind_sequence"),
        Index("ix_reminder_next_due", "report_id", "kind", "next_due_at"),
        Index("ix_reminder_pending", "kind", "next_due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=32)
    sequence: int = 0
    due_at: datetime
    sent_at: datetime = Field(default_factory=utcnow)
    recipient: str | None = Field(default=None, max_length=64)
    message_id: int | None = Field(
        default=None, foreign_key="outbox_message.id", ondelete="SET NULL"
    )
    """The first message it queued (the only one, except an escalation to several admins)."""
    next_due_at: datetime | None = None
    """When the step after this one is due: one interval of working time after it went out,
    in its recipient's timezone, worked out once here so the scan can select by it."""


class ReminderMessage(SQLModel, table=True):
    """Every message a reminder queued, so each can be withdrawn while it waits in the outbox
    or edited once the report is resolved. Pruning an old outbox entry drops its row here."""

    __tablename__ = "reminder_message"

    reminder_id: int = Field(foreign_key="reminder.id", primary_key=True, ondelete="CASCADE")
    message_id: int = Field(foreign_key="outbox_message.id", primary_key=True, ondelete="CASCADE")


# The scan's candidate queries (`feedbot.core.reminders`). Each leads with the columns it
# compares for equality and carries the ones it filters on, so a report that is not due is
# passed over inside the index.
Index(
    "ix_report_ack_scan",
    col(Report.status),
    col(Report.acknowledged_at),
    col(Report.escalated_at),
    col(Report.created_at),
)
# The follow-up scan's index also holds the incident group, last: the digest counts the
# overdue follow-ups of reports outside groups from it alone (migration 0018).
Index(
    "ix_report_follow_up_scan_incident",
    col(Report.status),
    col(Report.follow_up_at),
    col(Report.escalated_at),
    col(Report.snoozed_until),
    col(Report.owner_id),
    col(Report.incident_id),
)
Index(
    "ix_report_callback_scan",
    col(Report.callback_requested),
    col(Report.customer_called_at),
    col(Report.status),
    col(Report.owner_id),
    col(Report.snoozed_until),
)
