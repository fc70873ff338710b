"""The core tables. Every timestamp is timezone-aware UTC (SQLModel's `UTCDateTime`).

The naming convention is set before any table is declared so Alembic's batch mode on SQLite
can address constraints by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Enum, Index, MetaData, UniqueConstraint
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata

REFERENCE_OFFSET = 1000
"""Report #1 is FB-1001: short, but never looks like a test value."""


def utcnow() -> datetime:
    return datetime.now(UTC)


# Enumerations are stored as their string values in plain VARCHAR columns (not database enum
# types, no CHECK constraint) so that adding a member never needs a migration.


class Urgency(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class ReportStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    DUPLICATE = "duplicate"


class ReportSource(StrEnum):
    MODAL = "modal"
    COMMAND = "command"
    SHORTCUT = "shortcut"
    DIRECT_MESSAGE = "direct_message"
    INTAKE_CHANNEL = "intake_channel"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


def _stored_as_value(enum: type[StrEnum]) -> Enum:
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


class ConfigEntry(SQLModel, table=True):
    """One runtime setting, JSON-encoded; absent keys take their documented default."""

    __tablename__ = "config_entry"

    key: str = Field(primary_key=True, max_length=64)
    value: str
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str | None = Field(default=None, max_length=64)


class ProcessedEvent(SQLModel, table=True):
    """Slack `event_id`s already taken, so a retry reaching any replica is handled once."""

    __tablename__ = "processed_event"

    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = Field(default_factory=utcnow, index=True)


class OutboxMessage(SQLModel, table=True):
    """A Web API call the bot owes Slack, written in the transaction that caused it.

    `conversation` and `lane` are the ordering key: entries of one conversation and lane are
    delivered in id order; lanes of one conversation are independent of each other (a
    report's card, its edits and its thread lines share a lane, so one person's many reports
    cannot hold up a colleague's; entries without a lane share the conversation's own).
    `thread_of_id` / `update_of_id` point at an earlier entry whose Slack `ts` this one needs
    (a reply in its thread, or an edit of it); the sender fills that in at delivery time.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_message_due", "status", "next_attempt_at"),
        Index("ix_outbox_message_conversation", "status", "conversation", "lane", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation: str = Field(max_length=64)
    lane: str | None = Field(default=None, max_length=64)
    method: str = Field(max_length=64)
    payload: str
    purpose: str = Field(default="", max_length=64)
    status: OutboxStatus = Field(
        default=OutboxStatus.PENDING, sa_type=_stored_as_value(OutboxStatus)
    )
    attempts: int = 0
    uncertain: bool = False
    """Set when an attempt may have reached Slack without us learning its outcome."""
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    turn: datetime | None = None
    """Where it stands among the entries due at once (else its `next_attempt_at`): one
    sender's many entries get later turns, so a colleague's goes between them."""
    lease_until: datetime | None = None
    claimed_by: str | None = Field(default=None, max_length=32)
    """The process that holds the claim (`feedbot.core.liveness`): once it is known to be
    dead, its claim is taken over soon after its call began (`feedbot.core.liveness`)
    instead of when the lease runs out."""
    may_land_until: datetime | None = None
    """Set when a dead sender's post is taken over before its call could time out: until
    then that call may still land, so the post sent again is looked for once more at that
    moment (`feedbot.slack.web_api.REMOVE_COPIES`)."""
    sent_at: datetime | None = None
    last_error: str | None = None
    result_channel: str | None = Field(default=None, max_length=64)
    result_ts: str | None = Field(default=None, max_length=32)
    thread_of_id: int | None = Field(default=None, foreign_key="outbox_message.id")
    update_of_id: int | None = Field(default=None, foreign_key="outbox_message.id", index=True)


class Report(SQLModel, table=True):
    """One problem reported by one person (plus everyone who later said *me too*)."""

    __tablename__ = "report"
    __table_args__ = (
        UniqueConstraint("source_channel", "source_ts", name="uq_report_source_message"),
        Index("ix_report_status_created", "status", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    source: ReportSource = Field(sa_type=_stored_as_value(ReportSource))
    reporter_id: str | None = Field(default=None, max_length=64, index=True)
    """The reporter, for named reports only (see `feedbot.core.identity`)."""
    reporter_sealed: str | None = Field(default=None, max_length=255)
    """An anonymous reporter, encrypted: only feedbot opens it, to tell them the news."""
    reporter_key: str | None = Field(default=None, max_length=64, index=True)
    """Lets an anonymous reporter find their own reports; names nobody without the secret."""
    anonymous: bool = False
    text: str
    category: str = Field(max_length=100, index=True)
    location: str | None = Field(default=None, max_length=200, index=True)
    urgency: Urgency = Field(default=Urgency.NORMAL, sa_type=_stored_as_value(Urgency))
    customers_affected: int | None = None
    callback_requested: bool = False
    customer_contact: str | None = Field(default=None, max_length=500)
    customer_called_at: datetime | None = None
    status: ReportStatus = Field(default=ReportStatus.OPEN, sa_type=_stored_as_value(ReportStatus))
    owner_id: str | None = Field(default=None, max_length=64, index=True)
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(default=None, max_length=64)
    resolved_at: datetime | None = Field(default=None, index=True)
    resolved_by: str | None = Field(default=None, max_length=64)
    resolution_note: str | None = None
    solution_shared: bool = False
    """The leader who resolved it let colleagues see the resolution (suggestions, "you said,
    we did"); never for a confidential category."""
    duplicate_of_id: int | None = Field(default=None, foreign_key="report.id", index=True)
    me_too_count: int = 0
    source_channel: str | None = Field(default=None, max_length=64)
    source_ts: str | None = Field(default=None, max_length=32)
    source_permalink: str | None = Field(default=None, max_length=500)
    leadership_channel: str | None = Field(default=None, max_length=64)
    card_message_id: int | None = Field(default=None, foreign_key="outbox_message.id")
    incident_id: int | None = Field(
        default=None, foreign_key="incident_group.id", index=True, ondelete="SET NULL"
    )
    follow_up_at: datetime | None = Field(default=None, index=True)
    snoozed_until: datetime | None = None
    escalated_at: datetime | None = None

    @property
    def reference(self) -> str:
        return f"FB-{REFERENCE_OFFSET + (self.id or 0)}"


class MeToo(SQLModel, table=True):
    """A colleague who has the same problem, or the reporter of a report merged into this one.

    Saying *me too* is anonymous: who said it is stored only sealed, and `user_key` (which
    means something only with the secret, and only for this report) keeps it to once."""

    __tablename__ = "me_too"
    __table_args__ = (UniqueConstraint("report_id", "user_key", name="uq_me_too_report_user_key"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", ondelete="CASCADE")
    user_sealed: str = Field(max_length=255)
    user_key: str = Field(max_length=64)
    merged_from_id: int | None = Field(default=None, foreign_key="report.id")
    created_at: datetime = Field(default_factory=utcnow)


class TimelineEntry(SQLModel, table=True):
    """Who did what to a report, when: the audit trail leaders and reporters can trust."""

    __tablename__ = "timeline_entry"

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", index=True, ondelete="CASCADE")
    at: datetime = Field(default_factory=utcnow)
    actor_id: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=32)
    detail: str | None = None


class ReportTerm(SQLModel, table=True):
    """The normalised words of a report, indexed so similar reports are found without a scan."""

    __tablename__ = "report_term"
    __table_args__ = (Index("ix_report_term_term", "term", "report_id"),)

    report_id: int = Field(foreign_key="report.id", primary_key=True, ondelete="CASCADE")
    term: str = Field(primary_key=True, max_length=40)


class DmDraft(SQLModel, table=True):
    """A direct message that could belong to one of its author's recent reports, kept until
    they say whether it is a new report or an answer about that one (see
    `feedbot.core.conversation`). Its author and where it was written are stored only sealed,
    since the answer may go to an anonymous report."""

    __tablename__ = "dm_draft"

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(max_length=64, index=True)
    user_sealed: str = Field(max_length=255)
    origin_sealed: str = Field(max_length=500)
    """The message's channel and ts, to file it as a report if it is one."""
    text: str
    files_sealed: str | None = None
    """The files the message carried (JSON, sealed like its origin), to go with it."""
    created_at: datetime = Field(default_factory=utcnow, index=True)
