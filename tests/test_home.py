"""The App Home tab by role, its limits, and its refresh when what it shows changes."""

from __future__ import annotations

import json
from typing import Any

from tests.harness import ADMIN, ALICE, BOB, LEADER, Bot


def open_home(bot: Bot, user: str) -> dict[str, Any]:
    bot.event(
        {
            "type": "app_home_opened",
            "user": user,
            "channel": bot.slack.dm_channel(user),
            "tab": "home",
            "event_ts": "1.1",
        }
    )
    bot.drain()
    return bot.slack.home_views[user]


def action_ids(view: dict[str, Any]) -> set[str]:
    ids = set()
    for block in view["blocks"]:
        for element in block.get("elements", []) + (
            [block["accessory"]] if "accessory" in block else []
        ):
            if isinstance(element, dict) and "action_id" in element:
                ids.add(element["action_id"])
    return ids


def test_an_employee_sees_the_report_button_and_their_reports(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "Hotline transfer drops calls to the shop")
    bot.command(BOB, "Not Alice's report")
    view = open_home(bot, ALICE)
    text = json.dumps(view["blocks"], ensure_ascii=False)
    assert "report_open_form" in action_ids(view)
    assert "FB-1001" in text and "FB-1002" not in text
    assert "triage_acknowledge" not in action_ids(view)
    assert "admin_edit_settings" not in action_ids(view)


def test_a_german_employee_sees_the_home_in_german(bot: Bot) -> None:
    bot.setup_team()
    text = json.dumps(open_home(bot, BOB)["blocks"], ensure_ascii=False)
    assert "Meine Meldungen" in text and "Problem melden" in text


def test_a_leader_sees_the_queue_with_triage_buttons(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "Card terminals offline in Halle")
    view = open_home(bot, LEADER)
    text = json.dumps(view["blocks"], ensure_ascii=False)
    assert "Waiting for acknowledgement* (1)" in text
    assert {"triage_acknowledge", "triage_claim", "triage_reply", "triage_resolve"} <= action_ids(
        view
    )
    assert "admin_edit_settings" not in action_ids(view)

    report = bot.report()
    bot.press(LEADER, "triage_acknowledge", str(report.id), channel="")
    bot.drain()
    assert bot.report(report.id).acknowledged_at is not None


def test_an_admin_sees_settings_and_the_latest_changes(bot: Bot) -> None:
    bot.setup_team()
    view = open_home(bot, ADMIN)
    text = json.dumps(view["blocks"], ensure_ascii=False)
    assert "admin_edit_settings" in action_ids(view)
    assert "Latest changes" in text and "`leaders`" in text


def test_the_home_stays_within_limits_with_hundreds_of_reports(bot: Bot) -> None:
    bot.setup_team()
    # Alike on purpose, yet each with a card of its own; and all from one person.
    bot.configure(burst_threshold="0", report_rate_limit="0")
    for number in range(120):
        bot.command(ALICE, f"Problem number {number} in shop {number % 7}")
    bot.configure(leaders=f"{LEADER},{ALICE}")
    bot.drain()
    for number in range(12):
        bot.press_card(ALICE, "triage_claim", bot.report(number + 1))
    view = open_home(bot, ADMIN)
    assert len(view["blocks"]) <= 100
    assert "…and 100 more." in json.dumps(view["blocks"], ensure_ascii=False), (
        "108 unacknowledged, 8 shown"
    )
    alice = open_home(bot, ALICE)
    assert len(alice["blocks"]) <= 100
    assert "*Mine* (12)" in json.dumps(alice["blocks"])


def test_an_open_home_is_refreshed_when_a_report_changes(bot: Bot) -> None:
    bot.setup_team()
    open_home(bot, LEADER)
    open_home(bot, ALICE)
    publishes = len(bot.slack.calls_to("views.publish"))
    bot.command(ALICE, "Price tags in shop Zwickau show the old tariff")
    bot.drain()
    refreshed = [c.args["user_id"] for c in bot.slack.calls_to("views.publish")[publishes:]]
    assert sorted(refreshed) == sorted([ALICE, LEADER])
    assert "FB-1001" in json.dumps(bot.slack.home_views[LEADER]["blocks"])
    bot.press_card(LEADER, "triage_acknowledge", bot.report())
    bot.drain()
    assert "Waiting for acknowledgement* (0)" in json.dumps(bot.slack.home_views[LEADER]["blocks"])


def test_several_refreshes_collapse_into_the_newest(bot: Bot) -> None:
    bot.setup_team()
    open_home(bot, LEADER)
    before = len(bot.slack.calls_to("views.publish"))
    for number in range(5):
        bot.command(ALICE, f"Queue display dark, shop {number}")
    bot.drain()
    assert len(bot.slack.calls_to("views.publish")) - before == 1
    assert "Waiting for acknowledgement* (5)" in json.dumps(bot.slack.home_views[LEADER]["blocks"])
