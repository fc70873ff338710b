"""Reporters talk back: *Reply* on a notice, and direct messages that may be answers.

See `feedbot.core.conversation`; `feedbot.slack.flows.reporter_answered` puts an answer in
the card's thread, naming nobody when the report is anonymous.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from feedbot.core import conversation, reports
from feedbot.core.attachments import IncomingFile
from feedbot.core.reports import ReportDraft
from feedbot.errors import FeedbotError
from feedbot.models import ReportSource
from feedbot.slack import codecs, delivery, flows
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import deferred, explain, refuse, refusing
from feedbot.slack.flows import file_report, send_receipt
from feedbot.slack.ids import INPUT, Action, Callback, Field
from feedbot.slack.views.notices import (
    build_dm_question,
    build_kept_message,
    build_reporter_reply_form,
)

ABOUT = re.compile(rf"^{Action.DM_ABOUT_REPORT}-\d+$")


def register(app: App, deps: Deps) -> None:
    app.action(Action.REPORTER_REPLY)(_open_reply_form(deps))
    app.view(Callback.REPORTER_REPLY_FORM)(_reply_submitted(deps))
    app.action(Action.DM_NEW_REPORT)(_draft_is_a_report(deps))
    app.action(ABOUT)(_draft_is_an_answer(deps))


def ask_about(
    session: Session,
    deps: Deps,
    *,
    user_id: str,
    channel: str,
    ts: str,
    text: str,
    now: datetime,
    files: Sequence[IncomingFile] = (),
) -> bool:
    """If a direct message could be about one of its author's recent reports, keep it and ask
    them what it is (True); else leave it to be filed as a new report (False)."""
    identities = deps.identities
    choices = conversation.recent_reports(session, user_id=user_id, identities=identities, now=now)
    if not choices:
        return False
    draft = conversation.keep_draft(
        session,
        user_id=user_id,
        channel=channel,
        ts=ts,
        text=text,
        identities=identities,
        now=now,
        files=files,
    )
    delivery.dm(
        session,
        user=user_id,
        message=build_dm_question(draft.id or 0, choices, locale=deps.locale_for(user_id)),
        now=now,
        purpose="dm_question",
        sealed_by=identities,  # it names their reports, anonymous ones too
        about=f"draft-{draft.id}",
    )
    return True


def keep_for_later(
    session: Session,
    deps: Deps,
    *,
    user_id: str,
    channel: str,
    ts: str,
    text: str,
    source: ReportSource,
    why: str,
    now: datetime,
    files: Sequence[IncomingFile] = (),
) -> None:
    """A message that cannot be filed now (its author is over the rate limit): kept, with a
    direct message saying `why` and offering to send it later."""
    draft = conversation.keep_draft(
        session,
        user_id=user_id,
        channel=channel,
        ts=ts,
        text=text,
        identities=deps.identities,
        now=now,
        source=source,
        files=files,
    )
    delivery.dm(
        session,
        user=user_id,
        message=build_kept_message(draft.id or 0, why, locale=deps.locale_for(user_id)),
        now=now,
        purpose="draft_kept",
        sealed_by=deps.identities,
        about=f"draft-{draft.id}",
    )


def _open_reply_form(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        with deps.transaction() as session:
            report = reports.find_report(session, codecs.REPORT.first(body))
            if report is None or not reports.is_reporter(report, user_id, deps.identities):
                refuse(session, deps, body, FeedbotError("not yours", code="not_found"))
                return
        view = build_reporter_reply_form(report, locale=deps.locale_for(user_id))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    return handle


def _reply_submitted(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        state = view.get("state", {}).get("values", {}).get(Field.TEXT, {}).get(INPUT, {})
        text = str(state.get("value") or "") if isinstance(state, dict) else ""
        report_id = codecs.REPORT_FORM.decode(view) or 0
        if deferred(context):
            ack()
            return
        try:
            with deps.transaction() as session:
                report = reports.get_report(session, report_id)
                answer = conversation.reporter_reply(
                    session,
                    report=report,
                    user_id=user_id,
                    text=text,
                    identities=deps.identities,
                    now=deps.clock(),
                )
                flows.reporter_answered(session, deps, report=report, text=answer, user_id=user_id)
        except FeedbotError as error:
            ack(response_action="errors", errors={Field.TEXT: explain(error, locale)})
            return
        ack()

    return handle


def _draft_is_a_report(deps: Deps) -> Any:
    """*New report*: the kept message is filed, under the author's name, like any DM."""

    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        user_id = body["user"]["id"]
        now = deps.clock()
        config = deps.config()
        with refusing(deps, body) as session:
            draft, origin = conversation.take_draft(
                session,
                draft_id=codecs.DRAFT.first(body),
                user_id=user_id,
                identities=deps.identities,
            )
            report = file_report(
                session,
                deps,
                reporter_id=user_id,
                draft=ReportDraft(
                    text=draft.text,
                    source=origin.source,
                    source_channel=origin.channel or None,
                    source_ts=origin.ts or None,
                    source_permalink=deps.workspace.message_link(origin.channel, origin.ts),
                ),
                config=config,
                now=now,
                receipt=False,
                files=origin.files,
            )
            is_dm = origin.source == ReportSource.DIRECT_MESSAGE
            send_receipt(
                session,
                deps,
                report=report,
                reporter_id=user_id,
                config=config,
                now=now,
                conversation=origin.channel if is_dm and origin.channel else None,
            )

    return handle


def _draft_is_an_answer(deps: Deps) -> Any:
    """*About FB-1042*: the kept message goes to that report's thread, as an answer."""

    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        user_id = body["user"]["id"]
        draft_id, report_id = codecs.DRAFT_AND_REPORT.decode(body) or (None, None)
        with refusing(deps, body) as session:
            report = reports.get_report(session, report_id or 0)
            draft, origin = conversation.take_draft(
                session, draft_id=draft_id, user_id=user_id, identities=deps.identities
            )
            answer = conversation.reporter_reply(
                session,
                report=report,
                user_id=user_id,
                text=draft.text,
                identities=deps.identities,
                now=deps.clock(),
            )
            flows.reporter_answered(session, deps, report=report, text=answer, user_id=user_id)
            if origin.files:  # "here is the photo": it joins the report
                flows.files_added(
                    session,
                    deps,
                    report=report,
                    files=origin.files,
                    reporter_id=user_id,
                    config=deps.config(),
                    now=deps.clock(),
                )

    return handle
