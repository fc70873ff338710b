"""The weekly digest for leaders, the "you said, we did" post, their text and chart forms.

Pure functions of the domain results (`feedbot.core.digest`) and a locale. However large the
week, a message stays inside Block Kit's limits: a fixed set of blocks (well under 50), and
every list is cut to what fits a section's 3,000 characters, ending with "…and N more".
Every report mentioned links to its card in the leadership channel when the card is known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import quote as url_quote

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from feedbot.core.digest import (
    Count,
    Digest,
    Durations,
    ReportLine,
    ReportList,
    RouteLine,
    Theme,
    YouSaidWeDid,
    monday,
)
from feedbot.models import Urgency
from feedbot.slack import i18n
from feedbot.slack.i18n import number, t
from feedbot.slack.text import escape, quote, shorten
from feedbot.slack.views import MAX_MESSAGE_BLOCKS, Message, slack_ago, slack_date
from feedbot.slack.views.report_card import URGENCY_ICON

SECTION_LIMIT = 3000
LIST_TEXT = 160
"""Characters of a report's text shown in a list line."""
THEMES_SHOWN = 5
COUNTS_SHOWN = 8
BUILDER_URL = "https://app.slack.com/block-kit-builder/#"


# --------------------------------------------------------------------------- small pieces


def signed(change: int, locale: str) -> str:
    """`+3`, `−2` (a real minus sign) or `±0`, digits grouped the reader's way."""
    if change > 0:
        return f"+{number(locale, change)}"
    if change < 0:
        return f"\u2212{number(locale, -change)}"
    return "±0"


def week_number(period: str) -> str:
    return period.split("-W")[1].lstrip("0")


def date_range(period: str, locale: str) -> str:
    """The week's first and last day, the reader's way (`16–22 Nov 2026`)."""
    first = monday(period)
    return i18n.date_range(first, first + timedelta(days=6), locale)


def duration(span: timedelta, locale: str) -> str:
    return i18n.duration(span, locale)


def card_link(link_base: str | None, channel: str | None, ts: str | None) -> str | None:
    """A message permalink: `https://<workspace>.slack.com/archives/C…/p<ts without dot>`."""
    if not link_base or not channel or not ts:
        return None
    return f"{link_base.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"


def reference(line: ReportLine, link_base: str | None, locale: str = "en") -> str:
    """The report's reference linked to its card, and to the message it came from."""
    url = card_link(link_base, line.card_channel, line.card_ts)
    shown = f"<{url}|{line.reference}>" if url else f"*{line.reference}*"
    if line.incident_reports is not None:
        shown += " " + t(locale, "digest.incident_reports", n=number(locale, line.incident_reports))
    if line.source_link:
        shown += " · " + t(locale, "card.source", link=line.source_link)
    return shown


def one_line(text: str, limit: int) -> str:
    return quote(" ".join(text.split()), limit)


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=shorten(text, SECTION_LIMIT)))


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=shorten(text, SECTION_LIMIT))])


def bounded(head: str, lines: Sequence[str], total: int, locale: str, more_key: str) -> str:
    """`head` and as many `lines` as fit one section, then "…and N more" for the rest of
    `total` (which may exceed `len(lines)` when only the first few were fetched)."""
    reserve = len(t(locale, more_key, n=number(locale, total))) + 2
    text = head
    shown = 0
    for line in lines:
        if len(text) + 1 + len(line) > SECTION_LIMIT - reserve:
            break
        text += "\n" + line
        shown += 1
    if total > shown:
        text += "\n" + t(locale, more_key, n=number(locale, total - shown))
    return text


# --------------------------------------------------------------------------- the digest


