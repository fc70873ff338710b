"""Turning domain results into queued Slack messages, inside the caller's transaction.

Everything a listener, flow or job must tell Slack goes through here into the outbox, so the
message is stored with the change that caused it and delivered even if Slack is down now.
This module only queues messages: what to send after what is decided by `feedbot.slack.flows`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from feedbot.core import attachments, incidents, outbox, reports
from feedbot.core.config import RuntimeConfig
from feedbot.core.identity import SEALED_TO, SEALED_USER, Identities
from feedbot.core.triage import Notice, NoticeKind
from feedbot.db import at_commit
from feedbot.models import IncidentGroup, OutboxMessage, OutboxStatus, Report, Urgency
from feedbot.slack.views import Message
from feedbot.slack.views.incident_card import build_incident_card
from feedbot.slack.views.notices import build_notice, build_plain
from feedbot.slack.views.report_card import build_report_card, build_thread_line


def post(
    session: Session,
    *,
    conversation: str,
    message: Message,
    now: datetime,
    purpose: str,
    thread_of: outbox.Entry | None = None,
    extra: dict[str, Any] | None = None,
    on_failure: Message | None = None,
    on_failure_thread_of: outbox.Entry | None = None,
    lane: str | None = None,
    turn: datetime | None = None,
) -> outbox.Queued:
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
        lane=lane,
        turn=turn,
        now=now,
    )


POST_SPACING = timedelta(seconds=1)
"""Slack posts about one message per second to a channel: the pace cards take their turns."""


def report_lane(report: Report) -> str:
    """The outbox lane of a report's card, its edits and its thread lines: they keep their
    order among themselves, and never wait behind another report's."""
    return f"report:{report.id}"


def post_thread_reply(
    session: Session, *, channel: str, thread_ts: str, message: Message, now: datetime, purpose: str
) -> outbox.Queued:
    """A reply under a message that is not ours (an intake post): its `ts` is known already."""
    return post(
        session,
        conversation=channel,
        message=message,
        now=now,
        purpose=purpose,
        extra={"thread_ts": thread_ts},
    )


def dm(
    session: Session,
    *,
    user: str,
    message: Message,
    now: datetime,
    purpose: str,
    sealed_by: Identities | None = None,
    about: object = None,
    latest_only: bool = False,
) -> outbox.Queued:
    """A direct message to `user`. With `sealed_by`, for someone acting anonymously: stored
    under a conversation and a seal that name nobody (`about` keeps its messages apart from
    their others, e.g. a report's id); the sender opens the seal to deliver it.
    `latest_only`: it replaces such a message still waiting (one answer per press)."""
    if sealed_by is None:
        return post(session, conversation=user, message=message, now=now, purpose=purpose)
    return outbox.enqueue(
        session,
        conversation=sealed_by.conversation(about, user),
        method="chat.postMessage",
        payload=message.to_payload() | {"unfurl_links": False, SEALED_TO: sealed_by.seal(user)},
        purpose=purpose,
        replace_pending=latest_only,
        now=now,
    )


def ephemeral(
    session: Session,
    *,
    channel: str,
    user: str,
    text: str,
    now: datetime,
    sealed_by: Identities | None = None,
    about: object = None,
) -> outbox.Queued:
    """A message only `user` sees. Without a channel (a button on the Home tab) it becomes a
    direct message, the one place that person is sure to see it. `sealed_by`: the message
    says what they did anonymously (a *me too*), so it names them only through a seal; and
    it replaces their answer about the same thing still waiting: pressing *Me too* ten times
    queues one message, not ten."""
    message = build_plain(text)
    if channel[:1] in {"U", "W"}:
        return dm(
            session,
            user=user,
            message=message,
            now=now,
            purpose="ephemeral_dm",
            sealed_by=sealed_by,
            about=about,
            latest_only=sealed_by is not None,
        )
    if sealed_by is None:
        return outbox.enqueue(
            session,
            conversation=channel,
            method="chat.postEphemeral",
            payload=message.to_payload() | {"user": user},
            purpose="ephemeral",
            now=now,
        )
    return outbox.enqueue(
        session,
        conversation=channel,
        method="chat.postEphemeral",
        payload=message.to_payload() | {SEALED_USER: sealed_by.seal(user)},
        purpose="ephemeral",
        lane="tell:" + sealed_by.key("tell", about, user)[:32],
        replace_pending=True,
        now=now,
    )


