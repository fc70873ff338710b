"""Settings from Slack, the audit log, roles, routing to regional leadership channels, and the
same report flow seen in English and in German."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from feedbot.core import config as runtime_config
from feedbot.core.privacy import audit_log
from feedbot.db import session_scope
from feedbot.errors import InvalidValue
from tests.harness import ADMIN, ALICE, BOB, CAROL, LEADER, LEADERSHIP, Bot
from tests.test_reporting import form_values


def open_group(bot: Bot, user: str, group: str) -> dict[str, Any]:
    bot.press(user, "admin_edit_settings", group, channel="")
    return bot.last_view()


def state_of(view: dict[str, Any], **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The state Slack would send back for the form as shown, with `overrides` by block id."""
    state: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        kind = element["type"]
        if kind == "conversations_select":
            value: dict[str, Any] = {
                "type": kind,
                "selected_conversation": element.get("initial_conversation"),
            }
        elif kind == "multi_conversations_select":
            value = {
                "type": kind,
                "selected_conversations": element.get("initial_conversations", []),
            }
        elif kind == "multi_users_select":
            value = {"type": kind, "selected_users": element.get("initial_users", [])}
        elif kind == "checkboxes":
            value = {"type": kind, "selected_options": element.get("initial_options", [])}
        elif kind == "static_select":
            value = {"type": kind, "selected_option": element.get("initial_option")}
        else:
            value = {"type": kind, "value": element.get("initial_value")}
        state[block["block_id"]] = value
    state.update(overrides)
    return state


def test_admin_command_opens_the_settings_and_refuses_others(bot: Bot) -> None:
    bot.setup_team()
    refused = json.loads(bot.command(ALICE, "admin").body)
    assert "Only admins" in refused["text"]
    assert bot.slack.calls_to("views.open") == []
    bot.command(ADMIN, "admin")
    picker = bot.last_view()
    groups = [b["accessory"]["value"] for b in picker["blocks"] if b.get("accessory")]
    assert groups == ["channels", "people", "reports", "digest", "reminders", "webhooks"]
    bot.interactive(
        {
            "type": "block_actions",
            "user": {"id": ADMIN, "name": "admin"},
            "team": {"id": "T0TEAM", "domain": "frontline"},
            "api_app_id": "A0FEEDBOT",
            "token": "t",
            "container": {"type": "view", "view_id": picker["id"]},
            "view": picker,
            "trigger_id": "9999.1",
            "actions": [
                {
                    "action_id": "admin_edit_settings",
                    "block_id": "settings-reports",
                    "value": "reports",
                    "type": "button",
                }
            ],
        }
    )
    pushed = bot.slack.calls_to("views.push")
    assert pushed and pushed[-1].args["view"]["callback_id"] == "settings_form"


def test_changing_settings_from_slack_is_validated_applied_and_audited(bot: Bot) -> None:
    bot.setup_team()
    view = open_group(bot, ADMIN, "reports")
    state = state_of(
        view,
        categories={"type": "plain_text_input", "value": "Netz\nKasse\nSonstiges"},
        locations={"type": "plain_text_input", "value": "Leipzig\nDresden"},
        retention_days={"type": "plain_text_input", "value": "365"},
    )
    response = bot.submit(ADMIN, view, state)
    assert json.loads(response.body) == {"response_action": "clear"}
    bot.command(ALICE, "")
    form = bot.last_view()
    category = next(b for b in form["blocks"] if b.get("block_id") == "category")
    assert [o["value"] for o in category["element"]["options"]] == ["Netz", "Kasse", "Sonstiges"]
    with Session(bot.engine) as session:
        changes = {(e.key, e.old_value, e.new_value, e.actor) for e in audit_log(session)}
    assert ("retention_days", "730", "365", ADMIN) in changes
    assert ("locations", "", "Leipzig,Dresden", ADMIN) in changes


def test_invalid_values_are_shown_next_to_the_field(bot: Bot) -> None:
    bot.setup_team()
    view = open_group(bot, ADMIN, "reminders")
    state = state_of(
        view,
        response_targets={"type": "plain_text_input", "value": "critical=soon"},
        working_hours={"type": "plain_text_input", "value": "18:00-08:00"},
        holidays={"type": "plain_text_input", "value": "2026-12-24\nChristmas"},
    )
    errors = json.loads(bot.submit(ADMIN, view, state).body)["errors"]
    assert set(errors) == {"response_targets", "working_hours", "holidays"}
    assert "30m, 4h or 1d" in errors["response_targets"]
    with Session(bot.engine) as session:
        assert all(e.key not in errors for e in audit_log(session))