def build_digest_message(
    digest: Digest,
    *,
    locale: str,
    link_base: str | None = None,
    late_due: datetime | None = None,
    preview: bool = False,
    attachments: bool = True,
) -> Message:
    """The leaders' weekly digest. A week without reports gets a short version that says so.

    `preview` marks it as seen only by the asker; `attachments` says the chart and CSV
    follow (not in a preview, nor in a terminal)."""
    week = week_number(digest.period)
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(
                text=shorten(
                    t(locale, "digest.title", week=week, dates=date_range(digest.period, locale)),
                    150,
                )
            )
        )
    ]
    if late_due is not None:
        blocks.append(context(t(locale, "digest.late", due=slack_date(late_due))))
    if preview:
        blocks.append(context(t(locale, "digest.preview")))
    if digest.channel is not None:
        blocks.append(context(t(locale, "digest.route_scope", channel=digest.channel)))
    if digest.empty:
        blocks.append(section(t(locale, "digest.empty", week=week)))
    blocks.append(_totals(digest, locale))
    if digest.with_photos:
        photos = t(
            locale,
            "digest.with_photos",
            count=number(locale, digest.with_photos),
            total=number(locale, digest.new.count),
        )
        blocks.append(context(photos))
    blocks.append(context(t(locale, "digest.change_note")))
    if not digest.empty:
        blocks.append(section(_counts(t(locale, "digest.by_category"), digest.categories, locale)))
        blocks.append(section(_counts(t(locale, "digest.by_location"), digest.locations, locale)))
        blocks.append(DividerBlock())
        blocks += _themes(digest.themes, digest.themes_total, locale, link_base)
    blocks.append(DividerBlock())
    for key, reports, when in (
        ("digest.urgent", digest.urgent, "filed"),
        ("digest.unacknowledged", digest.unacknowledged, "filed"),
        ("digest.overdue", digest.overdue, "follow_up"),
    ):
        if reports.total:
            blocks.append(section(_report_list(key, reports, locale, link_base, when)))
    if not digest.empty:
        blocks.append(section(_response_times(digest.acknowledge, digest.resolve, locale)))
    if digest.routes:
        blocks.append(section(_routes(digest.routes, locale)))
        if attachments and not preview:
            blocks.append(context(t(locale, "digest.attachments")))
    if isinstance(blocks[-1], DividerBlock):
        blocks.pop()
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    fallback = t(
        locale,
        "digest.fallback",
        week=week,
        new=digest.new.count,
        resolved=digest.resolved.count,
        open=digest.still_open.count,
    )
    return Message(text=fallback, blocks=blocks)


def _totals(digest: Digest, locale: str) -> SectionBlock:
    fields = [
        MarkdownTextObject(
            text=f"*{t(locale, key)}*\n"
            + t(
                locale,
                "digest.count",
                count=number(locale, count.count),
                change=signed(count.change, locale),
            )
        )
        for key, count in (
            ("digest.new", digest.new),
            ("digest.resolved", digest.resolved),
            ("digest.open", digest.still_open),
        )
    ]
    return SectionBlock(fields=fields)


def _routes(routes: list[RouteLine], locale: str) -> str:
    """A line per route: which region answers slowly shows at a glance."""
    lines = [
        t(
            locale,
            "digest.route_line",
            channel=route.channel,
            new=number(locale, route.new),
            open=number(locale, route.open),
            overdue=number(locale, route.overdue),
            median=(
                duration(route.acknowledge_median, locale)
                if route.acknowledge_median is not None
                else t(locale, "digest.route_none_acknowledged")
            ),
        )
        for route in routes
    ]
    return bounded(t(locale, "digest.routes"), lines, len(lines), locale, "digest.more")


def _counts(head: str, counts: list[Count], locale: str) -> str:
    lines = [
        t(
            locale,
            "digest.count_line",
            name=escape(count.name) if count.name else t(locale, "digest.no_location"),
            count=number(locale, count.count),
            change=signed(count.change, locale),
        )
        for count in counts[:COUNTS_SHOWN]
    ]
    return bounded(head, lines, len(counts), locale, "digest.more")


def _themes(themes: list[Theme], total: int, locale: str, link_base: str | None) -> list[Block]:
    if not themes:
        return [section(t(locale, "digest.themes_none"))]
    blocks: list[Block] = [section(t(locale, "digest.themes"))]
    for theme in themes[:THEMES_SHOWN]:
        places = [escape(name) for name in theme.locations] or [t(locale, "digest.no_location")]
        if theme.more_locations:
            places.append(t(locale, "digest.theme_more_places", n=theme.more_locations))
        blocks.append(
            section(
                t(
                    locale,
                    "digest.theme",
                    reports=number(locale, theme.reports),
                    me_too=number(locale, theme.me_too),
                    places=", ".join(places),
                    example="> " + one_line(theme.example.text, 600),
                    ref=reference(theme.example, link_base, locale),
                )
                + (
                    t(locale, "digest.theme_photo", ref=reference(theme.photo, link_base, locale))
                    if theme.photo is not None
                    else ""
                )
            )
        )
    if total > THEMES_SHOWN:
        blocks.append(
            context(t(locale, "digest.themes_more", n=number(locale, total - THEMES_SHOWN)))
        )
    return blocks


def _report_list(
    key: str, reports: ReportList, locale: str, link_base: str | None, when: str
) -> str:
    lines = []
    for line in reports.items:
        if when == "follow_up" and line.follow_up_at is not None:
            moment = t(locale, "digest.follow_up_was_due", when=slack_ago(line.follow_up_at))
        else:
            moment = t(locale, "digest.filed", when=slack_ago(line.created_at))
        lines.append(
            t(
                locale,
                "digest.line",
                icon=URGENCY_ICON[Urgency(line.urgency)],
                ref=reference(line, link_base, locale),
                category=escape(line.category),
                place=escape(line.location) if line.location else t(locale, "digest.no_location"),
                when=moment,
                text=one_line(line.text, LIST_TEXT),
            )
        )
    head = t(locale, key, total=number(locale, reports.total))
    return bounded(head, lines, reports.total, locale, "digest.more")


