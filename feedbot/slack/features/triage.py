"""Leaders act on a report from its card: the buttons, the small forms behind them.

Roles are checked on the server for every action and every form submission (in
`feedbot.core.triage`), whatever the client sent. A refused action changes nothing and
explains itself in an ephemeral message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from feedbot.core import attachments, reports, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.config_values import CHANNEL_ID
from feedbot.core.identity import Identities
from feedbot.errors import FeedbotError, InvalidValue
from feedbot.models import Report
from feedbot.slack import codecs, delivery, flows
from feedbot.slack import files as slack_files
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import (
    deferred,
    explain,
    membership_problems,
    refuse,
    refusing,
    replayed,
    reply_channel,
)
from feedbot.slack.i18n import t
from feedbot.slack.ids import Action, Callback
from feedbot.slack.text import escape
from feedbot.slack.views.notices import build_plain
from feedbot.slack.views.report_card import build_forwarded_copy
from feedbot.slack.views.triage_forms import (
    FORMS,
    build_triage_form,
    read_share,
    read_triage_form,
)

log = logging.getLogger(__name__)

BUTTONS: dict[Action, Callable[..., triage.Outcome]] = {
    Action.ACKNOWLEDGE: triage.acknowledge,
    Action.CLAIM: triage.claim,
    Action.REOPEN: triage.reopen,
}

FORM_BUTTONS: dict[Action, Callback] = {
    Action.REPLY: Callback.REPLY_FORM,
    Action.FORWARD: Callback.FORWARD_FORM,
    Action.RESOLVE: Callback.RESOLVE_FORM,
    Action.DUPLICATE: Callback.DUPLICATE_FORM,
    Action.CUSTOMER_CALLED: Callback.CALLED_FORM,
}


def register(app: App, deps: Deps) -> None:
    for action in BUTTONS:
        app.action(action)(_button(deps, action))
    for action, callback in FORM_BUTTONS.items():
        app.action(action)(_open_form(deps, callback))
        app.view(callback)(_form_submitted(deps, callback))
    app.action(Action.ASSIGN)(_assign(deps))
    app.action(Action.REVEAL_CONTACT)(_reveal(deps))


def _actor_and_report(body: dict[str, Any]) -> tuple[str, int | None]:
    actor = body["user"]["id"]
    action = codecs.pressed(body)
    if "value" in action:
        return actor, codecs.REPORT.first(body)
    # The assign select carries no value of its own: the report is in its block id.
    return actor, codecs.positive_id(str(action.get("block_id", "")).rsplit("-", 1)[-1])


def _run(
    deps: Deps,
    body: dict[str, Any],
    act: Callable[[Session, Report, str, RuntimeConfig], triage.Outcome],
) -> None:
    actor, report_id = _actor_and_report(body)
    config = deps.config()
    now = deps.clock()
    with refusing(deps, body) as session:
        report = reports.get_report(session, report_id or 0)
        outcome = act(session, report, actor, config)
        flows.report_triaged(session, deps, outcome=outcome, config=config, now=now)


def _button(deps: Deps, action: Action) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _run(
            deps,
            body,
            lambda s, r, a, c: BUTTONS[action](
                s, report=r, actor=a, config=c, now=deps.clock(), identities=deps.identities
            ),
        )

    return handle


def _assign(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        assignee = str(body["actions"][0].get("selected_user") or "")
        _run(
            deps,
            body,
            lambda s, r, a, c: triage.assign(
                s,
                report=r,
                actor=a,
                assignee=assignee,
                config=c,
                now=deps.clock(),
                identities=deps.identities,
            ),
        )

    return handle


def _reveal(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actor, report_id = _actor_and_report(body)
        with refusing(deps, body) as session:
            report = reports.get_report(session, report_id or 0)
            contact = triage.reveal_contact(
                session, report=report, actor=actor, config=deps.config(), now=deps.clock()
            )
            text = t(
                deps.locale_for(actor),
                "contact.reveal",
                ref=report.reference,
                contact=escape(contact),
            )
            delivery.ephemeral(
                session, channel=reply_channel(body), user=actor, text=text, now=deps.clock()
            )

    return handle


def _open_form(deps: Deps, callback: Callback) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        actor, report_id = _actor_and_report(body)
        config = deps.config()
        with deps.transaction() as session:
            try:
                triage.require_leader(config, actor)
                report = reports.get_report(session, report_id or 0)
                triage.require_leader(config, actor, report)
            except FeedbotError as error:
                refuse(session, deps, body, error)
                return
        view = build_triage_form(
            callback,
            report=report,
            locale=deps.locale_for(actor),
            confidential=config.is_confidential(report.category),
        )
        client.views_open(trigger_id=body["trigger_id"], view=view)

    return handle


def _form_submitted(deps: Deps, callback: Callback) -> Any:
    field = FORMS[callback][3]

    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        actor = body["user"]["id"]
        locale = deps.locale_for(actor)
        config = deps.config()
        now = deps.clock()
        values = view.get("state", {}).get("values", {})
        value = read_triage_form(values, field)
        report_id = codecs.REPORT_FORM.decode(view)
        if report_id is None:
            ack(response_action="errors", errors={field: t(locale, "error.not_found")})
            return
        forward_to = value if callback == Callback.FORWARD_FORM else None
        if forward_to and CHANNEL_ID.match(forward_to) and not replayed(context):
            refused, _unknown = membership_problems(deps, {field: [forward_to]}, locale)
            if refused:  # a channel Slack did not answer for in time: the post tells later
                ack(response_action="errors", errors=refused)
                return
        try:
            with Session(deps.engine) as session:  # read only: what the form can still say
                report = reports.get_report(session, report_id)
                triage.require_leader(config, actor, report)
                if callback == Callback.DUPLICATE_FORM:
                    target = reports.get_report(session, reports.parse_reference(value or ""))
                    triage.check_duplicate_target(report, target)
        except FeedbotError as error:
            ack(response_action="errors", errors={field: explain(error, locale)})
            return
        if deferred(context):
            ack()
            return
        try:
            with deps.transaction() as session:
                report = reports.get_report(session, report_id)
                outcome = _submit(
                    session,
                    callback,
                    report=report,
                    actor=actor,
                    value=value,
                    config=config,
                    now=now,
                    identities=deps.identities,
                    share=read_share(values),
                )
                flows.report_triaged(session, deps, outcome=outcome, config=config, now=now)
                if callback == Callback.FORWARD_FORM:
                    _forward(session, report, channel=value, actor=actor, config=config, now=now)
                if callback == Callback.DUPLICATE_FORM and report.duplicate_of_id is not None:
                    target = reports.get_report(session, report.duplicate_of_id)
                    delivery.refresh_card(session, report=target, config=config, now=now)
                    delivery.thread_line(
                        session,
                        report=target,
                        config=config,
                        action="merged_in",
                        actor=actor,
                        detail=report.reference,
                        now=now,
                    )
        except FeedbotError as error:
            ack(response_action="errors", errors={field: explain(error, locale)})
            return
        ack()

    return handle


def _forward(
    session: Session,
    report: Report,
    *,
    channel: str,
    actor: str,
    config: RuntimeConfig,
    now: datetime,
) -> None:
    """Post the report's copy in `channel`, with copies of its files in that post's thread;
    if Slack refuses it, the card's thread says so."""
    copy = build_forwarded_copy(
        report,
        locale=config.language,
        actor=actor,
        files=attachments.summarise(session, report.id),
    )
    card = delivery.card_entry(session, report)
    locale = config.language_of_channel(card.conversation if card else "")
    failed = build_plain(t(locale, "forward.failed", channel=channel, error="{error}"))
    forwarded = delivery.post(
        session,
        conversation=channel,
        message=copy,
        now=now,
        purpose="forward",
        on_failure=failed,
        on_failure_thread_of=card,
    )
    slack_files.queue_forwarded_copies(session, report=report, forwarded=forwarded, now=now)


def _submit(
    session: Session,
    callback: Callback,
    *,
    report: Report,
    actor: str,
    value: str,
    config: RuntimeConfig,
    now: Any,
    identities: Identities,
    share: bool,
) -> triage.Outcome:
    common: dict[str, Any] = {"report": report, "actor": actor, "config": config, "now": now}
    if callback == Callback.REPLY_FORM:
        return triage.reply(session, text=value, identities=identities, **common)
    if callback == Callback.FORWARD_FORM:
        return triage.forward(session, channel=value, **common)
    if callback == Callback.RESOLVE_FORM:
        return triage.resolve(session, note=value, identities=identities, share=share, **common)
    if callback == Callback.CALLED_FORM:
        return triage.record_customer_called(session, note=value, identities=identities, **common)
    if callback == Callback.DUPLICATE_FORM:
        target = reports.get_report(session, reports.parse_reference(value))
        return triage.merge_duplicate(session, target=target, identities=identities, **common)
    raise InvalidValue(f"unknown form {callback}")
