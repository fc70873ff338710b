"""feedbot's copies of a report's files: fetched with its own token, cleaned, uploaded.

Leaders must see a photo whoever could see the original, and an anonymous reporter must not
be named by it: so feedbot never shares the reporter's file, it downloads it (`url_private`,
with the bot token) and uploads a copy of its own to the card's thread. Every image copy is
re-encoded without its metadata (EXIF: GPS position, camera, owner, time), with the
orientation it recorded applied to the pixels first. The original in the reporter's
conversation is left alone.

All of it runs in the outbox (method `COPY_FILE`), never inside a request from Slack: a
report is stored first, its files follow. `copy_file` does the Slack side; `after_copy`
records the outcome in the sender's transaction.
"""

from __future__ import annotations

import io
import json
import logging
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from feedbot.core import attachments, outbox
from feedbot.core.attachments import MAX_FILE_BYTES
from feedbot.core.config import load_config
from feedbot.models import Attachment, OutboxMessage, Report
from feedbot.slack import delivery
from feedbot.slack.i18n import t
from feedbot.slack.text import escape
from feedbot.slack.views import Message
from feedbot.slack.views.report_card import build_thread_line

log = logging.getLogger(__name__)

COPY_FILE = "feedbot.copy_file"
"""Outbox method: copy one file into a thread (payload `file`, `name`; `_attachment` is the
row to settle, absent for a forwarded copy)."""
DELETE_FILE = "files.delete"
DOWNLOAD_TIMEOUT = 60.0

UNFETCHABLE_ERRORS = frozenset({"file_not_found", "file_deleted", "access_denied"})
"""files.info answers that mean the file is gone for feedbot, not that Slack is unwell."""
CLEANED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "GIF": "GIF"}
"""Image formats feedbot re-encodes without metadata (an iPhone's MPO becomes a JPEG)."""


class Unfetchable(Exception):
    """Slack did not give feedbot the file's content; `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- the Slack side


def download(url: str, *, token: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """A private file's content, with the bot token in `Authorization` (Slack's rule for
    `url_private`). Only ever called with an address Slack's `files.info` gave, so the token
    goes nowhere else. Without access, Slack answers a sign-in page with status 200, not an
    error: an HTML answer is therefore no file."""
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise Unfetchable("no_url")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:  # noqa: S310
        kind = response.headers.get("Content-Type") or ""
        if kind.split(";")[0].strip().lower() == "text/html":
            raise Unfetchable("no_access")
        content: bytes = response.read(limit + 1)
    if len(content) > limit:
        raise Unfetchable("too_large")
    return content


def without_metadata(content: bytes) -> bytes:
    """The image re-encoded with none of its metadata, upright as its EXIF orientation said.

    `Unfetchable("unreadable_image")` for an image Pillow cannot read or write (a broken
    file, or one whose content is not what its type said): it is not attached at all rather than copied with its metadata."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            target = CLEANED_FORMATS.get(image.format or "")
            if target is None:
                raise Unfetchable("unreadable_image")
            frames = getattr(image, "n_frames", 1)
            icc = image.info.get("icc_profile")
            if target == "GIF" and frames > 1:  # an animation keeps its frames, loses comments
                out = io.BytesIO()
                image.info = {k: v for k, v in image.info.items() if k in ("duration", "loop")}
                image.save(out, "GIF", save_all=True)
                return out.getvalue()
            upright = ImageOps.exif_transpose(image)
            upright.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise Unfetchable("unreadable_image") from exc
    upright.info = {}
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if target == "JPEG":
        if upright.mode not in ("RGB", "L", "CMYK"):
            upright = upright.convert("RGB")
        options |= {"quality": 90}
    out = io.BytesIO()
    upright.save(out, target, **options)
    return out.getvalue()


def copy_file(client: WebClient, payload: dict[str, Any]) -> dict[str, Any]:
    """Copy the file `payload["file"]` into `payload["channel"]` (under `thread_ts`).

    Answers `{"file_id": copy}` or, when Slack does not give feedbot the file,
    `{"unfetchable": reason}`: that is an outcome to record, not an error to retry. Network
    failures and Slack's errors on upload raise, and the outbox retries or gives up as for
    any call."""
    try:
        info = client.files_info(file=payload["file"])
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "")
        if error in UNFETCHABLE_ERRORS:
            return {"unfetchable": error}
        raise
    found: dict[str, Any] = info.get("file") or {}
    url = found.get("url_private_download") or found.get("url_private")
    name = str(payload.get("name") or found.get("name") or "file")
    try:
        if not url:
            raise Unfetchable("no_url")
        content = download(str(url), token=str(client.token))
        if str(found.get("mimetype") or payload.get("mimetype") or "").startswith("image/"):
            content = without_metadata(content)
    except Unfetchable as exc:
        return {"unfetchable": exc.reason}
    arguments: dict[str, Any] = {"file": content, "filename": name, "title": name}
    arguments["channel"] = payload["channel"]
    if payload.get("thread_ts"):
        arguments["thread_ts"] = payload["thread_ts"]
    response = client.files_upload_v2(**arguments)
    uploaded = response.get("files") or [response.get("file") or {}]
    return {"file_id": uploaded[0].get("id"), "channel": payload["channel"]}