def _response_times(acknowledge: Durations, resolve: Durations, locale: str) -> str:
    lines = [t(locale, "digest.response")]
    for times, done, none in (
        (acknowledge, "digest.acknowledged_in", "digest.acknowledged_none"),
        (resolve, "digest.resolved_in", "digest.resolved_none"),
    ):
        if times.median is None or times.p90 is None:
            lines.append(t(locale, none))
        else:
            lines.append(
                t(
                    locale,
                    done,
                    median=duration(times.median, locale),
                    p90=duration(times.p90, locale),
                    count=times.count,
                )
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- you said, we did


def build_you_said_we_did(
    post: YouSaidWeDid, *, locale: str, late_due: datetime | None = None, preview: bool = False
) -> Message:
    """The all-staff post: what was resolved because someone spoke up. Reporters who chose
    anonymity are never named, and their words are not shown (they could give them away):
    only the category and the resolution."""
    week = week_number(post.period)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=shorten(t(locale, "ysd.title", week=week), 150)))
    ]
    if late_due is not None:
        blocks.append(context(t(locale, "ysd.late", due=slack_date(late_due))))
    if preview:
        blocks.append(context(t(locale, "digest.preview")))
    if not post.items:
        blocks.append(
            section(t(locale, "ysd.empty", week=week, open=number(locale, post.still_open)))
        )
    else:
        blocks.append(
            section(
                t(
                    locale,
                    "ysd.intro",
                    week=week,
                    count=post.total,
                    colleagues=number(locale, post.colleagues),
                )
            )
        )
        for item in post.items:
            who = f"<@{item.reporter_id}>" if item.reporter_id else t(locale, "ysd.a_colleague")
            credit = (
                t(locale, "ysd.credit", who=who, n=number(locale, item.me_too_count))
                if item.me_too_count
                else t(locale, "ysd.credit_alone", who=who)
            )
            key = "ysd.item" if item.reporter_id else "ysd.item_anonymous"
            blocks.append(
                section(
                    t(
                        locale,
                        key,
                        category=escape(item.category),
                        ref=item.reference,
                        text="> " + one_line(item.text, 400),
                        note=one_line(item.note, 1500),
                        credit=credit,
                    )
                )
            )
        if post.total > len(post.items):
            blocks.append(
                context(t(locale, "ysd.more", n=number(locale, post.total - len(post.items))))
            )
    blocks.append(context(t(locale, "ysd.footer")))
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    fallback = t(locale, "ysd.fallback", count=post.total, week=week)
    return Message(text=fallback, blocks=blocks)


# --------------------------------------------------------------------------- other forms

_LINK = re.compile(r"<(?:[^|>]*\|)?([^>]*)>")
_EMPHASIS = re.compile(r"(?<![\w*_])([*_])([^*_\n]+)\1(?![\w*_])")
_EMOJI = {
    ":red_circle:": "🔴",
    ":large_orange_circle:": "🟠",
    ":large_blue_circle:": "🔵",
    ":white_circle:": "⚪",
    ":white_check_mark:": "✅",
    ":hourglass_flowing_sand:": "⏳",
    ":eyes:": "👀",
    ":bar_chart:": "📊",
}


def plain_text(message: Message) -> str:
    """The message as terminal text: links become their labels, Slack dates their fallback,
    emphasis marks go, escapes are undone."""
    out: list[str] = []
    for block in message.blocks:
        data = block.to_dict()
        texts: list[str] = []
        if data.get("text"):
            texts.append(data["text"]["text"])
        texts += [item["text"] for item in data.get("fields", [])]
        texts += [item["text"] for item in data.get("elements", []) if "text" in item]
        if data["type"] == "divider":
            texts = ["-" * 40]
        for text in texts:
            text = _LINK.sub(lambda m: m.group(1) or m.group(0), text)
            text = _EMPHASIS.sub(r"\2", text)
            for code, emoji in _EMOJI.items():
                text = text.replace(code, emoji)
            out.append(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
        if data["type"] == "header":
            out.append("=" * min(len(texts[0]), 78))
    return "\n".join(out) + "\n"


def builder_url(message: Message) -> str:
    """A link that opens the message in Slack's Block Kit Builder."""
    blocks = message.to_payload().get("blocks", [])
    return BUILDER_URL + url_quote(json.dumps({"blocks": blocks}, ensure_ascii=False), safe="")
