"""Talking back: a reporter answers leadership about their report, anonymous or not.

Leaders write to a reporter with *Reply to reporter*; the reporter answers with *Reply* on
any notice, or by writing to the bot. What they write joins the report's timeline and its
card's thread under the report's reference, naming nobody when the report is anonymous. A
direct message that could be such an answer is kept as a `DmDraft` until its author says
what it is: a reply never becomes a new report under their name by mistake.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from feedbot.core import reports
from feedbot.core.attachments import IncomingFile
from feedbot.core.identity import Identities
from feedbot.errors import InvalidValue, NotFound
from feedbot.models import DmDraft, Report, ReportSource, ReportStatus

RECENT = timedelta(days=3)
"""How long after its last change a report counts as one a direct message may be about."""
KEEP_DRAFTS = timedelta(days=2)
"""How long a direct message waits for its author to say what it is."""
MAX_CHOICES = 3


def reporter_reply(
    session: Session,
    *,
    report: Report,
    user_id: str,
    text: str,
    identities: Identities,
    now: datetime,
) -> str:
    """Record the reporter's answer on the report's timeline; the cleaned text, for the
    card's thread. Only the report's own reporter may answer."""
    if not reports.is_reporter(report, user_id, identities):
        raise NotFound("You can only answer about your own reports.", code="not_found")
    message = reports.clean_text(text)
    if not message:
        raise InvalidValue("Please write your answer.", field="text", code="text_required")
    if len(message) > reports.MAX_MESSAGE_TEXT:
        raise InvalidValue(
            f"Please keep it under {reports.MAX_MESSAGE_TEXT:,} characters.",
            field="text",
            code="text_too_long",
            params={"limit": reports.MAX_MESSAGE_TEXT, "length": len(message)},
        )
    report.updated_at = now
    session.add(report)
    reports.record(
        session,
        report,
        actor=None if report.anonymous else user_id,
        action="reporter_replied",
        now=now,
        detail=message,
    )
    return message


def recent_reports(
    session: Session, *, user_id: str, identities: Identities, now: datetime
) -> list[Report]:
    """The person's reports a new direct message could be about: changed in the last few
    days and not merged away, newest first."""
    return list(
        session.exec(
            select(Report)
            .where(
                reports.mine(identities, user_id),
                col(Report.updated_at) >= now - RECENT,
                col(Report.status) != ReportStatus.DUPLICATE,
            )
            .order_by(col(Report.updated_at).desc(), col(Report.id).desc())
            .limit(MAX_CHOICES)
        )
    )


def keep_draft(
    session: Session,
    *,
    user_id: str,
    channel: str,
    ts: str,
    text: str,
    identities: Identities,
    now: datetime,
    source: ReportSource = ReportSource.DIRECT_MESSAGE,
    files: Sequence[IncomingFile] = (),
) -> DmDraft:
    """Keep a message until its author says what to do with it (`source`: where it was
    written, for filing it as a report), with the `files` it carried."""
    origin = {"channel": channel, "ts": ts, "source": source.value}
    carried = [[f.file_id, f.name, f.mimetype, f.size] for f in files]
    draft = DmDraft(
        user_key=identities.key("draft", user_id),
        user_sealed=identities.seal(user_id),
        origin_sealed=identities.seal(json.dumps(origin)),
        text=text,
        files_sealed=identities.seal(json.dumps(carried)) if carried else None,
        created_at=now,
    )
    session.add(draft)
    session.flush()
    return draft


@dataclass(frozen=True)
class Origin:
    """Where a kept message was written."""

    channel: str
    ts: str
    source: ReportSource
    files: tuple[IncomingFile, ...] = ()


def take_draft(
    session: Session, *, draft_id: int | None, user_id: str, identities: Identities
) -> tuple[DmDraft, Origin]:
    """The draft and where it was written, if `user_id` wrote it; it is deleted with the
    caller's transaction, whatever becomes of it."""
    draft = session.get(DmDraft, draft_id) if draft_id else None
    if draft is None or draft.user_key != identities.key("draft", user_id):
        raise NotFound("That message was already taken care of.", code="draft_gone")
    origin = json.loads(identities.open(draft.origin_sealed) or "{}")
    session.delete(draft)
    source = origin.get("source") or ReportSource.DIRECT_MESSAGE
    carried = json.loads(identities.open(draft.files_sealed) or "[]")
    files = tuple(
        IncomingFile(file_id=str(f[0]), name=str(f[1]), mimetype=str(f[2]), size=int(f[3]))
        for f in carried
    )
    return draft, Origin(
        str(origin.get("channel") or ""),
        str(origin.get("ts") or ""),
        ReportSource(source),
        files,
    )


def prune_drafts(session: Session, *, now: datetime) -> int:
    """Forget direct messages nobody said anything about in `KEEP_DRAFTS`."""
    result = session.execute(delete(DmDraft).where(col(DmDraft.created_at) < now - KEEP_DRAFTS))
    return int(result.rowcount)  # type: ignore[attr-defined]