def delete_file(client: WebClient, payload: dict[str, Any]) -> dict[str, Any]:
    """Delete one of feedbot's copies; one already gone is as good as deleted."""
    try:
        client.files_delete(file=payload["file"])
    except SlackApiError as exc:
        if exc.response.get("error") not in ("file_not_found", "file_deleted"):
            raise
    return {"ok": True}


# --------------------------------------------------------------------------- the outcome


def copy_given_up(session: Session, entry: OutboxMessage, *, error: str, now: datetime) -> None:
    """A copy Slack refused for good (its thread says so: the entry's failure notice, see
    `queue_copies`): the file is recorded as not copied, and the card no longer counts it."""
    attachment_id = json.loads(entry.payload).get("_attachment")
    if attachment_id is None:  # a forwarded copy records nothing
        return
    row = attachments.mark_unfetchable(session, attachment_id=attachment_id, reason=error)
    report = session.get(Report, row.report_id) if row is not None else None
    if report is not None:
        delivery.refresh_card(session, report=report, config=load_config(session), now=now)


def after_copy(session: Session, entry: OutboxMessage, result: Any, *, now: datetime) -> None:
    """Record what a `COPY_FILE` entry achieved: the card shows a new copy; a file Slack did
    not give feedbot leaves a line in the thread. A forwarded copy records nothing."""
    stored = json.loads(entry.payload)
    attachment_id = stored.get("_attachment")
    config = load_config(session)
    reason = result.get("unfetchable") if hasattr(result, "get") else None
    copy_id = result.get("file_id") if hasattr(result, "get") else None
    if reason:
        log.warning(
            "outbox #%s: attachment %s could not be fetched (%s)", entry.id, attachment_id, reason
        )
        row = None
        if attachment_id is not None:
            row = attachments.mark_unfetchable(session, attachment_id=attachment_id, reason=reason)
        report = session.get(Report, row.report_id) if row is not None else None
        if report is not None:  # it no longer counts the file
            delivery.refresh_card(session, report=report, config=config, now=now)
        locale = config.language_of_channel(entry.conversation)
        line = build_thread_line(
            locale=locale,
            action="file_unfetchable",
            actor=None,
            detail=t(locale, "files.why." + reason, name=str(stored.get("name") or "")),
        )
        outbox.enqueue(
            session,
            conversation=entry.conversation,
            method="chat.postMessage",
            payload=line.to_payload() | {"unfurl_links": False},
            purpose="thread_line",
            thread_of=session.get(OutboxMessage, entry.thread_of_id)
            if entry.thread_of_id
            else None,
            lane=entry.lane,
            now=now,
        )
    elif copy_id and attachment_id is not None:
        if session.get(Attachment, attachment_id) is None:  # its report went meanwhile
            queue_deletions(session, [str(copy_id)], now=now)
            return
        attachments.mark_copied(
            session, attachment_id=attachment_id, copy_file_id=str(copy_id), now=now
        )
        row = session.get(Attachment, attachment_id)
        report = session.get(Report, row.report_id) if row else None
        if report is not None:
            delivery.refresh_card(session, report=report, config=config, now=now)


# --------------------------------------------------------------------------- queueing


def queue_copies(
    session: Session,
    *,
    report: Report,
    rows: list[Attachment],
    thread: outbox.Entry,
    locale: str,
    now: datetime,
) -> None:
    """One outbox entry per file: copy it into `thread` (the card's, or its incident card's),
    after the card itself (same lane). If Slack refuses the upload for good, the thread says
    which file and why."""
    for row in rows:
        failed = Message(
            text=t(locale, "files.upload_failed", name=escape(row.name), error="{error}")
        )
        outbox.enqueue(
            session,
            conversation=thread.conversation,
            method=COPY_FILE,
            payload={
                "file": row.file_id,
                "name": row.name,
                "mimetype": row.mimetype,
                "_attachment": row.id,
                "_report": report.id,
            },
            purpose="file_copy",
            thread_of=thread,
            lane=thread.lane,
            on_failure=failed.to_payload(),
            on_failure_thread_of=thread,
            now=now,
        )


def queue_forwarded_copies(
    session: Session, *, report: Report, forwarded: outbox.Entry, now: datetime
) -> None:
    """The report's copied files, copied again under its forwarded message (from feedbot's
    own copies: the reporter's original is never touched)."""
    assert report.id is not None
    for row in attachments.attachments_of(session, report.id):
        if not row.copy_file_id:
            continue
        outbox.enqueue(
            session,
            conversation=forwarded.conversation,
            method=COPY_FILE,
            payload={"file": row.copy_file_id, "name": row.name, "mimetype": row.mimetype},
            purpose="file_forward",
            thread_of=forwarded,
            lane=forwarded.lane,
            now=now,
        )


def queue_deletions(session: Session, file_ids: list[str], *, now: datetime) -> None:
    """Delete feedbot's copies in Slack (after a purge, or forgetting a person)."""
    for file_id in file_ids:
        outbox.enqueue(
            session,
            conversation="files",
            method=DELETE_FILE,
            payload={"file": file_id},
            purpose="file_delete",
            lane=f"file:{file_id}",
            now=now,
        )
