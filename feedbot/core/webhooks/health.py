"""How each receiver is doing, for `feedbot outbox` and the admins."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from feedbot.core import outbox
from feedbot.core.webhooks.receivers import METHOD, all_webhooks, conversation_of
from feedbot.models import (
    OutboxMessage,
    OutboxStatus,
    Webhook,
)


@dataclass(frozen=True)
class Health:
    webhook: Webhook
    waiting: int
    failed: int
    last_error: str | None


def health(session: Session) -> list[Health]:
    """Each webhook with how many events wait for it, how many it never took, and its last
    error: what `feedbot outbox` and the admins' settings show."""
    rows = session.exec(
        select(OutboxMessage.conversation, OutboxMessage.status, func.count())
        .where(col(OutboxMessage.method) == METHOD)
        .group_by(col(OutboxMessage.conversation), col(OutboxMessage.status))
    ).all()
    counts: dict[tuple[str, str], int] = {(c, str(s)): n for c, s, n in rows}
    result = []
    for webhook in all_webhooks(session):
        conversation = conversation_of(webhook)
        last = session.exec(
            select(OutboxMessage.last_error)
            .where(
                col(OutboxMessage.conversation) == conversation,
                col(OutboxMessage.last_error).is_not(None),
            )
            .order_by(col(OutboxMessage.id).desc())
            .limit(1)
        ).first()
        waiting = sum(counts.get((conversation, str(s)), 0) for s in outbox.UNFINISHED)
        failed = counts.get((conversation, str(OutboxStatus.FAILED)), 0)
        result.append(Health(webhook, waiting, failed, last))
    return result


def describe(item: Health) -> str:
    """One line about a webhook's state, for people."""
    webhook = item.webhook
    state = "ok"
    if webhook.failing_since is not None:
        state = f"FAILING since {webhook.failing_since:%Y-%m-%d %H:%M} UTC"
        if item.last_error:
            state += f" ({item.last_error})"
    return (
        f"webhook {webhook.id} {webhook.url} [{webhook.events}]: {state}; "
        f"{item.waiting} waiting, {item.failed} given up"
    )
