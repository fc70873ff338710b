"""A report's photos and files: which are taken, within which limits, and what became of them.

The Slack layer hands over the files a person sent (from a message, the form's file field or
*Add details*); `add_files` keeps those within the limits and says why the rest were refused,
so the reporter can be told. feedbot later makes its own copy of each accepted file for
leadership (see `feedbot.slack.files`); this module records how that went. Nothing here talks
to Slack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete
from sqlmodel import Session, col, select

from feedbot.models import Attachment, AttachmentState, Report

MAX_FILES = 5
"""Files per report; the form's file field takes as many."""
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_REPORT_BYTES = 100 * 1024 * 1024
ACCEPTED_PREFIXES = ("video/",)
IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp"}
)
"""Images feedbot can re-encode without their metadata; others (HEIC, TIFF, SVG...) it
refuses at once, rather than pass on a photo's location and camera data."""
ACCEPTED_TYPES = frozenset(
    {
        "application/pdf",
        "text/plain",
        "text/csv",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
)
"""Photos, videos, PDFs and office documents: what shows a problem. Not archives or
programs, which leaders cannot look at safely."""
FORM_FILETYPES = ("jpg", "jpeg", "png", "gif", "webp", "pdf")
"""What the report form's file field offers: images and PDF."""
MAX_STORED_SIZE = 2**31 - 1
"""Sizes are stored as a 32-bit integer; Slack's own limit (1 GB) is far below."""
HIDDEN_MODES = frozenset({"tombstone", "hidden_by_limit"})

COPIED_STATES = (AttachmentState.PENDING, AttachmentState.COPIED, AttachmentState.UNFETCHABLE)
"""A report's files as far as its history is concerned: all but the refused."""
SHOWN_STATES = (AttachmentState.PENDING, AttachmentState.COPIED)
"""The files a card counts: copied, or still to be."""


@dataclass(frozen=True)
class IncomingFile:
    """A file as Slack describes it, before it is a report's."""

    file_id: str
    name: str
    mimetype: str
    size: int

    @classmethod
    def from_slack(cls, raw: dict[str, Any]) -> IncomingFile | None:
        """From a Slack file object (`files[]` of a message, a `file_input`'s state); None
        for one without an id, or one Slack shows only as a placeholder (a deleted file's
        `tombstone`, a file beyond the workspace's plan limits)."""
        file_id = raw.get("id")
        if not isinstance(file_id, str) or not file_id:
            return None
        if raw.get("mode") in HIDDEN_MODES:
            return None
        try:
            size = int(raw.get("size") or 0)
        except (TypeError, ValueError):
            size = 0
        name = str(raw.get("name") or raw.get("title") or file_id)
        return cls(
            file_id=file_id[:64],
            name=name[:255],
            mimetype=str(raw.get("mimetype") or "application/octet-stream")[:128],
            size=min(max(size, 0), MAX_STORED_SIZE),
        )

    @property
    def is_image(self) -> bool:
        return self.mimetype.startswith("image/")


@dataclass(frozen=True)
class Refusal:
    file: IncomingFile
    reason: str
    """`too_many`, `too_large` (this file), `report_too_large` (with the others) or `type`."""


@dataclass
class Taken:
    """What became of the files a person sent with one message or form."""

    offered: int = 0
    accepted: list[Attachment] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def acceptable_type(mimetype: str) -> bool:
    if mimetype.startswith("image/"):
        return mimetype in IMAGE_TYPES
    return mimetype.startswith(ACCEPTED_PREFIXES) or mimetype in ACCEPTED_TYPES


def check_limits(
    files: Sequence[IncomingFile], *, already: Sequence[Attachment] = ()
) -> tuple[list[IncomingFile], list[Refusal]]:
    """Which of `files` a report that has `already` may take, in the order sent, and why
    each of the rest may not."""
    count = len(already)
    total = sum(attachment.size for attachment in already)
    accepted: list[IncomingFile] = []
    refused: list[Refusal] = []
    for incoming in files:
        if not acceptable_type(incoming.mimetype):
            refused.append(Refusal(incoming, "type"))
        elif incoming.size > MAX_FILE_BYTES:
            refused.append(Refusal(incoming, "too_large"))
        elif count >= MAX_FILES:
            refused.append(Refusal(incoming, "too_many"))
        elif total + incoming.size > MAX_REPORT_BYTES:
            refused.append(Refusal(incoming, "report_too_large"))
        else:
            accepted.append(incoming)
            count += 1
            total += incoming.size
    return accepted, refused


def add_files(
    session: Session, *, report: Report, files: Iterable[IncomingFile], now: datetime
) -> Taken:
    """Attach what fits to `report` (waiting for feedbot's copy); a file it has already is
    skipped. Refused files are recorded too, so the report's history says what was sent."""
    assert report.id is not None
    existing = attachments_of(session, report.id, states=None)
    known = {attachment.file_id for attachment in existing}
    fresh: list[IncomingFile] = []
    for incoming in files:
        if incoming.file_id not in known:
            known.add(incoming.file_id)
            fresh.append(incoming)
    kept = [a for a in existing if a.state in COPIED_STATES]
    accepted, refused = check_limits(fresh, already=kept)
    taken = Taken(offered=len(fresh), refused=refused)
    for incoming, state, reason in [
        *((f, AttachmentState.PENDING, None) for f in accepted),
        *((r.file, AttachmentState.REFUSED, r.reason) for r in refused),
    ]:
        row = Attachment(
            report_id=report.id,
            file_id=incoming.file_id,
            name=incoming.name,
            mimetype=incoming.mimetype,
            size=incoming.size,
            state=state,
            reason=reason,
            created_at=now,
        )
        session.add(row)
        if state == AttachmentState.PENDING:
            taken.accepted.append(row)
    session.flush()
    return taken


def attachments_of(
    session: Session,
    report_id: int,
    *,
    states: Sequence[AttachmentState] | None = COPIED_STATES,
) -> list[Attachment]:
    if states is None:
        return list(session.exec(_ATTACHMENTS_OF, params={"report_id": report_id}))
    return list(
        session.exec(_ATTACHMENTS_IN, params={"report_id": report_id, "states": list(states)})
    )


_ATTACHMENTS_OF = (
    select(Attachment)
    .where(col(Attachment.report_id) == bindparam("report_id"))
    .order_by(col(Attachment.id))
)
_ATTACHMENTS_IN = _ATTACHMENTS_OF.where(
    col(Attachment.state).in_(bindparam("states", expanding=True))
)
"""Built once: every card asks, and building a statement costs more than running it."""


@dataclass(frozen=True)
class FileSummary:
    """What a card says about a report's files."""

    photos: int = 0
    files: int = 0
    first_image: str | None = None
    """The Slack id of feedbot's copy of the first photo, once it is uploaded."""
    first_image_name: str = ""

    def __bool__(self) -> bool:
        return bool(self.photos or self.files)


def summarise(session: Session, report_id: int | None) -> FileSummary:
    if report_id is None:
        return FileSummary()
    rows = attachments_of(session, report_id, states=SHOWN_STATES)
    photos = [row for row in rows if row.is_image]
    first = next((row for row in photos if row.copy_file_id), None)
    return FileSummary(
        photos=len(photos),
        files=len(rows) - len(photos),
        first_image=first.copy_file_id if first else None,
        first_image_name=first.name if first else "",
    )


def mark_copied(session: Session, *, attachment_id: int, copy_file_id: str, now: datetime) -> None:
    row = session.get(Attachment, attachment_id)
    if row is None:  # the report was purged meanwhile: its copy is orphaned, delete it
        return
    row.state, row.copy_file_id, row.copied_at, row.reason = (
        AttachmentState.COPIED,
        copy_file_id,
        now,
        None,
    )
    session.add(row)


def mark_unfetchable(session: Session, *, attachment_id: int, reason: str) -> Attachment | None:
    row = session.get(Attachment, attachment_id)
    if row is not None:
        row.state, row.reason = AttachmentState.UNFETCHABLE, reason[:64]
        session.add(row)
    return row


def copies_of(session: Session, report_ids: Any) -> list[str]:
    """The Slack ids of feedbot's copies for the reports `report_ids` selects (a list or a
    subquery): what must be deleted in Slack when those reports go."""
    found = session.exec(
        select(Attachment.copy_file_id).where(
            col(Attachment.report_id).in_(report_ids), col(Attachment.copy_file_id).is_not(None)
        )
    ).all()
    return sorted(str(file_id) for file_id in found if file_id)


def forget_files(session: Session, report_ids: Any) -> list[str]:
    """Delete the file rows of the reports `report_ids` selects; returns the copies to delete
    in Slack."""
    copies = copies_of(session, report_ids)
    session.execute(
        delete(Attachment)
        .where(col(Attachment.report_id).in_(report_ids))
        .execution_options(synchronize_session=False)
    )
    return copies


def files_by_report(session: Session, report_ids: Sequence[int]) -> dict[int, list[Attachment]]:
    """Each report's files (refused ones left out), for the export."""
    found: dict[int, list[Attachment]] = {}
    if not report_ids:
        return found
    rows = session.exec(
        select(Attachment)
        .where(
            col(Attachment.report_id).in_(list(report_ids)),
            col(Attachment.state).in_(COPIED_STATES),
        )
        .order_by(col(Attachment.id))
    )
    for row in rows:
        found.setdefault(row.report_id, []).append(row)
    return found
