"""Filing reports: `/feedback`, the report form, the message shortcut, *me too*, *add details*."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from feedbot.core import own_reports, reports, triage
from feedbot.core.reports import ReportDraft
from feedbot.errors import FeedbotError, InvalidValue, NotFound
from feedbot.models import ReportSource
from feedbot.slack import codecs, delivery, flows, homes
from feedbot.slack.deps import Deps
from feedbot.slack.features import reminders as reminder_feature
from feedbot.slack.features.common import (
    SUBCOMMANDS_ELSEWHERE,
    deferred,
    explain,
    first_word,
    incoming_files,
    replayed,
    tell,
)
from feedbot.slack.flows import file_report, suggestions
from feedbot.slack.i18n import t
from feedbot.slack.ids import COMMAND, Action, Callback
from feedbot.slack.text import unescape
from feedbot.slack.views.notices import (
    build_command_refused,
    build_my_reports,
    build_plain,
    build_receipt,
)
from feedbot.slack.views.report_form import (
    FormContext,
    build_report_form,
    read_form_files,
    read_report_form,
)
from feedbot.slack.workspace import message_link

log = logging.getLogger(__name__)

EXPIRED_TRIGGER = frozenset({"expired_trigger_id", "exchanged_trigger_id"})
"""Slack's errors for a `trigger_id` it no longer takes."""

MINE_LIMIT = 20


def register(app: App, deps: Deps) -> None:
    app.command(COMMAND, matchers=[lambda body: first_word(body) not in SUBCOMMANDS_ELSEWHERE])(
        _command(deps)
    )
    app.view(Callback.REPORT_FORM)(_form_submitted(deps))
    app.shortcut(Callback.REPORT_SHORTCUT)(_shortcut(deps))
    app.action(Action.OPEN_FORM)(_open_blank_form(deps))
    app.action(Action.ADD_DETAILS)(_add_details(deps))
    app.action(Action.ME_TOO)(_me_too(deps))
    app.action(Action.ME_TOO_INSTEAD)(_me_too_instead(deps))


def open_form(
    client: WebClient,
    deps: Deps,
    *,
    trigger_id: str,
    user_id: str,
    context: FormContext,
    prefill: ReportDraft | None = None,
    notice: str | None = None,
    locale: str | None = None,
) -> None:
    """Open the report form in the person's language: `locale` when the caller has it
    already (a request waits for a slow `users.info` once, not once per look)."""
    view = build_report_form(
        config=deps.config(),
        locale=locale or deps.locale_for(user_id),
        context=context,
        prefill=prefill,
        notice=notice,
    )
    client.views_open(trigger_id=trigger_id, view=view)