def rewrite_posted(session: Session, *, message_id: int, now: datetime) -> None:
    """Show in Slack what an already posted message says now (its stored text was
    rewritten, e.g. to forget someone): an edit of it, queued like any."""
    posted = session.get(OutboxMessage, message_id)
    if posted is None:
        return
    payload = outbox.sendable(json.loads(posted.payload))
    edit: dict[str, Any] = {key: payload[key] for key in ("text", "blocks") if key in payload}
    if not edit:
        return
    outbox.enqueue(
        session,
        conversation=posted.conversation,
        method="chat.update",
        payload=edit,
        purpose="rewrite",
        update_of=posted,
        now=now,
    )


def card_entry(session: Session, report: Report) -> OutboxMessage | None:
    """The outbox entry of the report's card, whose `ts` threads and edits refer to."""
    if report.card_message_id is None:
        return None
    return session.get(OutboxMessage, report.card_message_id)


def _card(
    session: Session,
    report: Report,
    config: RuntimeConfig,
    *,
    mention: bool,
    files: attachments.FileSummary | None = None,
) -> Message:
    """The report's card; `files` when the caller knows them (a report just filed without)."""
    duplicate_of = None
    if report.duplicate_of_id is not None:
        duplicate_of = reports.get_report(session, report.duplicate_of_id).reference
    leaders = config.leaders if mention and report.urgency == Urgency.CRITICAL else None
    group = incidents.get_group(session, report.incident_id)
    return build_report_card(
        report,
        locale=config.language_of_channel(report.leadership_channel or ""),
        mention=leaders,
        duplicate_of=duplicate_of,
        files=files if files is not None else attachments.summarise(session, report.id),
        incident=group.reference if group is not None else None,
    )


def post_card(
    session: Session,
    *,
    report: Report,
    config: RuntimeConfig,
    now: datetime,
    files: attachments.FileSummary | None = None,
) -> None:
    """Put a new report in front of leadership (if a leadership channel is configured);
    `files` when known already (see `_card`)."""
    if not report.leadership_channel:
        return
    # One person's many reports take turns with everyone else's: their next card's turn is
    # one post later for each of their cards still waiting in this channel.
    same_reporter = (
        col(Report.reporter_id) == report.reporter_id
        if report.reporter_id
        else col(Report.reporter_key) == report.reporter_key
    )
    waiting = col(OutboxMessage.id).in_(
        select(Report.card_message_id).where(same_reporter, col(Report.id) != report.id)
    )
    entry = post(
        session,
        conversation=report.leadership_channel,
        message=_card(session, report, config, mention=True, files=files),
        now=now,
        purpose="card",
        lane=report_lane(report),
        turn=outbox.fair_turn(
            session,
            conversation=report.leadership_channel,
            earlier=waiting,
            now=now,
            spacing=POST_SPACING,
        ),
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
        lane=card.lane,
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
    """A line in `report`'s card thread, if its card was posted."""
    line_under(
        session,
        card=card_entry(session, report),
        config=config,
        action=action,
        actor=actor,
        detail=detail,
        now=now,
    )


def line_under(
    session: Session,
    *,
    card: OutboxMessage | None,
    config: RuntimeConfig,
    action: str,
    actor: str | None,
    detail: str | None,
    now: datetime,
) -> None:
    """A line in the thread of a report's or an incident's card, in its channel's language."""
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
        lane=card.lane,
    )


def notify(
    session: Session,
    *,
    notices: list[Notice],
    locale_for: Any,
    now: datetime,
    identities: Identities,
) -> None:
    """Direct messages for each notice, each in its reader's language; sealed for people who
    act anonymously on the report."""
    for notice in notices:
        report = reports.get_report(session, notice.report_id)
        other = (
            reports.get_report(session, notice.other_report_id) if notice.other_report_id else None
        )
        # The reporter may answer leadership from any news about their report (a merged
        # report is closed: they hear about the report it joined).
        reply = notice.kind != NoticeKind.MERGED and reports.is_reporter(
            report, notice.user_id, identities
        )
        message = build_notice(
            notice, locale=locale_for(notice.user_id), report=report, other=other, reply=reply
        )
        dm(
            session,
            user=notice.user_id,
            message=message,
            now=now,
            purpose=f"notice_{notice.kind}",
            sealed_by=identities if notice.anonymous else None,
            about=notice.report_id,
        )


# --------------------------------------------------------------------------- incident groups


def _group_card(session: Session, group: IncidentGroup, config: RuntimeConfig) -> dict[str, Any]:
    locale = config.language_of_channel(group.leadership_channel or "")
    return build_incident_card(
        group, incidents.summarise(session, group), locale=locale
    ).to_payload()


