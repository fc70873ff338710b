"""Reports from messages: direct messages to the bot, and posts in intake channels.

Only new top-level messages by people count. Thread replies, joins, bot posts and deletions
are ignored; an edit of a message that became a report updates the report's text. The
message's (channel, ts) is unique on reports, so even two different deliveries of one
message never file it twice.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from sqlalchemy.exc import IntegrityError

from feedbot.core import reports
from feedbot.core.reports import ReportDraft
from feedbot.errors import InvalidValue
from feedbot.models import ReportSource
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import explain, incoming_files
from feedbot.slack.features.conversation import ask_about, keep_for_later
from feedbot.slack.flows import file_report, send_receipt
from feedbot.slack.text import unescape
from feedbot.slack.views.notices import build_intake_receipt, build_plain

log = logging.getLogger(__name__)

NEW_MESSAGE_SUBTYPES = {None, "file_share"}


def register(app: App, deps: Deps) -> None:
    app.event("message")(_message(deps))


def _message(deps: Deps) -> Any:
    def handle(event: dict[str, Any], body: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        if subtype == "message_changed":
            _edited(deps, event)
            return
        if subtype not in NEW_MESSAGE_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return
        if event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
            return
        channel = event.get("channel") or ""
        is_dm = event.get("channel_type") == "im"
        if not is_dm and channel not in deps.config().intake_channels:
            return
        _file(deps, event, channel=channel, is_dm=is_dm)

    return handle


def _file(deps: Deps, event: dict[str, Any], *, channel: str, is_dm: bool) -> None:
    user_id = event["user"]
    ts = str(event.get("ts"))
    config = deps.config()
    now = deps.clock()
    text = unescape(event.get("text") or "")
    if not text.strip() and event.get("files"):
        text = " ".join(str(f.get("title") or f.get("name") or "") for f in event["files"])
    files = incoming_files(event.get("files"))
    link = deps.workspace.message_link(channel, ts)
    draft = ReportDraft(
        text=text,
        source=ReportSource.DIRECT_MESSAGE if is_dm else ReportSource.INTAKE_CHANNEL,
        source_channel=channel,
        source_ts=ts,
        source_permalink=link,
    )
    try:
        with deps.transaction() as session:
            if reports.find_by_source(session, channel=channel, ts=ts) is not None:
                return
            if is_dm and ask_about(
                session,
                deps,
                user_id=user_id,
                channel=channel,
                ts=ts,
                text=text,
                now=now,
                files=files,
            ):
                return
            report = file_report(
                session,
                deps,
                reporter_id=user_id,
                draft=draft,
                config=config,
                now=now,
                receipt=False,
                files=files,
            )
            if is_dm:
                send_receipt(
                    session,
                    deps,
                    report=report,
                    reporter_id=user_id,
                    config=config,
                    now=now,
                    conversation=channel,
                )
            else:
                delivery.post_thread_reply(
                    session,
                    channel=channel,
                    thread_ts=ts,
                    message=build_intake_receipt(report, locale=config.language),
                    now=now,
                    purpose="intake_receipt",
                )
                send_receipt(
                    session,
                    deps,
                    report=report,
                    reporter_id=user_id,
                    config=config,
                    now=now,
                    only_if_suggestions=True,
                )
    except IntegrityError:
        log.info("message %s/%s was filed by another delivery", channel, ts)
    except InvalidValue as error:
        with deps.transaction() as session:
            if error.code == "rate_limited":  # kept for later, said privately
                keep_for_later(
                    session,
                    deps,
                    user_id=user_id,
                    channel=channel,
                    ts=ts,
                    text=text,
                    source=draft.source,
                    why=explain(error, deps.locale_for(user_id)),
                    now=now,
                    files=files,
                )
                return
            delivery.post_thread_reply(
                session,
                channel=channel,
                thread_ts=ts,
                message=build_plain(explain(error, deps.locale_for(user_id))),
                now=now,
                purpose="intake_refused",
            )


def _edited(deps: Deps, event: dict[str, Any]) -> None:
    message = event.get("message") or {}
    channel = event.get("channel") or ""
    ts = message.get("ts")
    if not ts or message.get("bot_id"):
        return
    config = deps.config()
    now = deps.clock()
    with deps.transaction() as session:
        report = reports.update_text_from_message(
            session, channel=channel, ts=str(ts), text=unescape(message.get("text") or ""), now=now
        )
        if report is None:
            return
        delivery.refresh_card(session, report=report, config=config, now=now)
        delivery.thread_line(
            session, report=report, config=config, action="edited", actor=None, detail=None, now=now
        )
