"""Messages to reporters and colleagues: receipts, suggestions, and news about their reports."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from feedbot.core.own_reports import ReportSummary
from feedbot.core.reports import MAX_TEXT
from feedbot.core.triage import Notice, NoticeKind
from feedbot.models import Report
from feedbot.slack import codecs
from feedbot.slack.i18n import t
from feedbot.slack.ids import INPUT, Action, Callback, Field
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
                        value=codecs.REPORT.encode(report.id),
                    )
                ]
            )
        )
    if similar:
        blocks.append(_section(t(locale, "receipt.similar")))
        for suggestion in similar[:3]:
            other = suggestion.report
            affected = 1 + other.me_too_count
            item = (
                t(
                    locale,
                    "receipt.similar_item",
                    ref=other.reference,
                    category=escape(other.category),
                    count=affected,
                    text=quote(other.text, 400),
                )
                if suggestion.readable
                else t(
                    locale,
                    "receipt.similar_item_unread",
                    ref=other.reference,
                    category=escape(other.category),
                    count=affected,
                )
            )
            blocks.append(
                SectionBlock(
                    block_id=f"similar-{other.id}",
                    text=MarkdownTextObject(text=item),
                    accessory=ButtonElement(
                        text=t(locale, "button.me_too_instead"),
                        action_id=Action.ME_TOO_INSTEAD,
                        value=codecs.REPORT_AND_TARGET.encode(report.id, other.id),
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
                        value=codecs.REPORT.encode(report.id),
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
    reply: bool = False,
) -> Message:
    """A direct message telling someone what happened to a report they follow; `reply` adds
    *Reply*, for the reporter to answer leadership (anonymously if the report is)."""
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
    blocks: list[Block] = [_section(text)]
    if reply:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=t(locale, "button.reply_to_leadership"),
                        action_id=Action.REPORTER_REPLY,
                        value=codecs.REPORT.encode(report.id),
                    )
                ]
            )
        )
    return Message(text=text, blocks=blocks)


def build_reporter_reply_form(report: Report, *, locale: str) -> View:
    """Where a reporter writes back to leadership about `report`."""
    hint = "reporter_reply.hint_anonymous" if report.anonymous else "reporter_reply.hint"
    return View(
        type="modal",
        callback_id=Callback.REPORTER_REPLY_FORM,
        title=t(locale, "reporter_reply.title")[:24],
        submit=t(locale, "form.submit"),
        close=t(locale, "form.close"),
        private_metadata=codecs.REPORT_FORM.encode(report.id),
        blocks=[
            InputBlock(
                block_id=Field.TEXT,
                label=t(locale, "reporter_reply.label", ref=report.reference),
                hint=t(locale, hint, ref=report.reference),
                element=PlainTextInputElement(action_id=INPUT, multiline=True, max_length=MAX_TEXT),
            )
        ],
    )


def build_dm_question(draft_id: int, choices: list[Report], *, locale: str) -> Message:
    """Asked about a direct message that could belong to one of its author's recent reports:
    a new report, or about that one?"""
    text = t(locale, "dm.question")
    buttons = [
        ButtonElement(
            text=t(locale, "button.dm_about", ref=report.reference),
            action_id=f"{Action.DM_ABOUT_REPORT}-{report.id}",
            value=codecs.DRAFT_AND_REPORT.encode(draft_id, report.id),
        )
        for report in choices
    ]
    buttons.append(
        ButtonElement(
            text=t(locale, "button.dm_new"),
            action_id=Action.DM_NEW_REPORT,
            value=codecs.DRAFT.encode(draft_id),
            style="primary",
        )
    )
    return Message(text=text, blocks=[_section(text), ActionsBlock(elements=buttons)])


def build_kept_message(draft_id: int, why: str, *, locale: str) -> Message:
    """A message that could not be filed yet, kept: why, and *Send it now* for later."""
    return Message(
        text=why,
        blocks=[
            _section(why),
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=t(locale, "button.dm_send_now"),
                        action_id=Action.DM_NEW_REPORT,
                        value=codecs.DRAFT.encode(draft_id),
                        style="primary",
                    )
                ]
            ),
        ],
    )


def build_form_refused(errors: list[str], typed: list[str], *, locale: str) -> Message:
    """A form accepted at first but refused when its work was done (the report it was about
    was closed meanwhile, a rate limit reached by a report filed at the same time): why, and
    what the person entered, so nothing they wrote is lost."""
    reason = "\n".join(errors) or t(locale, "form.refused_unknown")
    text = quote(t(locale, "form.refused", reason=reason), 2900)
    blocks: list[Block] = [_section(text)]
    if typed:
        blocks.append(_section(t(locale, "form.you_entered")))
        blocks += [_section(quote(value, 2900)) for value in typed[:5]]
    return Message(text=text, blocks=blocks)


def build_command_refused(reason: str, typed: str, *, locale: str) -> Message:
    """`/feedback <text>` refused after it was answered, where the form that would keep the
    text can no longer open (its trigger expired while the request waited): why, and the
    text, to send again."""
    text = quote(reason, 2900)
    blocks: list[Block] = [
        _section(text),
        _section(t(locale, "form.you_entered")),
        _section(quote(typed, 2900)),
    ]
    return Message(text=text, blocks=blocks)


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
