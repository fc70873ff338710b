"""Turning domain results into queued Slack messages, inside the caller's transaction.

Everything a listener or job must tell Slack goes through here into the outbox, so the
message is stored with the change that caused it and delivered even if Slack is down now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from feedbot.core import outbox, reports
from feedbot.core.config import RuntimeConfig
from feedbot.core.triage import Notice, Outcome
from feedbot.models import OutboxMessage, Report, Urgency
from feedbot.slack.views import Message
from feedbot.slack.views.notices import build_notice, build_plain
from feedbot.slack.views.report_card import build_report_card, build_thread_line


def post(
    session: Session,
    *,
    conversation: str,
    message: Message,
    now: datetime,
    purpose: str,
    thread_of: OutboxMessage | None = None,
    extra: dict[str, Any] | None = None,
    on_failure: Message | None = None,
    on_failure_thread_of: OutboxMessage | None = None,
) -> OutboxMessage:
    """Queue a message; `on_failure` is posted under `on_failure_thread_of` (or in the same
    conversation) if Slack refuses it for good, `{error}` in it replaced by Slack's answer."""
    payload = message.to_payload() | (extra or {}) | {"unfurl_links": False}
    return outbox.enqueue(
        session,
        conversation=conversation,
        method="chat.postMessage",
        payload=payload,
        purpose=purpose,
        thread_of=thread_of,
        on_failure=on_failure.to_payload() if on_failure else None,
        on_failure_thread_of=on_failure_thread_of,
        now=now,
    )


def post_thread_reply(
    session: Session, *, channel: str, thread_ts: str, message: Message, now: datetime, purpose: str
) -> OutboxMessage:
    """A reply under a message that is not ours (an intake post): its `ts` is known already."""
    return post(
        session,
        conversation=channel,
        message=message,
        now=now,
        purpose=purpose,
        extra={"thread_ts": thread_ts},
    )


def ephemeral(
    session: Session, *, channel: str, user: str, text: str, now: datetime
) -> OutboxMessage:
    """A message only `user` sees. Without a channel (a button on the Home tab) it becomes a
    direct message, the one place that person is sure to see it."""
    message = build_plain(text)
    if channel[:1] in {"U", "W"}:
        return post(session, conversation=user, message=message, now=now, purpose="ephemeral_dm")
    return outbox.enqueue(
        session,
        conversation=channel,
        method="chat.postEphemeral",
        payload=message.to_payload() | {"user": user},
        purpose="ephemeral",
        now=now,
    )


def card_entry(session: Session, report: Report) -> OutboxMessage | None:
    """The outbox entry of the report's card, whose `ts` threads and edits refer to."""
    if report.card_message_id is None:
        return None
    return session.get(OutboxMessage, report.card_message_id)


def _card(session: Session, report: Report, config: RuntimeConfig, *, mention: bool) -> Message:
    duplicate_of = None
    if report.duplicate_of_id is not None:
        duplicate_of = reports.get_report(session, report.duplicate_of_id).reference
    leaders = config.leaders if mention and report.urgency == Urgency.CRITICAL else None
    return build_report_card(
        report,
        locale=config.language_of_channel(report.leadership_channel or ""),
        mention=leaders,
        duplicate_of=duplicate_of,
    )


def post_card(session: Session, *, report: Report, config: RuntimeConfig, now: datetime) -> None:
    """Put a new report in front of leadership (if a leadership channel is configured)."""
    if not report.leadership_channel:
        return
    entry = post(
        session,
        conversation=report.leadership_channel,
        message=_card(session, report, config, mention=True),
        now=now,
        purpose="card",
    )
    report.card_message_id = entry.id
    session.add(report)


def refresh_card(session: Session, *, report: Report, config: RuntimeConfig, now: datetime) -> None:
    """Show the report's current state on its card (an edit, queued behind the post)."""
    card = card_entry(session, report)
    if card is None:
        return
    outbox.enqueue(
        session,
        conversation=card.conversation,
        method="chat.update",
        payload=_card(session, report, config, mention=True).to_payload(),
        purpose="card_update",
        update_of=card,
        now=now,
    )


def thread_line(
    session: Session,
    *,
    report: Report,
    config: RuntimeConfig,
    action: str,
    actor: str | None,
    detail: str | None,
    now: datetime,
) -> None:
    card = card_entry(session, report)
    if card is None:
        return
    locale = config.language_of_channel(card.conversation)
    message = build_thread_line(locale=locale, action=action, actor=actor, detail=detail)
    post(
        session,
        conversation=card.conversation,
        message=message,
        now=now,
        purpose="thread_line",
        thread_of=card,
    )


def notify(
    session: Session,
    *,
    notices: list[Notice],
    locale_for: Any,
    now: datetime,
) -> None:
    """Direct messages for each notice, each in its reader's language."""
    for notice in notices:
        report = reports.get_report(session, notice.report_id)
        other = (
            reports.get_report(session, notice.other_report_id) if notice.other_report_id else None
        )
        message = build_notice(
            notice, locale=locale_for(notice.user_id), report=report, other=other
        )
        post(
            session,
            conversation=notice.user_id,
            message=message,
            now=now,
            purpose=f"notice_{notice.kind}",
        )


def apply_outcome(
    session: Session,
    *,
    outcome: Outcome,
    config: RuntimeConfig,
    locale_for: Any,
    now: datetime,
    timezone_for: Any = None,
) -> None:
    """After a triage action: the card shows it, its thread records it, people are told, and
    reminders follow (see `features.reminders.on_outcome`; `timezone_for` gives a new owner's
    working hours, else the workspace's apply)."""
    # Imported here: that module queues its own messages through this one.
    from feedbot.slack.features import reminders

    report = outcome.report
    refresh_card(session, report=report, config=config, now=now)
    thread_line(
        session,
        report=report,
        config=config,
        action=outcome.action,
        actor=outcome.actor,
        detail=outcome.detail,
        now=now,
    )
    notify(session, notices=outcome.notices, locale_for=locale_for, now=now)
    reminders.on_outcome(
        session,
        outcome=outcome,
        config=config,
        locale_for=locale_for,
        timezone_for=timezone_for,
        now=now,
    )
