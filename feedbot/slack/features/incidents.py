"""Incident groups in Slack: triage on their one card applies to every report in them.

A new report joins a group in `feedbot.slack.flows.file_report`; what follows the group's
triage is `feedbot.slack.flows.group_triaged`. *Merge into…* on a card moves every report of
its group into another group (`group_merged`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from feedbot.core import incidents, triage
from feedbot.core.config import RuntimeConfig
from feedbot.errors import FeedbotError
from feedbot.models import IncidentGroup
from feedbot.slack import codecs, delivery, flows, homes
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import deferred, explain, refuse, refusing
from feedbot.slack.ids import INPUT, Action, Callback, Field
from feedbot.slack.views.incident_card import build_incident_form, build_merge_form
from feedbot.slack.views.triage_forms import read_share, read_triage_form


def register(app: App, deps: Deps) -> None:
    app.action(Action.INCIDENT_ACKNOWLEDGE)(_acknowledge(deps))
    for action, callback in (
        (Action.INCIDENT_REPLY, Callback.INCIDENT_REPLY_FORM),
        (Action.INCIDENT_RESOLVE, Callback.INCIDENT_RESOLVE_FORM),
    ):
        app.action(action)(_open_form(deps, callback))
        app.view(callback)(_submitted(deps, callback))
    app.action(Action.INCIDENT_MERGE)(_open_merge_form(deps))
    app.view(Callback.INCIDENT_MERGE_FORM)(_merge_submitted(deps))


def _acknowledge(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actor = body["user"]["id"]
        config, now = deps.config(), deps.clock()
        with refusing(deps, body) as session:
            group = incidents.get_group(session, codecs.GROUP.first(body))
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
            flows.group_triaged(session, deps, outcome=outcome, config=config, now=now)

    return handle


def _led_group(session: Session, deps: Deps, group_id: int | None, actor: str) -> IncidentGroup:
    """The group a card button or form is about, if `actor` leads its channel. Whether it
    exists is said only to leaders."""
    config = deps.config()
    triage.require_leader(config, actor)
    group = incidents.get_group(session, group_id)
    if group is None:
        raise FeedbotError("That incident does not exist (any more).", code="not_found")
    triage.require_leader(config, actor, group)
    return group


def _open_form(deps: Deps, callback: Callback) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]
        with deps.transaction() as session:
            try:
                group = _led_group(session, deps, codecs.GROUP.first(body), actor)
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
    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        actor = body["user"]["id"]
        locale = deps.locale_for(actor)
        config, now = deps.config(), deps.clock()
        values = view.get("state", {}).get("values", {})
        note = read_triage_form(values, Field.NOTE)
        group_id = codecs.GROUP_FORM.decode(view)
        try:
            with Session(deps.engine) as session:  # read only: what the form can still say
                _led_group(session, deps, group_id, actor)
        except FeedbotError as error:
            ack(response_action="errors", errors={Field.NOTE: explain(error, locale)})
            return
        if deferred(context):
            ack()
            return
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
                flows.group_triaged(session, deps, outcome=outcome, config=config, now=now)
        except FeedbotError as error:
            ack(response_action="errors", errors={Field.NOTE: explain(error, locale)})
            return
        ack()

    return handle


def _open_merge_form(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]
        with deps.transaction() as session:
            try:
                group = _led_group(session, deps, codecs.GROUP.first(body), actor)
            except FeedbotError as error:
                refuse(session, deps, body, error)
                return
        client.views_open(
            trigger_id=body["trigger_id"],
            view=build_merge_form(group=group, locale=deps.locale_for(actor)),
        )

    return handle


def _merge_submitted(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        actor = body["user"]["id"]
        locale = deps.locale_for(actor)
        config, now = deps.config(), deps.clock()
        values = view.get("state", {}).get("values", {})
        raw = values.get(Field.REFERENCE, {}).get(INPUT, {}).get("value")
        group_id = codecs.GROUP_FORM.decode(view)
        try:
            with Session(deps.engine) as session:  # read only: what the form can still say
                incidents.merge_target(
                    session,
                    source=_led_group(session, deps, group_id, actor),
                    target_reference=raw if isinstance(raw, str) else "",
                    actor=actor,
                    config=config,
                )
        except FeedbotError as error:
            ack(response_action="errors", errors={Field.REFERENCE: explain(error, locale)})
            return
        if deferred(context):
            ack()
            return
        try:
            with deps.transaction() as session:
                source = incidents.get_group(session, group_id)
                if source is None:
                    raise FeedbotError(
                        "That incident does not exist (any more).", code="incident_not_found"
                    )
                outcome = incidents.merge(
                    session,
                    source=source,
                    target_reference=raw if isinstance(raw, str) else "",
                    actor=actor,
                    config=config,
                    now=now,
                )
                group_merged(session, deps, outcome=outcome, config=config, now=now)
        except FeedbotError as error:
            ack(response_action="errors", errors={Field.REFERENCE: explain(error, locale)})
            return
        ack()

    return handle


def group_merged(
    session: Session,
    deps: Deps,
    *,
    outcome: incidents.MergeOutcome,
    config: RuntimeConfig,
    now: datetime,
) -> None:
    """After a merge: both cards show it, the target's thread records it, the moved
    reports' own cards (those posted before their group formed) point at the target, and
    the source's reminders are withdrawn or say it no longer waits."""
    for group in (outcome.source, outcome.target):
        delivery.refresh_group_card(session, group=group, config=config, now=now)
    flows.group_reminders_follow(session, group=outcome.source, config=config, now=now)
    for report in outcome.moved:
        if report.card_message_id is not None:
            delivery.refresh_card(session, report=report, config=config, now=now)
        homes.report_changed(session, deps, report, actor=outcome.actor)
    delivery.line_under(
        session,
        card=delivery.group_card_entry(session, outcome.target),
        config=config,
        action="incident_merged",
        actor=outcome.actor,
        detail=outcome.source.reference,
        now=now,
    )
