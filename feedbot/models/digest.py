"""Tables of the weekly digests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from feedbot.models.core import utcnow


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
