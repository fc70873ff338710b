"""Reminders, escalations and the follow-up date picker, as Block Kit.

Buttons reuse the triage actions where they do the same thing (Acknowledge, Claim, Done =
Resolve, Customer called, Show contact), so there is one listener for each. Snooze and Hand
over carry the report and reminder in their block id (`reminder-<report>-<reminder>`), since
selects have no value of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DatePickerElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from feedbot.core.reminders import HistoryItem, Kind, SnoozeChoice
from feedbot.models import Report
from feedbot.slack import codecs
from feedbot.slack.i18n import has, t
from feedbot.slack.ids import INPUT, Action, Callback, Field
from feedbot.slack.text import escape, quote, shorten
from feedbot.slack.views import Message, slack_date
from feedbot.slack.views.report_card import reporter_label, status_label

REMINDER_BLOCK = "reminder"
FOLLOW_UP_BLOCK = "follow-up"
TEXT_LIMIT = 600


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _button(
    locale: str, key: str, action: Action, report: Report, style: str | None = None
) -> ButtonElement:
    return ButtonElement(
        text=t(locale, key), action_id=action, value=codecs.REPORT.encode(report.id), style=style
    )


def reminder_block_id(report_id: int, reminder_id: int) -> str:
    return f"{REMINDER_BLOCK}-{report_id}-{reminder_id}"


def parse_reminder_block(block_id: str) -> tuple[int, int] | None:
    """The (report id, reminder id) a Snooze or Hand over element belongs to."""
    prefix, _, rest = block_id.partition("-")
    report, _, reminder = rest.partition("-")
    report_id, reminder_id = codecs.positive_id(report), codecs.positive_id(reminder)
    if prefix != REMINDER_BLOCK or report_id is None or reminder_id is None:
        return None
    return report_id, reminder_id


def parse_follow_up_block(block_id: str) -> int | None:
    prefix, _, report = block_id.rpartition("-")
    return codecs.positive_id(report) if prefix == FOLLOW_UP_BLOCK else None


def _count(locale: str, number: int, cap: int | None) -> ContextBlock:
    if cap is None:
        return _context(t(locale, "reminder.count_open", number=number))
    return _context(t(locale, "reminder.count", number=number, cap=cap))


def _owner_actions(
    report: Report, *, reminder_id: int, locale: str, first: list[ButtonElement]
) -> ActionsBlock:
    assert report.id is not None
    snooze = StaticSelectElement(
        action_id=Action.SNOOZE,
        placeholder=t(locale, "button.snooze"),
        options=[
            Option(value=choice.value, label=t(locale, f"snooze.{choice.value}"))
            for choice in SnoozeChoice
        ],
    )
    hand_over = UserSelectElement(
        action_id=Action.HAND_OVER, placeholder=t(locale, "button.hand_over")
    )
    return ActionsBlock(
        block_id=reminder_block_id(report.id, reminder_id),
        elements=[*first, snooze, hand_over],
    )


def build_ack_reminder(
    report: Report, *, number: int, cap: int, mentions: Sequence[str], locale: str
) -> Message:
    """In the card's thread: the report waits for acknowledgement; the leaders are named."""
    text = t(
        locale,
        "reminder.ack",
        ref=report.reference,
        urgency=t(locale, f"urgency.{report.urgency}"),
        since=slack_date(report.created_at),
        mentions=" ".join(mentions),
    )
    return Message(
        text=text,
        blocks=[
            _section(text),
            _count(locale, number, cap),
            ActionsBlock(
                elements=[
                    _button(locale, "button.acknowledge", Action.ACKNOWLEDGE, report, "primary"),
                    _button(locale, "button.claim", Action.CLAIM, report),
                ]
            ),
        ],
    )


def build_follow_up_reminder(
    report: Report, *, reminder_id: int, number: int, cap: int, locale: str
) -> Message:
    """The owner's direct message on the follow-up date: Done, Snooze, Hand over."""
    headline = t(
        locale,
        "reminder.follow_up",
        ref=report.reference,
        category=escape(report.category),
        urgency=t(locale, f"urgency.{report.urgency}"),
    )
    due = t(
        locale, "reminder.follow_up_due", when=slack_date(report.follow_up_at or report.created_at)
    )
    return Message(
        text=headline,
        blocks=[
            _section(f"{headline}\n{quote(report.text, TEXT_LIMIT)}"),
            _context(f"{due} {t(locale, 'reminder.count', number=number, cap=cap)}"),
            _owner_actions(
                report,
                reminder_id=reminder_id,
                locale=locale,
                first=[_button(locale, "button.done", Action.RESOLVE, report, "primary")],
            ),
        ],
    )


def build_callback_reminder(
    report: Report, *, reminder_id: int, number: int, locale: str
) -> Message:
    """The owner's direct message while the customer waits for a call back."""
    headline = t(
        locale, "reminder.callback", ref=report.reference, category=escape(report.category)
    )
    first = [_button(locale, "button.called", Action.CUSTOMER_CALLED, report, "primary")]
    if report.customer_contact:
        first.append(_button(locale, "button.reveal", Action.REVEAL_CONTACT, report))
    return Message(
        text=headline,
        blocks=[
            _section(f"{headline}\n{quote(report.text, TEXT_LIMIT)}"),
            _context(
                f"{t(locale, 'reminder.callback_hint')} "
                f"{t(locale, 'reminder.count_open', number=number)}"
            ),
            _owner_actions(report, reminder_id=reminder_id, locale=locale, first=first),
        ],
    )


def build_note(text: str) -> Message:
    """What a reminder becomes once it is settled (resolved, snoozed, handed over): the
    news, without buttons that no longer apply."""
    return Message(text=text, blocks=[_section(text)])


