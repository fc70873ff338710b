"""A report's photos and files: what the reporter sent, and feedbot's copy for leadership."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from feedbot.models.core import _stored_as_value, utcnow


class AttachmentState(StrEnum):
    PENDING = "pending"
    """Accepted; feedbot's copy is still to be made."""
    COPIED = "copied"
    """feedbot's copy is in the card's thread."""
    UNFETCHABLE = "unfetchable"
    """Slack would not give feedbot the file (deleted, no access); the thread says so."""
    REFUSED = "refused"
    """Over a limit or of a type feedbot does not take; never fetched."""


class Attachment(SQLModel, table=True):
    """One file of a report. The reporter's original stays where they sent it, untouched;
    leaders see `copy_file_id`, a copy feedbot uploaded itself (images without metadata)."""

    __tablename__ = "attachment"
    __table_args__ = (UniqueConstraint("report_id", "file_id", name="uq_attachment_report_file"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", index=True, ondelete="CASCADE")
    file_id: str = Field(max_length=64)
    """The Slack id of the reporter's original."""
    name: str = Field(max_length=255)
    mimetype: str = Field(max_length=128)
    size: int
    state: AttachmentState = Field(
        default=AttachmentState.PENDING, sa_type=_stored_as_value(AttachmentState)
    )
    reason: str | None = Field(default=None, max_length=64)
    """Why it was refused or could not be fetched (`too_large`, `type`, `file_not_found`...)."""
    copy_file_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    copied_at: datetime | None = None

    @property
    def is_image(self) -> bool:
        return self.mimetype.startswith("image/")
