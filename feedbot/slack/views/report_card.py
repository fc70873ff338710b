"""The report card leaders see in their channel, its thread lines, and forwarded copies.

Only this module decides what a leader sees of a report. It never shows an anonymous
reporter, and never the customer's contact (leaders reveal that one at a time, recorded).
"""

from __future__ import annotations

from dataclasses import replace

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    ImageBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
    UserSelectElement,
)

from feedbot.core.attachments import FileSummary
from feedbot.models import Report, ReportStatus, Urgency
from feedbot.slack import codecs
from feedbot.slack.i18n import number, t
from feedbot.slack.ids import Action
from feedbot.slack.text import escape, quote, shorten
from feedbot.slack.views import Message, slack_ago, slack_date
from feedbot.slack.views.files import files_label

CARD_TEXT_LIMIT = 2900
URGENCY_ICON = {
    Urgency.LOW: ":white_circle:",
    Urgency.NORMAL: ":large_blue_circle:",
    Urgency.HIGH: ":large_orange_circle:",
    Urgency.CRITICAL: ":red_circle:",
}


def status_label(report: Report, locale: str, duplicate_of: str | None = None) -> str:
    if report.status == ReportStatus.DUPLICATE:
        return t(locale, "status.duplicate", target=duplicate_of or "?")
    return t(locale, f"status.{report.status}")


def reporter_label(report: Report, locale: str) -> str:
    if report.anonymous or not report.reporter_id:
        return t(locale, "card.anonymous")
    return f"<@{report.reporter_id}>"


def _callback_label(report: Report, locale: str) -> str:
    if not report.callback_requested:
        return t(locale, "card.no")
    if report.customer_called_at:
        return t(locale, "card.callback_done", when=slack_date(report.customer_called_at))
    key = "card.callback_wanted" if report.customer_contact else "card.callback_no_contact"
    return t(locale, key)


def _field(locale: str, key: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=shorten(f"*{t(locale, key)}*\n{value}", 2000))


def _button(
    locale: str, key: str, action: Action, report: Report, style: str | None = None
) -> ButtonElement:
    return ButtonElement(
        text=t(locale, key), action_id=action, value=codecs.REPORT.encode(report.id), style=style
    )


def build_report_card(
    report: Report,
    *,
    locale: str,
    mention: list[str] | None = None,
    duplicate_of: str | None = None,
    files: FileSummary | None = None,
    incident: str | None = None,
) -> Message:
    """The card: what happened, the facts, and the triage buttons that fit its status.

    `mention` lists leaders to notify (critical reports); `duplicate_of` is the reference of
    the report this one was merged into; `files` counts its photos and files and names
    feedbot's copy of the first photo, shown in the card (the copies are in the thread);
    `incident` names the incident group it is in (a card posted before its group formed
    then points at the group's card).
    """
    category = escape(report.category)
    urgency = t(locale, f"urgency.{report.urgency}")
    blocks: list[Block] = []
    fallback = t(
        locale,
        "card.fallback",
        ref=report.reference,
        category=category,
        urgency=urgency,
        text=quote(report.text, 300),
    )
    if mention:
        who = " ".join(f"<@{user}>" for user in mention[:20])
        critical = t(locale, "card.critical", mentions=who)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=critical)))
        fallback = f"{critical}\n{fallback}"
    blocks.append(
        HeaderBlock(
            text=PlainTextObject(text=shorten(f"{report.reference} · {report.category}", 150))
        )
    )
    if incident:
        pointer = t(locale, "incident.part_of", ref=incident)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=pointer)]))
    blocks.append(SectionBlock(text=MarkdownTextObject(text=quote(report.text, CARD_TEXT_LIMIT))))
    owner = f"<@{report.owner_id}>" if report.owner_id else t(locale, "card.nobody")
    fields = [
        _field(locale, "card.urgency", f"{URGENCY_ICON[Urgency(report.urgency)]} {urgency}"),
        _field(
            locale,
            "card.location",
            quote(report.location, 300) if report.location else t(locale, "card.unknown"),
        ),
        _field(locale, "card.reporter", reporter_label(report, locale)),
        _field(locale, "card.status", status_label(report, locale, duplicate_of)),
        _field(locale, "card.owner", owner),
        _field(
            locale,
            "card.customers",
            number(locale, report.customers_affected)
            if report.customers_affected is not None
            else t(locale, "card.unknown"),
        ),
        _field(locale, "card.callback", _callback_label(report, locale)),
        _field(locale, "card.me_too", str(report.me_too_count)),
        _field(
            locale,
            "card.reported",
            f"{slack_date(report.created_at)} ({slack_ago(report.created_at)})",
        ),
    ]
    if files:
        fields.append(_field(locale, "card.files", files_label(files, locale)))
    blocks.append(SectionBlock(fields=fields))
    if files and files.first_image:
        name = shorten(files.first_image_name, 200)
        blocks.append(
            ImageBlock(
                slack_file={"id": files.first_image},
                alt_text=t(locale, "card.photo_alt", name=name),
            )
        )
    if report.resolution_note and report.status == ReportStatus.RESOLVED:
        note = t(locale, "card.resolution", note=quote(report.resolution_note, 2000))
        blocks.append(SectionBlock(text=MarkdownTextObject(text=note)))
    if report.source_permalink and not report.anonymous:  # a post's link names its author
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(text=t(locale, "card.source", link=report.source_permalink))
                ]
            )
        )
    blocks += _triage_buttons(report, locale)
    return Message(text=fallback, blocks=blocks)


