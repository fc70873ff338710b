"""Webhook receivers: who gets which events, added and removed by admins, secrets sealed."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlmodel import Session, col, select

from feedbot.core import outbox
from feedbot.core.identity import Identities
from feedbot.errors import InvalidValue, NotFound
from feedbot.models import (
    AuditEntry,
    OutboxMessage,
    OutboxStatus,
    Webhook,
)

EVENTS: dict[str, str] = {
    "report.filed": "a report was filed",
    "report.acknowledged": "a leader (or a ticket system) acknowledged it",
    "report.claimed": "a leader took it on",
    "report.assigned": "a leader assigned it to someone",
    "report.replied": "leadership (or a ticket system) answered the reporter",
    "report.resolved": "it was resolved",
    "report.reopened": "it was reopened",
    "report.merged": "it was merged into another report (`report.duplicate_of`)",
    "report.customer_called": "the customer who needed a call back was called",
}
"""Every event a webhook can choose, and what it means."""

VERSION = 1


METHOD = "webhook.post"
"""Outbox method of a webhook delivery; its payload's `body` is the exact JSON sent."""


CONVERSATION = "webhook:"


PING = "ping"


_ACTION_EVENTS = {
    "acknowledged": "report.acknowledged",
    "claimed": "report.claimed",
    "assigned": "report.assigned",
    "replied": "report.replied",
    "resolved": "report.resolved",
    "reopened": "report.reopened",
    "merged": "report.merged",
    "merged_by_reporter": "report.merged",
    "customer_called": "report.customer_called",
}


MAX_URL = 2000


def event_for(action: str) -> str | None:
    """The webhook event of a triage action (`triage.Outcome.action`), if it has one."""
    return _ACTION_EVENTS.get(action)


def parse_events(raw: str | Iterable[str]) -> list[str]:
    """Event names from `report.filed,report.resolved` (or a list); `InvalidValue` names any
    unknown one. `all` means every event."""
    names = [part.strip() for part in (raw.split(",") if isinstance(raw, str) else raw)]
    names = [name for name in names if name]
    if names == ["all"]:
        return list(EVENTS)
    unknown = [name for name in names if name not in EVENTS]
    if unknown or not names:
        raise InvalidValue(
            f"Unknown event {', '.join(unknown)}; choose from {', '.join(EVENTS)} (or all)."
            if unknown
            else f"Choose at least one event: {', '.join(EVENTS)} (or all).",
            field="events",
        )
    return list(dict.fromkeys(names))


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > MAX_URL:
        raise InvalidValue("Give the receiver's address as an http(s) URL.", field="url")
    return url


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Added:
    webhook: Webhook
    secret: str
    """Shown once, to whoever added it: only its seal is stored."""


def add(
    session: Session,
    *,
    url: str,
    events: str | Iterable[str],
    identities: Identities,
    actor: str | None,
    now: datetime,
) -> Added:
    secret = new_secret()
    webhook = Webhook(
        url=check_url(url),
        events=",".join(parse_events(events)),
        secret_sealed=identities.seal(secret),
        created_at=now,
        created_by=actor,
    )
    session.add(webhook)
    session.flush()
    _audit(
        session,
        actor=actor,
        now=now,
        old=None,
        new=f"{webhook.id}: {webhook.url} [{webhook.events}]",
    )
    return Added(webhook, secret)


def _audit(
    session: Session, *, actor: str | None, now: datetime, old: str | None, new: str | None
) -> None:
    """Adding and removing webhooks is in the audit log, like every settings change."""
    session.add(AuditEntry(at=now, actor=actor, key="webhooks", old_value=old, new_value=new))


def all_webhooks(session: Session) -> list[Webhook]:
    return list(session.exec(_ALL_WEBHOOKS))


_ALL_WEBHOOKS = select(Webhook).order_by(col(Webhook.id))
"""Built once: every report asks, and building a statement costs more than running it."""


def get(session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id) if 0 < webhook_id < 2**31 else None
    if webhook is None:
        raise NotFound(f"There is no webhook {webhook_id}.", code="no_such_webhook")
    return webhook


def remove(session: Session, *, webhook_id: int, actor: str | None, now: datetime) -> Webhook:
    """Delete a webhook; events still waiting for it are given up (they show as failed)."""
    webhook = get(session, webhook_id)
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.conversation) == conversation_of(webhook),
            col(OutboxMessage.status).in_(outbox.UNFINISHED),
        )
        .values(
            status=OutboxStatus.FAILED,
            last_error="the webhook was removed",
            lease_until=None,
            sent_at=now,
        )
    )
    _audit(
        session,
        actor=actor,
        now=now,
        old=f"{webhook.id}: {webhook.url} [{webhook.events}]",
        new=None,
    )
    session.delete(webhook)
    session.flush()
    return webhook


def secret_of(webhook: Webhook, identities: Identities) -> str | None:
    """The secret; None when it was sealed with another `FEEDBOT_SECRET_KEY`."""
    return identities.open(webhook.secret_sealed)


def conversation_of(webhook: Webhook) -> str:
    return f"{CONVERSATION}{webhook.id}"


def webhook_id_of(conversation: str) -> int | None:
    raw = conversation.removeprefix(CONVERSATION)
    return int(raw) if conversation.startswith(CONVERSATION) and raw.isdigit() else None


def subscribed(webhook: Webhook, event: str) -> bool:
    return event == PING or event in webhook.events.split(",")
