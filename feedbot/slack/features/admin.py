"""Settings from Slack: `/feedback admin` and the Home tab's edit buttons open one form per
group of settings. Admins only, checked on every action and submission; every change goes
through `feedbot.core.config.set_value`, which validates it and writes the audit log."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from feedbot.core import config as runtime_config
from feedbot.errors import InvalidValue
from feedbot.slack import codecs, delivery, homes
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import (
    check_later,
    deferred,
    explain,
    membership_problems,
    replayed,
    subcommand,
)
from feedbot.slack.i18n import t
from feedbot.slack.ids import COMMAND, Action, Callback
from feedbot.slack.views.admin import (
    CHANNEL_KINDS,
    GROUPS,
    build_group_form,
    build_settings_picker,
    channels_in,
    read_group_form,
)
from feedbot.slack.views.notices import build_plain

log = logging.getLogger(__name__)


def register(app: App, deps: Deps) -> None:
    app.command(COMMAND, matchers=[subcommand("admin")])(_command(deps))
    app.action(Action.EDIT_SETTINGS)(_edit(deps))
    app.view(Callback.SETTINGS_FORM)(_submitted(deps))


def _command(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        user_id = body["user_id"]
        locale = deps.locale_for(user_id)
        if not deps.config().is_admin(user_id):
            ack(**build_plain(t(locale, "admin.not_admin")).to_payload())
            return
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=build_settings_picker(locale=locale))

    return handle


def _edit(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        config = deps.config()
        group = str(body["actions"][0].get("value") or "")
        if not config.is_admin(user_id) or group not in GROUPS:
            with deps.transaction() as session:
                delivery.ephemeral(
                    session,
                    channel=user_id,
                    user=user_id,
                    text=t(locale, "admin.not_admin"),
                    now=deps.clock(),
                )
            return
        form = build_group_form(group, config=config, locale=locale)
        if (body.get("container") or {}).get("type") == "view" and body.get("view", {}).get(
            "type"
        ) == "modal":
            client.views_push(trigger_id=body["trigger_id"], view=form)
        else:
            client.views_open(trigger_id=body["trigger_id"], view=form)

    return handle


def _parsed(raw: dict[str, str]) -> dict[str, Any]:
    """The typed values of a form's settings that parse: the checks of each read the others
    as they are about to be, not as they were."""
    typed: dict[str, Any] = {}
    for key, value in raw.items():
        with contextlib.suppress(InvalidValue):
            typed[key] = runtime_config.parse_value(key, value)
    return typed


def _submitted(deps: Deps) -> Any:
    def handle(
        ack: Ack,
        body: dict[str, Any],
        view: dict[str, Any],
        client: WebClient,
        context: BoltContext,
    ) -> None:
        user_id = body["user"]["id"]
        locale = deps.locale_for(user_id)
        config = deps.config()
        group = codecs.SETTINGS_FORM.decode(view)
        if group not in GROUPS:
            ack(response_action="errors", errors={})
            return
        fields = {field.key: field for field in GROUPS[group]}
        first = next(iter(fields))
        if not config.is_admin(user_id):
            log.warning("settings submission by non-admin %s refused", user_id)
            ack(response_action="errors", errors={first: t(locale, "admin.not_admin")})
            return
        raw = read_group_form(group, view.get("state", {}).get("values", {}))
        errors: dict[str, str] = {}
        named: dict[str, list[str]] = {}
        together = _parsed(raw)
        with Session(deps.engine) as reading:  # what `set_value` would refuse, said in the form
            for key, value in raw.items():
                try:
                    runtime_config.check_value(
                        reading,
                        key=key,
                        raw=value,
                        actor=user_id,
                        bootstrap_admins=config.bootstrap_admins,
                        together=together,
                    )
                except InvalidValue as error:
                    errors[key] = explain(error, locale)
                    continue
                if fields[key].kind in CHANNEL_KINDS:
                    named[key] = channels_in(fields[key].kind, value)
        refused, unchecked = (
            ({}, []) if replayed(context) else membership_problems(deps, named, locale)
        )
        errors |= refused
        if errors:
            ack(response_action="errors", errors=errors)
            return
        if deferred(context):
            ack(response_action="clear")
            if unchecked:
                check_later(deps, user_id=user_id, channels=unchecked)
            return
        try:
            with deps.transaction() as session:
                for key, value in raw.items():
                    runtime_config.set_value(
                        session,
                        key=key,
                        raw=value,
                        actor=user_id,
                        now=deps.clock(),
                        bootstrap_admins=config.bootstrap_admins,
                        together=together,
                    )
                deps.config_cache.invalidate()
                # Everyone whose settings or queue may show differently now: those with a
                # role before or after (a leader removed must no longer see the queue).
                # The members of a user group named just now are not asked for here: that
                # would keep Slack waiting inside the transaction. They see it when next
                # they open their Home.
                saved = runtime_config.load_config(
                    session, bootstrap_admins=config.bootstrap_admins
                )
                staff = config.staff() | saved.staff()
                homes.refresh_homes(session, deps, people=staff, actor=user_id)
        except InvalidValue as error:
            ack(response_action="errors", errors={error.field or first: explain(error, locale)})
            return
        ack(response_action="clear")
        if unchecked:
            check_later(deps, user_id=user_id, channels=unchecked)

    return handle
