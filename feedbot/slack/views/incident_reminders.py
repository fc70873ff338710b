"""Reminders and escalations of incident groups: in the incident card's thread, and for the
escalation channel or the admins."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from feedbot.core.incidents import GroupSummary
from feedbot.core.reminders import Kind
from feedbot.models import IncidentGroup, IncidentReminder, Urgency
from feedbot.slack.i18n import number, t
from feedbot.slack.ids import Action
from feedbot.slack.text import escape, quote, shorten
from feedbot.slack.views import Message, slack_date


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=shorten(text, 3000)))


def build_group_ack_reminder(
    group: IncidentGroup,
    *,
    reports: int,
    number_: int,
    cap: int,
    mentions: Sequence[str],
    locale: str,
) -> Message:
    """In the incident card's thread: the group waits for acknowledgement."""
    text = t(
        locale,
        "incident.reminder",
        ref=group.reference,
        urgency=t(locale, f"urgency.{group.urgency}"),
        count=number(locale, reports),
        since=slack_date(group.created_at),
        mentions=" ".join(mentions),
    )
    return Message(
        text=text,
        blocks=[
            _section(text),
            ContextBlock(
                elements=[
                    MarkdownTextObject(text=t(locale, "reminder.count", number=number_, cap=cap))
                ]
            ),
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=t(locale, "incident.acknowledge"),
                        action_id=Action.INCIDENT_ACKNOWLEDGE,
                        value=str(group.id),
                        style="primary",
                    )
                ]
            ),
        ],
    )


def build_group_escalation(
    group: IncidentGroup,
    summary: GroupSummary,
    *,
    kind: Kind,
    count: int,
    target: str,
    history: Sequence[IncidentReminder],
    locale: str,
) -> Message:
    """Why the group escalates, its facts, and the reminders that went unanswered. Like a
    report's escalation, it names nobody who reported."""
    assert kind == Kind.ACK_ESCALATION
    reports = number(locale, summary.reports)
    since = slack_date(group.created_at)
    urgency = t(locale, f"urgency.{group.urgency}")
    if group.urgency == Urgency.CRITICAL:
        reason = t(
            locale,
            "incident.escalation_critical",
            ref=group.reference,
            count=reports,
            target=target,
            since=since,
        )
    else:
        reason = t(
            locale,
            "incident.escalation_ack",
            ref=group.reference,
            urgency=urgency,
            count=reports,
            since=since,
            target=target,
            reminders=count,
        )
    locations = ", ".join(f"{quote(where, 60)} ({n})" for where, n in summary.locations)
    fields = [
        MarkdownTextObject(text=f"*{t(locale, 'card.urgency')}*\n{urgency}"),
        MarkdownTextObject(text=f"*{t(locale, 'incident.reports')}*\n{reports}"),
        MarkdownTextObject(
            text=shorten(
                f"*{t(locale, 'incident.locations')}*\n" + (locations or t(locale, "card.unknown")),
                2000,
            )
        ),
        MarkdownTextObject(text=f"*{t(locale, 'incident.since')}*\n{since}"),
    ]
    lines = "\n".join(
        t(
            locale,
            "escalation.history_line",
            when=slack_date(item.sent_at),
            what=t(locale, "reminder.count", number=index, cap=len(history)),
        )
        for index, item in enumerate(history, start=1)
        if item.kind == Kind.ACK
    )
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(
                text=shorten(
                    t(
                        locale,
                        "incident.escalation_title",
                        ref=group.reference,
                        count=reports,
                        category=group.category,
                    ),
                    150,
                )
            )
        ),
        _section(reason),
        _section(t(locale, "incident.example", text=quote(group.example, 1500))),
        SectionBlock(fields=fields),
    ]
    if lines:
        blocks.append(_section(t(locale, "escalation.history", lines=lines)))
    fallback = t(
        locale,
        "incident.escalation_title",
        ref=group.reference,
        count=reports,
        category=escape(group.category),
    )
    return Message(text=f"{fallback}\n{reason}", blocks=blocks)


def build_group_reminder_done(group: IncidentGroup, *, locale: str) -> Message:
    """What a group's reminder says once the group no longer waits."""
    text = t(
        locale,
        "incident.reminder_done",
        ref=group.reference,
        status=group_status(group, locale),
    )
    return Message(text=text, blocks=[_section(text)])


def group_status(group: IncidentGroup, locale: str) -> str:
    """A group's status in words; a merged one names the group it went into."""
    return t(locale, f"status.{group.status}", target=group.merged_into_reference or "")
