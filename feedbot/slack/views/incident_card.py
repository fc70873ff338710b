"""The incident card: one card for a burst of similar reports, updated in place."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from feedbot.core.incidents import GroupSummary
from feedbot.core.triage import MAX_NOTE
from feedbot.models import IncidentGroup, ReportStatus
from feedbot.slack import codecs
from feedbot.slack.i18n import number, t
from feedbot.slack.ids import INPUT, Action, Callback, Field
from feedbot.slack.text import escape, quote, shorten
from feedbot.slack.views import Message, slack_date
from feedbot.slack.views.triage_forms import share_choice


def _field(locale: str, key: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=shorten(f"*{t(locale, key)}*\n{value}", 2000))


def build_incident_card(group: IncidentGroup, summary: GroupSummary, *, locale: str) -> Message:
    count = number(locale, summary.reports)
    fallback = t(
        locale,
        "incident.fallback",
        ref=group.reference,
        count=count,
        category=escape(group.category),
    )
    locations = ", ".join(f"{quote(where, 60)} ({n})" for where, n in summary.locations) or t(
        locale, "card.unknown"
    )
    latest = "\n".join(f"• {quote(r.text, 300)}" for r in summary.latest)
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(
                text=shorten(
                    t(
                        locale,
                        "incident.header",
                        ref=group.reference,
                        count=count,
                        category=group.category,
                    ),
                    150,
                )
            )
        ),
        SectionBlock(text=MarkdownTextObject(text=t(locale, "incident.burst"))),
        SectionBlock(
            text=MarkdownTextObject(
                text=t(locale, "incident.example", text=quote(group.example, 1500))
            )
        ),
        SectionBlock(
            fields=[
                _field(locale, "incident.reports", count),
                _field(
                    locale,
                    "incident.people",
                    t(
                        locale,
                        "incident.reporters",
                        named=number(locale, summary.named_people),
                        anonymous=number(locale, summary.anonymous_reports),
                    ),
                ),
                _field(locale, "card.me_too", number(locale, summary.me_too)),
                _field(
                    locale,
                    "card.status",
                    t(locale, f"status.{group.status}", target=group.merged_into_reference or ""),
                ),
                _field(locale, "incident.locations", locations),
                _field(locale, "incident.since", slack_date(group.created_at)),
            ]
        ),
    ]
    if latest:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=shorten(t(locale, "incident.latest", lines=latest), 3000)
                )
            )
        )
    if group.status == ReportStatus.RESOLVED and group.resolution_note:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=t(locale, "card.resolution", note=quote(group.resolution_note, 2000))
                )
            )
        )
    if group.merged_into_reference:
        merged = t(
            locale, "incident.merged_into", ref=group.reference, into=group.merged_into_reference
        )
        blocks.insert(1, SectionBlock(text=MarkdownTextObject(text=merged)))
        fallback = f"{merged}\n{fallback}"
    elif group.status != ReportStatus.RESOLVED:
        buttons = []
        if group.status == ReportStatus.OPEN:
            buttons.append(
                ButtonElement(
                    text=t(locale, "incident.acknowledge"),
                    action_id=Action.INCIDENT_ACKNOWLEDGE,
                    value=codecs.GROUP.encode(group.id),
                    style="primary",
                )
            )
        buttons += [
            ButtonElement(
                text=t(locale, "incident.reply"),
                action_id=Action.INCIDENT_REPLY,
                value=codecs.GROUP.encode(group.id),
            ),
            ButtonElement(
                text=t(locale, "incident.resolve"),
                action_id=Action.INCIDENT_RESOLVE,
                value=codecs.GROUP.encode(group.id),
            ),
            ButtonElement(
                text=t(locale, "incident.merge"),
                action_id=Action.INCIDENT_MERGE,
                value=str(group.id),
            ),
        ]
        blocks.append(ActionsBlock(block_id=f"incident-{group.id}", elements=buttons))
    return Message(text=fallback, blocks=blocks)


def build_incident_form(
    callback: Callback, *, group: IncidentGroup, locale: str, confidential: bool = False
) -> View:
    title, label = (
        ("incident.reply_title", "reply.label")
        if callback == Callback.INCIDENT_REPLY_FORM
        else ("incident.resolve_title", "resolve.label")
    )
    return View(
        type="modal",
        callback_id=callback,
        title=t(locale, title)[:24],
        submit=t(locale, "form.submit"),
        close=t(locale, "form.close"),
        private_metadata=codecs.GROUP_FORM.encode(group.id),
        blocks=[
            InputBlock(
                block_id=Field.NOTE,
                label=f"{t(locale, label)} ({group.reference})",
                element=PlainTextInputElement(action_id=INPUT, multiline=True, max_length=MAX_NOTE),
            ),
            *(
                [share_choice(locale)]
                if callback == Callback.INCIDENT_RESOLVE_FORM and not confidential
                else []
            ),
        ],
    )


def build_merge_form(*, group: IncidentGroup, locale: str) -> View:
    """Merge `group` into another: the other group's reference, typed."""
    return View(
        type="modal",
        callback_id=Callback.INCIDENT_MERGE_FORM,
        title=t(locale, "incident.merge_title")[:24],
        submit=t(locale, "form.submit"),
        close=t(locale, "form.close"),
        private_metadata=codecs.GROUP_FORM.encode(group.id),
        blocks=[
            InputBlock(
                block_id=Field.REFERENCE,
                label=t(locale, "incident.merge_label", ref=group.reference),
                hint=t(locale, "incident.merge_hint", ref=group.reference),
                element=PlainTextInputElement(
                    action_id=INPUT, max_length=20, placeholder="INC-102"
                ),
            )
        ],
    )