def _triage_buttons(report: Report, locale: str) -> list[Block]:
    if report.status == ReportStatus.DUPLICATE:
        return []
    if report.status == ReportStatus.RESOLVED:
        return [
            ActionsBlock(
                block_id="triage",
                elements=[_button(locale, "button.reopen", Action.REOPEN, report)],
            )
        ]
    first: list[ButtonElement | UserSelectElement] = []
    if report.acknowledged_at is None:
        first.append(_button(locale, "button.acknowledge", Action.ACKNOWLEDGE, report, "primary"))
    first += [
        _button(locale, "button.claim", Action.CLAIM, report),
        UserSelectElement(
            action_id=Action.ASSIGN,
            placeholder=t(locale, "button.assign"),
            initial_user=report.owner_id,
        ),
        _button(locale, "button.reply", Action.REPLY, report),
    ]
    second = [
        _button(locale, "button.resolve", Action.RESOLVE, report, "primary"),
        _button(locale, "button.forward", Action.FORWARD, report),
        _button(locale, "button.duplicate", Action.DUPLICATE, report),
    ]
    if report.callback_requested and report.customer_contact:
        second.append(_button(locale, "button.reveal", Action.REVEAL_CONTACT, report))
    if report.callback_requested and report.customer_called_at is None:
        second.append(_button(locale, "button.called", Action.CUSTOMER_CALLED, report))
    if report.owner_id:  # reminds the owner on a date (reminders feature)
        second.append(_button(locale, "button.follow_up", Action.FOLLOW_UP, report))
    return [
        ActionsBlock(block_id=f"triage-{report.id}", elements=first),
        ActionsBlock(block_id=f"triage2-{report.id}", elements=second),
    ]


def build_forwarded_copy(
    report: Report, *, locale: str, actor: str, files: FileSummary | None = None
) -> Message:
    """What a team channel receives: the card's facts, no buttons, no customer contact.
    Its photos follow as files in its thread (the card's picture is one the team channel may
    not see)."""
    shown = replace(files, first_image=None) if files else None
    card = build_report_card(report, locale=locale, files=shown)
    facts = [block for block in card.blocks if not isinstance(block, ActionsBlock)]
    header = ContextBlock(
        elements=[MarkdownTextObject(text=t(locale, "card.forwarded", actor=actor))]
    )
    return Message(text=card.text, blocks=[header, *facts])


def build_thread_line(
    *, locale: str, action: str, actor: str | None, detail: str | None
) -> Message:
    """One line in the card's thread: who did what."""
    key = f"thread.{action}"
    text = t(locale, key, actor=actor or "", detail=escape(detail or ""))
    return Message(text=text, blocks=[ContextBlock(elements=[MarkdownTextObject(text=text)])])