def group_card_entry(session: Session, group: IncidentGroup) -> OutboxMessage | None:
    """The outbox entry of an incident group's card."""
    if group.card_message_id is None:
        return None
    return session.get(OutboxMessage, group.card_message_id)


def post_group_card(
    session: Session, *, group: IncidentGroup, config: RuntimeConfig, now: datetime
) -> None:
    """The one card of a new incident group, in its leadership channel."""
    if not group.leadership_channel:
        return
    entry = outbox.enqueue(
        session,
        conversation=group.leadership_channel,
        method="chat.postMessage",
        payload=_group_card(session, group, config) | {"unfurl_links": False},
        purpose="incident_card",
        now=now,
    )
    group.card_message_id = entry.id
    session.add(group)


def refresh_group_card(
    session: Session, *, group: IncidentGroup, config: RuntimeConfig, now: datetime
) -> None:
    """Queue an update of the group's card, drawn when it is sent (`render_at_send`): in a
    burst every new member would redraw it, and only the last drawing is ever sent. An
    update still waiting shows this change too when it goes, so none is added then.

    Done as the transaction commits (`at_commit`): the waiting update is locked from then on
    until it ends (`outbox.waiting_edit`), and every report of a burst needs it. Locked
    earlier, the reports took turns for everything their transactions did after it. Locked
    at the commit in every transaction, with the other rows locked then (the waiting Homes,
    `homes.publish_home`) in one order, it is never locked before a row another one holds."""
    at_commit(
        session,
        ("group card", group.id),
        lambda: _refresh_group_card_now(session, group=group, config=config, now=now),
    )


def _refresh_group_card_now(
    session: Session, *, group: IncidentGroup, config: RuntimeConfig, now: datetime
) -> None:
    if group.card_message_id is None or outbox.waiting_edit(
        session, of_id=group.card_message_id, method="chat.update", purpose=GROUP_CARD_UPDATE
    ):
        return  # (in a burst, usually: the card itself is then not even loaded)
    card = group_card_entry(session, group)
    if card is None:
        return
    outbox.enqueue(
        session,
        conversation=card.conversation,
        method="chat.update",
        payload={
            GROUP_CARD_OF: group.id,
            GROUP_CARD_LOCALE: config.language_of_channel(group.leadership_channel or ""),
        },
        purpose=GROUP_CARD_UPDATE,
        update_of=card,
        now=now,
    )


GROUP_CARD_UPDATE = "incident_card_update"
GROUP_CARD_OF = "_incident_card_of"
GROUP_CARD_LOCALE = "_incident_card_locale"
"""Payload keys of a card update drawn when it is sent: the group, and the card's language."""


def render_at_send(session: Session, stored: dict[str, Any]) -> dict[str, Any] | None:
    """The message of an outbox entry drawn when it is sent; None when its subject is gone.
    Entries with their message already in the payload are returned as they are."""
    if GROUP_CARD_OF not in stored:
        return stored
    group = incidents.get_group(session, stored[GROUP_CARD_OF])
    if group is None:
        return None
    card = build_incident_card(
        group, incidents.summarise(session, group), locale=stored.get(GROUP_CARD_LOCALE, "en")
    )
    return card.to_payload()


# --------------------------------------------------------------------------- other calls


def edit_sent(
    session: Session, *, message: OutboxMessage, edit: Message, now: datetime, purpose: str
) -> None:
    """Replace a message in Slack: one that went out or is going (never one withdrawn
    before it went out)."""
    session.refresh(message)
    if message.status not in (OutboxStatus.SENT, OutboxStatus.SENDING):
        return
    outbox.enqueue(
        session,
        conversation=message.conversation,
        method="chat.update",
        payload=edit.to_payload(),
        purpose=purpose,
        update_of=message,
        now=now,
    )


def ephemeral_message(
    session: Session, *, channel: str, user: str, message: Message, now: datetime, purpose: str
) -> outbox.Queued:
    """A message with blocks only `user` sees in `channel` (a date picker, say)."""
    return outbox.enqueue(
        session,
        conversation=channel,
        method="chat.postEphemeral",
        payload=message.to_payload() | {"user": user},
        purpose=purpose,
        now=now,
    )


def publish(
    session: Session,
    *,
    address: str,
    payload: dict[str, Any],
    now: datetime,
    due: datetime | None = None,
) -> None:
    """A Home tab (`views.publish`), due `now` or at `due`, replacing an older one for the
    same person still waiting; `address` is the outbox conversation that stands for them."""
    outbox.enqueue(
        session,
        conversation=address,
        method="views.publish",
        payload=payload,
        purpose="home",
        replace_pending=True,
        due=due,
        now=now,
    )
