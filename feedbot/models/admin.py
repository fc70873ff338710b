"""Tables of administration: the audit log, and what feedbot knows about people."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from feedbot.models.core import utcnow


class AuditEntry(SQLModel, table=True):
    """A settings or role change: who, when, old and new value."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str | None = Field(default=None, max_length=64)
    key: str = Field(max_length=64)
    old_value: str | None = None
    new_value: str | None = None


class SlackUser(SQLModel, table=True):
    """A person's Slack locale and timezone, cached from `users.info` (shared by replicas)."""

    __tablename__ = "slack_user"

    user_id: str = Field(primary_key=True, max_length=64)
    locale: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    fetched_at: datetime = Field(default_factory=utcnow)
    home_opened_at: datetime | None = None
    """When they last opened feedbot's Home tab: only recent Homes are kept up to date."""


class RevokedToken(SQLModel, table=True):
    """A bot token Slack no longer accepts (the app was uninstalled, or the token revoked).

    Stored by fingerprint, never the token itself. Every process whose token is listed here
    stops sending and keeps its messages queued until it has a token that works."""

    __tablename__ = "revoked_token"

    fingerprint: str = Field(primary_key=True, max_length=64)
    revoked_at: datetime = Field(default_factory=utcnow)
    reason: str = Field(max_length=200)
