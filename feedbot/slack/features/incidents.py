"""Incident groups in Slack: triage on their one card applies to every report in them.

A new report joins a group in `feedbot.slack.flows.file_report`; what follows the group's
triage is `feedbot.slack.flows.group_triaged`.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from feedbot.core import incidents, triage
from feedbot.errors import FeedbotError
from feedbot.slack import codecs, flows
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import explain, refuse, refusing
from feedbot.slack.ids import Action, Callback, Field
from feedbot.slack.views.incident_card import build_incident_form
from feedbot.slack.views.triage_forms import read_share, read_triage_form


def register(app: App, deps: Deps) -> None:
    app.action(Action.INCIDENT_ACKNOWLEDGE)(_acknowledge(deps))
    for action, callback in (
        (Action.INCIDENT_REPLY, Callback.INCIDENT_REPLY_FORM),
        (Action.INCIDENT_RESOLVE, Callback.INCIDENT_RESOLVE_FORM),
    ):
        app.action(action)(_open_form(deps, callback))
        app.view(callback)(_submitted(deps, callback))


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


def _open_form(deps: Deps, callback: Callback) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]
        with deps.transaction() as session:
            group = incidents.get_group(session, codecs.GROUP.first(body))
            try:
                triage.require_leader(deps.config(), actor)
                if group is None:
                    raise FeedbotError("That incident does not exist (any more).", code="not_found")
                triage.require_leader(deps.config(), actor, group)
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
        group_id = codecs.GROUP_FORM.decode(view)
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
