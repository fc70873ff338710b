"""Messages to reporters and colleagues: receipts, suggestions, and news about their reports."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from feedbot.core.reports import ReportSummary
from feedbot.core.triage import Notice, NoticeKind
from feedbot.models import Report
from feedbot.slack.i18n import number, t
from feedbot.slack.ids import Action
from feedbot.slack.text import escape, quote
from feedbot.slack.views import Message, slack_date
from feedbot.slack.views.report_card import status_label


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


@dataclass(frozen=True)
class Suggestion:
    """A similar report offered to a reporter. `readable`: they could already read its text
    where it was posted, so it may be quoted; otherwise only its reference, category and how
    many colleagues it affects are shown."""

    report: Report
    readable: bool


def build_receipt(
    report: Report,
    *,
    locale: str,
    similar: list[Suggestion],
    solved_before: Report | None,
    leadership_ready: bool = True,
    details_button: bool = False,
    key: str = "receipt.filed",
) -> Message:
    """The reporter's receipt: the reference, and what colleagues already reported or solved.

    `key` words the first line (the command's answer says it differently)."""
    text = t(locale, key if leadership_ready else "error.no_leadership", ref=report.reference)
    blocks: list[Block] = [_section(text)]
    if details_button:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=t(locale, "button.add_details"),
                        action_id=Action.ADD_DETAILS,
                        value=str(report.id),
                    )
                ]
            )
        )
    if similar:
        blocks.append(_section(t(locale, "receipt.similar")))
        for suggestion in similar[:3]:
            other = suggestion.report
            affected = number(locale, 1 + other.me_too_count)
            item = (
                t(
                    locale,
                    "receipt.similar_item",
                    ref=other.reference,
                    category=escape(other.category),
                    affected=affected,
                    text=quote(other.text, 400),
                )
                if suggestion.readable
                else t(
                    locale,
                    "receipt.similar_item_unread",
                    ref=other.reference,
                    category=escape(other.category),
                    affected=affected,
                )
            )
            blocks.append(
                SectionBlock(
                    block_id=f"similar-{other.id}",
                    text=MarkdownTextObject(text=item),
                    accessory=ButtonElement(
                        text=t(locale, "button.me_too_instead"),
                        action_id=Action.ME_TOO_INSTEAD,
                        value=f"{report.id}:{other.id}",
                    ),
                )
            )
    if solved_before is not None and solved_before.resolution_note:
        blocks.append(
            _section(
                t(
                    locale,
                    "receipt.solved_before",
                    ref=solved_before.reference,
                    note=quote(solved_before.resolution_note, 1500),
                )
            )
        )
    return Message(text=text, blocks=blocks)


def build_intake_receipt(report: Report, *, locale: str) -> Message:
    """The thread reply under an intake-channel post, with the *Me too* button."""
    text = t(locale, "receipt.intake", ref=report.reference)
    return Message(
        text=text,
        blocks=[
            _section(text),
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=t(locale, "button.me_too"),
                        action_id=Action.ME_TOO,
                        value=str(report.id),
                    )
                ]
            ),
        ],
    )


def build_notice(
    notice: Notice,
    *,
    locale: str,
    report: Report,
    other: Report | None = None,
    card_link: str | None = None,
) -> Message:
    """A direct message telling someone what happened to a report they follow."""
    params: dict[str, object] = {"ref": report.reference}
    if notice.kind in (NoticeKind.REPLIED,):
        params["text"] = quote(notice.text or "", 2800).replace("\n", "\n>")
    if notice.kind in (NoticeKind.RESOLVED, NoticeKind.CUSTOMER_CALLED):
        params["note"] = quote(notice.text or "", 2800)
    if notice.kind == NoticeKind.MERGED:
        params["target"] = other.reference if other else "?"
    key = f"notice.{notice.kind}"
    if notice.kind == NoticeKind.ASSIGNED:
        params["category"] = escape(report.category)
        if card_link:
            params["link"] = card_link
        else:
            key = "notice.assigned_nolink"
    text = t(locale, key, **params)
    return Message(text=text, blocks=[_section(text)])


def build_plain(text: str) -> Message:
    return Message(text=text, blocks=[_section(text)])


def build_my_reports(summaries: list[ReportSummary], *, locale: str, limit: int) -> Message:
    """`/feedback mine`: each report with status and latest activity."""
    if not summaries:
        return build_plain(t(locale, "mine.none"))
    blocks: list[Block] = [_section(t(locale, "mine.title"))]
    for summary in summaries[:40]:
        report = summary.report
        item = t(
            locale,
            "mine.item",
            ref=report.reference,
            status=status_label(report, locale),
            category=escape(report.category),
            when=slack_date(summary.last_at),
            text=quote(report.text, 300),
        )
        if report.source_permalink:  # their own post: its link tells them nothing new
            item += "\n" + t(locale, "card.source", link=report.source_permalink)
        blocks.append(_section(item))
    if len(summaries) >= limit:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=t(locale, "mine.more", count=limit))])
        )
    return Message(text=t(locale, "mine.title"), blocks=blocks)
