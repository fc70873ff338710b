"""Webhooks from Slack: admins list, add and remove receivers of report events in a modal
opened from the settings (`/feedback admin`, the Home tab). Admins only, checked on every
action and submission; the secret of a new webhook is shown once, in the modal."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from feedbot.core import webhooks
from feedbot.errors import FeedbotError, InvalidValue
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import explain
from feedbot.slack.i18n import t
from feedbot.slack.ids import INPUT, Action, Callback
from feedbot.slack.views.webhooks import EVENTS_BLOCK, URL_BLOCK, build_webhooks_form

log = logging.getLogger(__name__)


def register(app: App, deps: Deps) -> None:
    app.action(Action.EDIT_WEBHOOKS)(_open(deps))
    app.action(Action.REMOVE_WEBHOOK)(_remove(deps))
    app.view(Callback.WEBHOOKS_FORM)(_submitted(deps))


def _refuse(deps: Deps, user_id: str, locale: str) -> None:
    with deps.transaction() as session:
        delivery.ephemeral(
            session,
            channel=user_id,
            user=user_id,
            text=t(locale, "admin.not_admin"),
            now=deps.clock(),
        )


def _form(deps: Deps, locale: str, added: webhooks.Added | None = None) -> Any:
    with deps.transaction() as session:
        return build_webhooks_form(webhooks.health(session), locale=locale, added=added)


def _open(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        if not deps.config().is_admin(user_id):
            _refuse(deps, user_id, locale)
            return
        form = _form(deps, locale)
        in_modal = (body.get("container") or {}).get("type") == "view" and (
            body.get("view") or {}
        ).get("type") == "modal"
        if in_modal:
            client.views_push(trigger_id=body["trigger_id"], view=form)
        else:
            client.views_open(trigger_id=body["trigger_id"], view=form)

    return handle


def _remove(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        if not deps.config().is_admin(user_id):
            log.warning("webhook removal by non-admin %s refused", user_id)
            _refuse(deps, user_id, locale)
            return
        raw = str(body["actions"][0].get("value") or "")
        try:
            with deps.transaction() as session:
                webhooks.remove(
                    session, webhook_id=int(raw) if raw.isdigit() else 0, actor=user_id,
                    now=deps.clock(),
                )  # fmt: skip
        except FeedbotError:
            pass  # removed already (a second press): the form shows what is left
        view = body.get("view") or {}
        if view.get("id"):
            client.views_update(view_id=view["id"], view=_form(deps, locale))

    return handle


def _submitted(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        if not deps.config().is_admin(user_id):
            log.warning("webhook submission by non-admin %s refused", user_id)
            ack(response_action="errors", errors={URL_BLOCK: t(locale, "admin.not_admin")})
            return
        values = (view.get("state") or {}).get("values") or {}
        url = str(((values.get(URL_BLOCK) or {}).get(INPUT) or {}).get("value") or "").strip()
        chosen = ((values.get(EVENTS_BLOCK) or {}).get(INPUT) or {}).get("selected_options")
        events = [str(option.get("value")) for option in chosen or []]
        if not url and not events:
            ack()  # nothing to add: the admin only looked
            return
        try:
            with deps.transaction() as session:
                added = webhooks.add(
                    session,
                    url=url,
                    events=events,
                    identities=deps.identities,
                    actor=user_id,
                    now=deps.clock(),
                )
        except InvalidValue as error:
            block = EVENTS_BLOCK if error.field == "events" else URL_BLOCK
            ack(response_action="errors", errors={block: explain(error, locale)})
            return
        ack(response_action="update", view=_form(deps, locale, added))

    return handle