def _command(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        user_id = body["user_id"]
        text = (body.get("text") or "").strip()
        word = text.lower()
        locale = deps.locale_for(user_id)
        if word == "help":
            intake = deps.config().intake_channels
            channels = (
                t(locale, "help.intake", channels=", ".join(f"<#{c}>" for c in intake))
                if intake
                else ""
            )
            ack(**build_plain(t(locale, "help.text", intake=channels)).to_payload())
            return
        if word == "mine":
            with deps.transaction() as session:
                summaries = own_reports.reports_by(
                    session, user_id=user_id, identities=deps.identities, limit=MINE_LIMIT
                )
                follow_ups = reminder_feature.mine(session, deps, user_id=user_id, locale=locale)
            message = build_my_reports(summaries, locale=locale, limit=MINE_LIMIT)
            message.blocks += follow_ups  # a leader's open follow-ups (reminders feature)
            ack(**message.to_payload())
            return
        if not text:
            ack()
            open_form(
                client,
                deps,
                trigger_id=body["trigger_id"],
                user_id=user_id,
                context=FormContext(),
                locale=locale,
            )
            return
        now = deps.clock()
        try:
            with deps.transaction() as session:
                report = file_report(
                    session,
                    deps,
                    reporter_id=user_id,
                    draft=ReportDraft(text=text, source=ReportSource.COMMAND),
                    config=deps.config(),
                    now=now,
                    receipt=False,
                )
                similar, solved = suggestions(session, deps, report, asker=user_id)
        except InvalidValue as error:
            if error.code == "rate_limited":  # kept as a draft in the form, to send later
                notice = explain(error, locale)
                if _kept_in_form(client, deps, body, text=text, notice=notice, locale=locale):
                    ack()
                    return
                refused = build_command_refused(
                    explain(error, locale, kept=False), text, locale=locale
                )
                ack(**refused.to_payload())
                return
            ack(**build_plain(explain(error, locale)).to_payload())
            return
        receipt = build_receipt(
            report,
            locale=locale,
            similar=similar,
            solved_before=solved,
            leadership_ready=bool(report.leadership_channel),
            details_button=True,
            key="command.filed",
        )
        ack(**receipt.to_payload())

    return handle


def _kept_in_form(
    client: WebClient, deps: Deps, body: dict[str, Any], *, text: str, notice: str, locale: str
) -> bool:
    """Open the report form with `text` in it and `notice` on top; False when Slack no
    longer lets it open. A command waits in the inbox before its work is done, and its
    `trigger_id` expires 3 seconds after the person sent it."""
    try:
        open_form(
            client,
            deps,
            trigger_id=body["trigger_id"],
            user_id=body["user_id"],
            context=FormContext(),
            prefill=ReportDraft(text=text[: reports.MAX_TEXT], source=ReportSource.MODAL),
            notice=notice,
            locale=locale,
        )
    except SlackApiError as failure:
        error = failure.response.get("error")
        if error not in EXPIRED_TRIGGER and error != "ratelimited":
            raise
        # Either way the person gets their text back with the reason it was not filed.
        log.info("the form for a rate-limited command could not open: %s", error)
        return False
    return True


def _form_submitted(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        form = FormContext.decode(view.get("private_metadata"))
        config = deps.config()
        now = deps.clock()
        try:
            values = view.get("state", {}).get("values", {})
            draft = read_report_form(values, form)
            files = read_form_files(values, form)
            # Checked here (reading only), so the form can still say what to change.
            reports.validate(draft, config)
            with Session(deps.engine) as session:
                if form.report_id is None:
                    reports.check_rate(
                        session,
                        user_id=user_id,
                        identities=deps.identities,
                        config=config,
                        now=now,
                    )
                else:
                    own = reports.get_report(session, form.report_id)
                    if not reports.is_reporter(own, user_id, deps.identities):
                        raise NotFound("You can only add details to your own reports.")
            if deferred(context):
                ack()
                return
            with deps.transaction() as session:
                if form.report_id is not None:
                    report = reports.get_report(session, form.report_id)
                    reports.update_details(
                        session,
                        report=report,
                        reporter_id=user_id,
                        draft=draft,
                        config=config,
                        now=now,
                        identities=deps.identities,
                    )
                    delivery.refresh_card(session, report=report, config=config, now=now)
                    delivery.thread_line(
                        session,
                        report=report,
                        config=config,
                        action="details",
                        actor=None,
                        detail=None,
                        now=now,
                    )
                    if files:
                        flows.files_added(
                            session,
                            deps,
                            report=report,
                            files=files,
                            reporter_id=user_id,
                            config=config,
                            now=now,
                        )
                    delivery.dm(
                        session,
                        user=user_id,
                        message=build_plain(t(locale, "details.saved", ref=report.reference)),
                        now=now,
                        purpose="details_saved",
                        sealed_by=deps.identities if report.anonymous else None,
                        about=report.id,
                    )
                else:
                    file_report(
                        session,
                        deps,
                        reporter_id=user_id,
                        draft=draft,
                        config=config,
                        now=now,
                        files=files,
                    )
        except InvalidValue as error:
            # After the form closed (a replay), nothing keeps what was entered but the DM
            # that quotes it: the error says to send it again.
            shown = explain(error, locale, kept=not replayed(context))
            ack(response_action="errors", errors={error.field or "text": shown})
            return
        except FeedbotError as error:
            ack(response_action="errors", errors={"text": explain(error, locale)})
            return
        ack()

    return handle


def _shortcut(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id")
        ts = message.get("ts")
        link = deps.workspace.message_link(channel, ts) or message_link(
            _team_url(body), channel, ts
        )
        context = FormContext(
            source=ReportSource.SHORTCUT,
            source_permalink=link,
            files=tuple(incoming_files(message.get("files"))),
        )
        prefill = ReportDraft(
            text=unescape(message.get("text") or "")[: reports.MAX_TEXT],
            source=ReportSource.SHORTCUT,
        )
        open_form(
            client,
            deps,
            trigger_id=body["trigger_id"],
            user_id=body["user"]["id"],
            context=context,
            prefill=prefill,
        )

    return handle


def _team_url(body: dict[str, Any]) -> str | None:
    """The workspace's address from an interaction's `team.domain`, while `auth.test`'s is
    not known yet."""
    domain = (body.get("team") or {}).get("domain")
    return f"https://{domain}.slack.com/" if isinstance(domain, str) and domain else None


def _open_blank_form(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        open_form(
            client,
            deps,
            trigger_id=body["trigger_id"],
            user_id=body["user"]["id"],
            context=FormContext(),
        )

    return handle


def _add_details(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        report_id = codecs.REPORT.first(body)
        with deps.transaction() as session:
            report = reports.find_report(session, report_id)
            if report is None or not reports.is_reporter(report, user_id, deps.identities):
                tell(session, deps, body, t(deps.locale_for(user_id), "error.not_found"))
                return
            prefill = ReportDraft(
                text=report.text[: reports.MAX_TEXT],
                source=report.source,
                category=report.category,
                location=report.location,
                urgency=report.urgency,
                customers_affected=report.customers_affected,
                callback_requested=report.callback_requested,
                customer_contact=report.customer_contact,
                anonymous=report.anonymous,
            )
        open_form(
            client,
            deps,
            trigger_id=body["trigger_id"],
            user_id=user_id,
            context=FormContext(source=report.source, report_id=report.id),
            prefill=prefill,
        )

    return handle


def _me_too(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        now = deps.clock()
        config = deps.config()
        with deps.transaction() as session:
            report = reports.find_report(session, codecs.REPORT.first(body))
            if report is None:
                text = t(locale, "error.not_found")
            elif reports.is_reporter(report, user_id, deps.identities):
                text = t(locale, "me_too.own", ref=report.reference)
            elif reports.add_me_too(
                session, report=report, user_id=user_id, now=now, identities=deps.identities
            ):
                delivery.refresh_card(session, report=report, config=config, now=now)
                homes.report_changed(session, deps, report, actor=user_id)
                text = t(locale, "me_too.added", ref=report.reference)
            else:
                text = t(locale, "me_too.already", ref=report.reference)
            tell(session, deps, body, text, anonymously_about=report.id if report else None)

    return handle


def _me_too_instead(deps: Deps) -> Any:
    """From the receipt: my new report is the same as an open one; count me there instead."""

    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        now = deps.clock()
        config = deps.config()
        pair = codecs.REPORT_AND_TARGET.decode(body)
        if pair is None:
            log.warning("me-too-instead with a malformed value from %s", user_id)
            return
        own_id, target_id = pair
        with deps.transaction() as session:
            try:
                own = reports.get_report(session, own_id)
                target = reports.get_report(session, target_id)
                outcome = triage.merge_duplicate(
                    session,
                    report=own,
                    target=target,
                    actor=user_id,
                    config=config,
                    now=now,
                    identities=deps.identities,
                    by_reporter=True,
                )
            except FeedbotError as error:
                text = explain(error, locale)
            else:
                flows.report_triaged(session, deps, outcome=outcome, config=config, now=now)
                delivery.refresh_card(session, report=target, config=config, now=now)
                delivery.thread_line(
                    session,
                    report=target,
                    config=config,
                    action="merged_in",
                    actor=None,
                    detail=own.reference,
                    now=now,
                )
                text = t(locale, "me_too.instead", ref=own.reference, target=target.reference)
            tell(session, deps, body, text, anonymously_about=target_id)

    return handle
