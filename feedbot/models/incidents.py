"""Incident groups: many similar reports in a short time, handled as one story."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from feedbot.models.core import ReportStatus, _stored_as_value, utcnow

INCIDENT_OFFSET = 100


class IncidentGroup(SQLModel, table=True):
    """One outage as leadership sees it: one card, however many people report it.

    Its reports keep their own status; the group's status follows the triage done on its card.
    """

    __tablename__ = "incident_group"

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

    @property
    def reference(self) -> str:
        return f"INC-{INCIDENT_OFFSET + (self.id or 0)}"
