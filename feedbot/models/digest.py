"""Tables of the weekly digests, and the indexes on `report` that the digest queries need."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from feedbot.models.core import Report, utcnow


class DigestRun(SQLModel, table=True):
    """One digest for one channel and one period. The unique key makes it happen once, across
    restarts and replicas: whoever inserts the row sends the digest (through the outbox, in
    the same transaction)."""

    __tablename__ = "digest_run"
    __table_args__ = (UniqueConstraint("kind", "channel", "period", name="uq_digest_run_period"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    channel: str = Field(max_length=64)
    period: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    late: bool = False
    forced: bool = False


class DigestSubscription(SQLModel, table=True):
    """Since when a channel gets a kind of digest. No digest ever covers a week that ended
    before then: a fresh install does not open with an empty "late" digest of last week."""

    __tablename__ = "digest_subscription"

    kind: str = Field(primary_key=True, max_length=32)
    channel: str = Field(primary_key=True, max_length=64)
    since: datetime


# The digest counts and percentiles per week read ranges of these columns; without them a
# weekly digest would scan every report ever filed. Each also holds the columns its queries
# read, so they are answered from the index alone. Declared here, on the `report` table,
# so the digest feature owns them (migration 0002).
_report = Report.__table__  # type: ignore[attr-defined]
REPORT_DIGEST_INDEXES = (
    Index(
        "ix_report_acknowledged_at",
        _report.c.acknowledged_at,
        _report.c.status,
        _report.c.created_at,
    ),
    # With the incident group: reports in a group are counted through it, so the counts of
    # reports outside groups also read `incident_id` (migrations 0017 and 0018).
    Index(
        "ix_report_status_resolved_incident",
        _report.c.status,
        _report.c.resolved_at,
        _report.c.created_at,
        _report.c.incident_id,
    ),
    Index(
        "ix_report_status_urgency_created_incident",
        _report.c.status,
        _report.c.urgency,
        _report.c.created_at,
        _report.c.incident_id,
    ),
    Index(
        "ix_report_status_created_category_incident",
        _report.c.status,
        _report.c.created_at,
        _report.c.category,
        _report.c.incident_id,
    ),
)
