"""Outgoing webhooks to ticket systems, and the signatures already seen from them."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from feedbot.models.core import utcnow


class Webhook(SQLModel, table=True):
    """A receiver of report events (a ticket system, say), which may also call back.

    Its secret signs what feedbot sends and what it receives; it is stored sealed with
    `FEEDBOT_SECRET_KEY` (see `feedbot.core.identity`), so a database dump cannot forge calls.
    """

    __tablename__ = "webhook"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    events: str = Field(max_length=500)
    """Comma-separated event names it is sent (see `feedbot.core.webhooks.EVENTS`)."""
    secret_sealed: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str | None = Field(default=None, max_length=64)
    failing_since: datetime | None = None
    """The first failed delivery since its last success; None while it works."""
    alerted_at: datetime | None = None
    """When admins were told it keeps failing (once per failing streak)."""


class WebhookNonce(SQLModel, table=True):
    """A signature of an inbound call already accepted: the same call again is a replay.

    Kept a little longer than a timestamp stays valid; older ones are refused by their age."""

    __tablename__ = "webhook_nonce"

    signature: str = Field(primary_key=True, max_length=64)
    webhook_id: int
    received_at: datetime = Field(default_factory=utcnow, index=True)
