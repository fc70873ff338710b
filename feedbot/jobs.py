"""What the scheduler runs. Each job opens its own sessions and is idempotent per period, so
running it twice (a restart, a second replica) does no harm."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlmodel import col

from feedbot.core.conversation import prune_drafts
from feedbot.core.events import prune_events
from feedbot.db import session_scope
from feedbot.models import OutboxMessage, OutboxStatus, Report

if TYPE_CHECKING:
    from feedbot.slack.deps import Deps

log = logging.getLogger(__name__)

KEEP_DELIVERED = timedelta(days=30)


def prune(deps: Deps) -> None:
    """Forget old event ids, and delivered messages that no card, thread or edit refers to."""
    now = deps.clock()
    with session_scope(deps.engine) as session:
        events = prune_events(session, now=now)
        prune_drafts(session, now=now)
        still_needed: tuple[Any, ...] = (
            select(col(Report.card_message_id)).where(col(Report.card_message_id).is_not(None)),
            select(col(OutboxMessage.thread_of_id)).where(
                col(OutboxMessage.thread_of_id).is_not(None)
            ),
            select(col(OutboxMessage.update_of_id)).where(
                col(OutboxMessage.update_of_id).is_not(None)
            ),
        )
        result = session.execute(
            delete(OutboxMessage).where(
                col(OutboxMessage.status).in_([OutboxStatus.SENT, OutboxStatus.SUPERSEDED]),
                col(OutboxMessage.created_at) < now - KEEP_DELIVERED,
                *(col(OutboxMessage.id).not_in(query) for query in still_needed),
            )
        )
    log.info("pruned %s event ids and %s delivered messages", events, result.rowcount)  # type: ignore[attr-defined]


def purge_expired(deps: Deps) -> None:
    """Delete resolved reports older than the configured retention period, and (through the
    outbox) feedbot's copies of their files in Slack."""
    from feedbot.core.privacy import purge_expired_reports
    from feedbot.slack.files import queue_deletions

    retention_days = deps.config().retention_days
    with session_scope(deps.engine) as session:
        purged = purge_expired_reports(session, now=deps.clock(), retention_days=retention_days)
        queue_deletions(session, purged.files_to_delete, now=deps.clock())
    if purged.files_to_delete:
        deps.on_commit()  # the senders (in the workers' process, say) have deletions to send
    if purged.reports:
        log.info("purged %s reports resolved more than %s days ago", purged.reports, retention_days)


def send_due_digests(deps: Deps) -> None:
    """Send each digest whose time has come and that has not gone out: on time within a
    minute, or late after a restart. The configuration is re-read each run, so a changed
    schedule or timezone applies without a restart."""
    from feedbot.slack.features import digest

    digest.send_due(deps)


def scan_reminders(deps: Deps) -> None:
    """Send the follow-up reminders and escalations that are due now."""
    from feedbot.slack.features import reminders

    reminders.send_due(deps)
