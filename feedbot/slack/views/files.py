"""What people read about a report's files: the card's count, and what was refused and why."""

from __future__ import annotations

from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from feedbot.core.attachments import MAX_FILE_BYTES, MAX_FILES, MAX_REPORT_BYTES, FileSummary, Taken
from feedbot.models import Report
from feedbot.slack.i18n import language_of, t
from feedbot.slack.text import escape
from feedbot.slack.views import Message


def size_label(locale: str, size: int) -> str:
    """150 MB, 2.5 MB, 800 KB (with a decimal comma in German)."""
    if size >= 1024 * 1024:
        value = size / (1024 * 1024)
        unit = "MB"
    else:
        value = max(size / 1024, 1)
        unit = "KB"
    text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
    if language_of(locale) == "de":
        text = text.replace(".", ",")
    return f"{text} {unit}"


def files_label(summary: FileSummary, locale: str) -> str:
    """ "2 photos · 1 file": how many a report has, for its card."""
    parts = []
    if summary.photos:
        key = "files.photos_one" if summary.photos == 1 else "files.photos"
        parts.append(t(locale, key, count=summary.photos))
    if summary.files:
        key = "files.files_one" if summary.files == 1 else "files.files"
        parts.append(t(locale, key, count=summary.files))
    return " · ".join(parts)


def build_files_taken(report: Report, taken: Taken, *, locale: str) -> Message | None:
    """The reporter's answer when not every file could be attached: how many were, and why
    each of the rest was not ("3 of 5 files were attached; the video was too large: 150 MB,
    at most 50 MB"). None when all were taken."""
    if not taken.refused:
        return None
    attached = len(taken.accepted)
    key = "files.some_attached" if attached else "files.none_attached"
    lines = [t(locale, key, attached=attached, offered=taken.offered, ref=report.reference)]
    for refusal in taken.refused:
        lines.append(
            "• "
            + t(
                locale,
                f"files.refused.{refusal.reason}",
                name=f"*{escape(refusal.file.name)}*",
                size=size_label(locale, refusal.file.size),
                limit=size_label(
                    locale,
                    MAX_REPORT_BYTES if refusal.reason == "report_too_large" else MAX_FILE_BYTES,
                ),
                count=MAX_FILES,
                kind=escape(refusal.file.mimetype),
            )
        )
    text = "\n".join(lines)
    return Message(
        text=text[:3000], blocks=[SectionBlock(text=MarkdownTextObject(text=text[:3000]))]
    )