def test_a_channel_without_the_bot_is_refused(bot: Bot) -> None:
    bot.setup_team()
    bot.slack.add_channel("CNOBOT001", name="region-ost", bot_is_member=False)
    view = open_group(bot, ADMIN, "channels")
    state = state_of(
        view,
        escalation_channel={"type": "conversations_select", "selected_conversation": "CNOBOT001"},
    )
    errors = json.loads(bot.submit(ADMIN, view, state).body)["errors"]
    assert errors == {
        "escalation_channel": "Invite @feedbot to <#CNOBOT001> first (/invite @feedbot), then try again."
    }
    bot.slack.add_channel("CNOBOT001", name="region-ost", bot_is_member=True)
    assert json.loads(bot.submit(ADMIN, view, state).body) == {"response_action": "clear"}
    assert bot.bot_config().escalation_channel == "CNOBOT001"


def test_forged_settings_actions_from_non_admins_change_nothing(bot: Bot) -> None:
    bot.setup_team()
    view = open_group(bot, ADMIN, "people")
    bot.press(LEADER, "admin_edit_settings", "people", channel="")
    assert len(bot.slack.calls_to("views.open")) == 1
    state = state_of(view, admins={"type": "multi_users_select", "selected_users": [CAROL]})
    errors = json.loads(bot.submit(CAROL, view, state).body)["errors"]
    assert "Only admins" in next(iter(errors.values()))
    assert bot.bot_config().admins == []


def test_the_last_admin_cannot_remove_themselves(engine: Engine) -> None:
    with session_scope(engine) as session:
        runtime_config.set_value(session, key="admins", raw="UADMIN002", actor="cli")
    with pytest.raises(InvalidValue, match="last admin"), session_scope(engine) as session:
        runtime_config.set_value(session, key="admins", raw="", actor="UADMIN002")
    with session_scope(engine) as session:
        runtime_config.set_value(
            session, key="admins", raw="UADMIN002,UADMIN003", actor="UADMIN002"
        )
        runtime_config.set_value(session, key="admins", raw="UADMIN003", actor="UADMIN002")
        assert runtime_config.load_config(session).admins == ["UADMIN003"]


def test_reports_are_routed_to_regional_leadership_channels(bot: Bot) -> None:
    bot.setup_team()
    routes = '[{"channel": "CREGOST01", "locations": ["Leipzig", "Dresden"]}, {"channel": "CBILLING1", "categories": ["Billing & tariffs"]}]'
    bot.configure(leadership_routes=routes, locations="Leipzig,Dresden,Hamburg")

    def file(location: str, category: str = "Devices & hardware") -> str | None:
        bot.command(ALICE, "")
        values = form_values(
            f"Problem in {location}",
            location={"type": "static_select", "selected_option": {"value": location}},
            category={"type": "static_select", "selected_option": {"value": category}},
        )
        assert bot.submit(ALICE, bot.last_view(), values).status == 200
        return bot.report().leadership_channel

    assert file("Leipzig") == "CREGOST01"
    assert file("Hamburg") == LEADERSHIP
    assert file("Hamburg", "Billing & tariffs") == "CBILLING1"
    bot.drain()
    assert len(bot.slack.messages("CREGOST01")) == 1
    assert len(bot.slack.messages(LEADERSHIP)) == 1


def test_members_of_the_leaders_user_group_may_triage(bot: Bot) -> None:
    bot.setup_team()
    bot.slack.add_usergroup("SLEADS001", [CAROL])
    bot.configure(leaders_usergroup="SLEADS001")
    bot.command(ALICE, "Shop Erfurt has no signal inside")
    bot.drain()
    bot.press_card(CAROL, "triage_acknowledge", bot.report())
    assert bot.report().acknowledged_by == CAROL


def test_a_german_and_an_english_colleague_each_get_their_language(bot: Bot) -> None:
    bot.setup_team()
    bot.message(
        BOB, "Kasse 2 druckt keine Belege", channel=bot.slack.dm_channel(BOB), channel_type="im"
    )
    bob_report = bot.report()
    bot.message(
        ALICE, "Till 2 prints no receipts", channel=bot.slack.dm_channel(ALICE), channel_type="im"
    )
    alice_report = bot.report()
    bot.drain()
    assert any("Danke! Deine Meldung *FB-1001*" in dm for dm in bot.dms(BOB))
    assert any("Thanks! Your report *FB-1002*" in dm for dm in bot.dms(ALICE))
    for report in (bob_report, alice_report):
        bot.press_card(LEADER, "triage_resolve", report)
        bot.submit(
            LEADER,
            bot.last_view(),
            {"note": {"type": "plain_text_input", "value": "Neue Rolle Papier / new paper roll"}},
        )
    bot.drain()
    assert any(dm.startswith("*FB-1001* ist erledigt") for dm in bot.dms(BOB))
    assert any(dm.startswith("*FB-1002* is resolved") for dm in bot.dms(ALICE))
    assert "Resolved" in json.dumps(bot.card(bob_report)["blocks"]), (
        "the channel reads the default language"
    )
    bot.configure(language="de")
    bot.press(LEADER, "triage_reopen", str(bob_report.id), block_id="triage")
    bot.drain()
    assert "Bestätigt" in json.dumps(
        bot.card(bob_report)["blocks"], ensure_ascii=False
    ) or "Offen" in json.dumps(bot.card(bob_report)["blocks"], ensure_ascii=False)
