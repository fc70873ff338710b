"""Incident groups: many similar reports in a short time, handled as one story."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from feedbot.models.core import ReportStatus, Urgency, _stored_as_value, utcnow

INCIDENT_OFFSET = 100


class IncidentGroup(SQLModel, table=True):
    """One outage as leadership sees it: one card, however many people report it.

    Its reports keep their own status; the group's status follows the triage done on its card.
    """

    __tablename__ = "incident_group"
    __table_args__ = (
        Index("ix_incident_group_ack_scan", "status", "acknowledged_at", "escalated_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    category: str = Field(max_length=100)
    example: str
    leadership_channel: str | None = Field(default=None, max_length=64)
    status: ReportStatus = Field(default=ReportStatus.OPEN, sa_type=_stored_as_value(ReportStatus))
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(default=None, max_length=64)
    resolved_at: datetime | None = None
    resolved_by: str | None = Field(default=None, max_length=64)
    resolution_note: str | None = None
    card_message_id: int | None = Field(default=None, foreign_key="outbox_message.id")
    urgency: Urgency = Field(default=Urgency.NORMAL, sa_type=_stored_as_value(Urgency))
    """Its most urgent report's: the group's response target follows it."""
    escalated_at: datetime | None = None
    """When its acknowledgement cycle escalated; ends that cycle like a report's."""
    merged_into_id: int | None = Field(default=None, foreign_key="incident_group.id")
    """Set when a leader merged this group into another; its reports moved there."""

    @property
    def reference(self) -> str:
        return f"INC-{INCIDENT_OFFSET + (self.id or 0)}"

    @property
    def merged_into_reference(self) -> str | None:
        if self.merged_into_id is None:
            return None
        return f"INC-{INCIDENT_OFFSET + self.merged_into_id}"


class IncidentReminder(SQLModel, table=True):
    """A reminder or escalation of an incident group's acknowledgement cycle.

    Its own table rather than a `reminder` row of some member report: the scan then selects
    groups by the group's own state (`ix_incident_group_ack_scan`, a handful of rows), never
    by the thousands of reports in them, and `(incident_id, kind, sequence)` is the unique
    key that makes each step go out once, as `reminder`'s key does for reports.
    """

    __tablename__ = "incident_reminder"
    __table_args__ = (
        UniqueConstraint(
            "incident_id", "kind", "sequence", name="uq_incident_reminder_incident_kind_sequence"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident_group.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=32)
    sequence: int = 0
    due_at: datetime
    sent_at: datetime = Field(default_factory=utcnow)
    recipient: str | None = Field(default=None, max_length=64)
    message_id: int | None = Field(
        default=None, foreign_key="outbox_message.id", ondelete="SET NULL"
    )
    next_due_at: datetime | None = None
