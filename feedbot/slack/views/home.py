"""The App Home tab, by role: everyone reports and follows their reports; leaders see their
queue with triage buttons; admins see the settings. Bounded to Slack's 100 blocks however
many reports there are."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from feedbot.core.own_reports import ReportSummary
from feedbot.core.worklist import LeaderQueue, Shelf
from feedbot.models import AuditEntry, Report
from feedbot.slack import codecs
from feedbot.slack.i18n import t
from feedbot.slack.ids import Action
from feedbot.slack.text import escape, quote
from feedbot.slack.views import MAX_VIEW_BLOCKS, slack_date
from feedbot.slack.views.admin import settings_sections
from feedbot.slack.views.report_card import status_label

MY_REPORTS_SHOWN = 10


def _text(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _report_line(report: Report, locale: str, when: object) -> str:
    return t(
        locale,
        "home.report_line",
        ref=report.reference,
        status=status_label(report, locale),
        category=escape(report.category),
        when=when,
        text=quote(report.text, 200),
    )


def _shelf(shelf: Shelf, title_key: str, locale: str) -> list[Block]:
    blocks: list[Block] = [_text(t(locale, title_key, count=shelf.total))]
    if not shelf.reports:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=t(locale, "home.empty_shelf"))])
        )
    for report in shelf.reports:
        blocks.append(
            SectionBlock(
                block_id=f"home-{title_key}-{report.id}",
                text=MarkdownTextObject(
                    text=_report_line(report, locale, slack_date(report.created_at))
                ),
            )
        )
        buttons = []
        if report.acknowledged_at is None:
            buttons.append(
                ButtonElement(
                    text=t(locale, "button.acknowledge"),
                    action_id=Action.ACKNOWLEDGE,
                    value=codecs.REPORT.encode(report.id),
                )
            )
        buttons += [
            ButtonElement(
                text=t(locale, "button.claim"),
                action_id=Action.CLAIM,
                value=codecs.REPORT.encode(report.id),
            ),
            ButtonElement(
                text=t(locale, "button.reply"),
                action_id=Action.REPLY,
                value=codecs.REPORT.encode(report.id),
            ),
            ButtonElement(
                text=t(locale, "button.resolve"),
                action_id=Action.RESOLVE,
                value=codecs.REPORT.encode(report.id),
            ),
        ]
        blocks.append(
            ActionsBlock(block_id=f"triage-home-{title_key}-{report.id}", elements=buttons)
        )
    if shelf.total > len(shelf.reports):
        more = t(locale, "home.more", count=shelf.total - len(shelf.reports))
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=more)]))
    return blocks


def build_home(
    *,
    locale: str,
    my_reports: list[ReportSummary],
    queue: LeaderQueue | None,
    audit: list[AuditEntry] | None,
) -> View:
    """`queue` is given for leaders, `audit` for admins."""
    blocks: list[Block] = [
        HeaderBlock(text=t(locale, "home.title")),
        SectionBlock(
            text=MarkdownTextObject(text=t(locale, "home.intro")),
            accessory=ButtonElement(
                text=t(locale, "button.report"),
                action_id=Action.OPEN_FORM,
                value="home",
                style="primary",
            ),
        ),
        HeaderBlock(text=t(locale, "home.mine")),
    ]
    if not my_reports:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=t(locale, "home.mine_none"))]))
    for summary in my_reports[:MY_REPORTS_SHOWN]:
        blocks.append(_text(_report_line(summary.report, locale, slack_date(summary.last_at))))
    if queue is not None:
        blocks += [DividerBlock(), HeaderBlock(text=t(locale, "home.queue"))]
        blocks += _shelf(queue.unacknowledged, "home.unacknowledged", locale)
        blocks += _shelf(queue.mine, "home.owned", locale)
        blocks += _shelf(queue.overdue_follow_ups, "home.overdue", locale)
    if audit is not None:
        blocks += [DividerBlock(), HeaderBlock(text=t(locale, "home.settings"))]
        blocks += settings_sections(locale)
        lines = [
            t(
                locale,
                "home.change_line",
                when=slack_date(entry.at),
                actor=f"<@{entry.actor}>"
                if entry.actor and entry.actor[:1] in "UW"
                else escape(entry.actor or "-"),
                setting=entry.key,
                old=quote(entry.old_value or "-", 120),
                new=quote(entry.new_value or "-", 120),
            )
            for entry in audit[:5]
        ]
        text = (
            t(locale, "home.recent_changes")
            + "\n"
            + ("\n".join(lines) or t(locale, "home.no_changes"))
        )
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=quote_safe(text))]))
    assert len(blocks) <= MAX_VIEW_BLOCKS, len(blocks)
    return View(type="home", blocks=blocks)


def quote_safe(text: str) -> str:
    """Context text is limited to 3000 characters."""
    return text if len(text) <= 3000 else text[:2999] + "…"