def _history_line(item: HistoryItem, locale: str) -> str:
    key = f"history.{item.action}"
    if has(key):
        what = t(locale, key, detail=escape(item.detail or ""), number=item.number or "")
    else:
        what = t(locale, "history.other", action=escape(item.action))
    return t(locale, "escalation.history_line", when=slack_date(item.at), what=what)


def build_escalation(
    report: Report,
    *,
    kind: Kind,
    count: int,
    target: str,
    history: Sequence[HistoryItem],
    locale: str,
) -> Message:
    """For the escalation channel or the admins: why, the report's facts, and its history."""
    category = escape(report.category)
    urgency = t(locale, f"urgency.{report.urgency}")
    since = slack_date(report.created_at)
    if kind == Kind.FOLLOW_UP_ESCALATION:
        reason = t(
            locale,
            "escalation.follow_up",
            ref=report.reference,
            owner=report.owner_id or "",
            when=slack_date(report.follow_up_at or report.created_at),
            count=count,
        )
    elif report.urgency == "critical":
        reason = t(locale, "escalation.critical", ref=report.reference, target=target, since=since)
    else:
        reason = t(
            locale,
            "escalation.ack",
            ref=report.reference,
            urgency=urgency,
            since=since,
            target=target,
            count=count,
        )
    owner = f"<@{report.owner_id}>" if report.owner_id else t(locale, "card.nobody")
    fields = [
        MarkdownTextObject(text=f"*{t(locale, 'card.urgency')}*\n{urgency}"),
        MarkdownTextObject(
            text=f"*{t(locale, 'card.location')}*\n"
            + (quote(report.location, 300) if report.location else t(locale, "card.unknown"))
        ),
        MarkdownTextObject(
            text=f"*{t(locale, 'card.reporter')}*\n{reporter_label(report, locale)}"
        ),
        MarkdownTextObject(text=f"*{t(locale, 'card.status')}*\n{status_label(report, locale)}"),
        MarkdownTextObject(text=f"*{t(locale, 'card.owner')}*\n{owner}"),
        MarkdownTextObject(text=f"*{t(locale, 'card.reported')}*\n{since}"),
    ]
    lines = "\n".join(_history_line(item, locale) for item in history)
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(
                text=shorten(
                    t(locale, "escalation.title", ref=report.reference, category=report.category),
                    150,
                )
            )
        ),
        _section(reason),
        _section(quote(report.text, 1500)),
        SectionBlock(fields=fields),
    ]
    if lines:
        blocks.append(_section(shorten(t(locale, "escalation.history", lines=lines), 3000)))
    fallback = t(locale, "escalation.fallback", ref=report.reference, category=category)
    return Message(text=f"{fallback}\n{reason}", blocks=blocks)


def build_follow_up_prompt(report: Report, *, locale: str, initial: date) -> Message:
    """After a claim, to the new owner only: pick a follow-up date right there."""
    assert report.id is not None
    text = t(locale, "follow_up.prompt", ref=report.reference)
    picker = DatePickerElement(
        action_id=Action.FOLLOW_UP_PICK,
        initial_date=initial.isoformat(),
        placeholder=t(locale, "follow_up.pick"),
    )
    return Message(
        text=text,
        blocks=[
            SectionBlock(
                block_id=f"{FOLLOW_UP_BLOCK}-{report.id}",
                text=MarkdownTextObject(text=text),
                accessory=picker,
            )
        ],
    )


def build_follow_up_form(report: Report, *, locale: str, initial: date) -> View:
    """The modal behind the card's *Follow up* button."""
    return View(
        type="modal",
        callback_id=Callback.FOLLOW_UP_FORM,
        title=t(locale, "follow_up.title"),
        submit=t(locale, "form.submit"),
        close=t(locale, "form.close"),
        private_metadata=codecs.REPORT_FORM.encode(report.id),
        blocks=[
            InputBlock(
                block_id=Field.FOLLOW_UP_DATE,
                label=t(locale, "follow_up.label", ref=report.reference),
                hint=t(locale, "follow_up.hint"),
                element=DatePickerElement(action_id=INPUT, initial_date=initial.isoformat()),
            )
        ],
    )


def read_follow_up_form(values: dict[str, object]) -> str:
    state = values.get(Field.FOLLOW_UP_DATE) or {}
    value = state.get(INPUT, {}) if isinstance(state, dict) else {}
    return str(value.get("selected_date") or "") if isinstance(value, dict) else ""


def build_my_follow_ups(reports: Sequence[Report], *, locale: str, now: datetime) -> list[Block]:
    """The leader's part of `/feedback mine`: follow-ups and owed call backs (callers keep
    `reports` short: one block each)."""
    if not reports:
        return []
    blocks: list[Block] = [_section(t(locale, "mine.follow_ups"))]
    for report in reports:
        states = []
        if report.follow_up_at is not None:
            if report.snoozed_until and report.snoozed_until > max(now, report.follow_up_at):
                states.append(
                    t(locale, "mine.follow_up_snoozed", when=slack_date(report.snoozed_until))
                )
            elif report.follow_up_at <= now:
                states.append(
                    t(locale, "mine.follow_up_overdue", when=slack_date(report.follow_up_at))
                )
            else:
                states.append(t(locale, "mine.follow_up_on", when=slack_date(report.follow_up_at)))
        if report.callback_requested and report.customer_called_at is None:
            states.append(t(locale, "mine.callback_owed"))
        item = t(
            locale,
            "mine.follow_up_item",
            ref=report.reference,
            category=escape(report.category),
            state=" · ".join(states),
            text=quote(report.text, 300),
        )
        blocks.append(_section(item))
    return blocks
