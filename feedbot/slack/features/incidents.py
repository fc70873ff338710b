"""Incident groups in Slack: their one card, and triage that applies to every report in them.

`absorb` is called for each new report, before its card would be posted; a report that joins
a group gets no card of its own, and the group's card is posted or updated instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlmodel import Session

from feedbot.core import incidents, outbox, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.errors import FeedbotError
from feedbot.models import IncidentGroup, OutboxMessage, Report
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.features import reminders
from feedbot.slack.features.common import explain, refuse
from feedbot.slack.ids import Action, Callback, Field
from feedbot.slack.views.incident_card import build_incident_card, build_incident_form
from feedbot.slack.views.report_card import build_thread_line
from feedbot.slack.views.triage_forms import read_share, read_triage_form


def register(app: App, deps: Deps) -> None:
    app.action(Action.INCIDENT_ACKNOWLEDGE)(_acknowledge(deps))
    for action, callback in (
        (Action.INCIDENT_REPLY, Callback.INCIDENT_REPLY_FORM),
        (Action.INCIDENT_RESOLVE, Callback.INCIDENT_RESOLVE_FORM),
    ):
        app.action(action)(_open_form(deps, callback))
        app.view(callback)(_submitted(deps, callback))


def absorb(session: Session, *, report: Report, config: RuntimeConfig, now: datetime) -> bool:
    """Place a new report in an incident group if it is part of a burst. True if it was (then
    the group's card speaks for it)."""
    placement = incidents.place(session, report=report, config=config, now=now)
    if placement is None:
        return False
    if placement.created:
        _post_card(session, placement.group, config, now)
    else:
        refresh_card(session, placement.group, config, now)
    return True


def _card(session: Session, group: IncidentGroup, config: RuntimeConfig) -> dict[str, Any]:
    locale = config.language_of_channel(group.leadership_channel or "")
    return build_incident_card(
        group, incidents.summarise(session, group), locale=locale
    ).to_payload()


def _post_card(
    session: Session, group: IncidentGroup, config: RuntimeConfig, now: datetime
) -> None:
    if not group.leadership_channel:
        return
    entry = outbox.enqueue(
        session,
        conversation=group.leadership_channel,
        method="chat.postMessage",
        payload=_card(session, group, config) | {"unfurl_links": False},
        purpose="incident_card",
        now=now,
    )
    group.card_message_id = entry.id
    session.add(group)


def refresh_card(
    session: Session, group: IncidentGroup, config: RuntimeConfig, now: datetime
) -> None:
    card = session.get(OutboxMessage, group.card_message_id) if group.card_message_id else None
    if card is None:
        return
    outbox.enqueue(
        session,
        conversation=card.conversation,
        method="chat.update",
        payload=_card(session, group, config),
        purpose="incident_card_update",
        update_of=card,
        now=now,
    )


def _apply(
    session: Session,
    deps: Deps,
    outcome: incidents.GroupOutcome,
    config: RuntimeConfig,
    now: datetime,
) -> None:
    """The group card, each member's own card (if it had one), a thread line, the notices."""
    group = outcome.group
    refresh_card(session, group, config, now)
    for member in outcome.outcomes:
        delivery.refresh_card(session, report=member.report, config=config, now=now)
        reminders.on_outcome(
            session,
            outcome=member,
            config=config,
            locale_for=deps.locale_for,
            timezone_for=deps.timezone_for,
            now=now,
        )
        deps.report_changed(session, member.report)
    card = session.get(OutboxMessage, group.card_message_id) if group.card_message_id else None
    if card is not None:
        line = build_thread_line(
            locale=config.language_of_channel(card.conversation),
            action=f"incident_{outcome.action}",
            actor=outcome.actor,
            detail=str(len(outcome.changed)),
        )
        delivery.post(
            session,
            conversation=card.conversation,
            message=line,
            now=now,
            purpose="thread_line",
            thread_of=card,
        )
    delivery.notify(
        session,
        notices=outcome.notices,
        locale_for=deps.locale_for,
        now=now,
        identities=deps.identities,
    )


def _group_id(body: dict[str, Any]) -> int | None:
    try:
        return int(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _acknowledge(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actor = body["user"]["id"]
        config, now = deps.config(), deps.clock()
        with deps.transaction() as session:
            group = incidents.get_group(session, _group_id(body))
            try:
                if group is None:
                    raise FeedbotError("That incident does not exist (any more).", code="not_found")
                outcome = incidents.acknowledge(
                    session,
                    group=group,
                    actor=actor,
                    config=config,
                    now=now,
                    identities=deps.identities,
                )
            except FeedbotError as error:
                session.rollback()
                refuse(session, deps, body, error)
                return
            _apply(session, deps, outcome, config, now)

    return handle


def _open_form(deps: Deps, callback: Callback) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]
        with deps.transaction() as session:
            group = incidents.get_group(session, _group_id(body))
            try:
                triage.require_leader(deps.config(), actor)
                if group is None:
                    raise FeedbotError("That incident does not exist (any more).", code="not_found")
            except FeedbotError as error:
                refuse(session, deps, body, error)
                return
        client.views_open(
            trigger_id=body["trigger_id"],
            view=build_incident_form(
                callback,
                group=group,
                locale=deps.locale_for(actor),
                confidential=deps.config().is_confidential(group.category),
            ),
        )

    return handle


def _submitted(deps: Deps, callback: Callback) -> Any:
    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        actor = body["user"]["id"]
        locale = deps.locale_for(actor)
        config, now = deps.config(), deps.clock()
        values = view.get("state", {}).get("values", {})
        note = read_triage_form(values, Field.NOTE)
        try:
            group_id = int(json.loads(view.get("private_metadata") or "{}")["group_id"])
        except (KeyError, TypeError, ValueError):
            group_id = None
        try:
            with deps.transaction() as session:
                group = incidents.get_group(session, group_id)
                if group is None:
                    raise FeedbotError("That incident does not exist (any more).", code="not_found")
                if callback == Callback.INCIDENT_REPLY_FORM:
                    outcome = incidents.reply(
                        session,
                        group=group,
                        actor=actor,
                        text=note,
                        config=config,
                        now=now,
                        identities=deps.identities,
                    )
                else:
                    outcome = incidents.resolve(
                        session,
                        group=group,
                        actor=actor,
                        note=note,
                        config=config,
                        now=now,
                        identities=deps.identities,
                        share=read_share(values),
                    )
                _apply(session, deps, outcome, config, now)
        except FeedbotError as error:
            ack(response_action="errors", errors={Field.NOTE: explain(error, locale)})
            return
        ack()

    return handle
