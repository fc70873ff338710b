"""The App Home tab by role, its limits, and its refresh when what it shows changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import Session, col, select

from feedbot.core import outbox as core_outbox
from feedbot.core.liveness import Liveness
from feedbot.models import OutboxMessage, OutboxStatus
from feedbot.slack import homes
from feedbot.slack.app import build_app
from feedbot.slack.inbox import Inbox
from tests.harness import ADMIN, ALICE, BOB, LEADER, LEADER_2, Bot, around, statements


def home_opened(bot: Bot, user: str) -> None:
    """`user` opens feedbot's Home tab; what it queues is not delivered yet."""
    bot.event(
        {
            "type": "app_home_opened",
            "user": user,
            "channel": bot.slack.dm_channel(user),
            "tab": "home",
            "event_ts": "1.1",
        }
    )


def open_home(bot: Bot, user: str) -> dict[str, Any]:
    home_opened(bot, user)
    bot.drain()
    return bot.slack.home_views[user]


def drain_refreshed(bot: Bot) -> None:
    """Deliver what is due once the Homes that others' actions changed are due too."""
    bot.clock.advance(seconds=homes.REFRESH_DELAY.total_seconds())
    bot.drain()


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
    drain_refreshed(bot)
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
    drain_refreshed(bot)
    assert len(bot.slack.calls_to("views.publish")) - before == 1
    assert "Waiting for acknowledgement* (5)" in json.dumps(bot.slack.home_views[LEADER]["blocks"])


def waiting_homes(bot: Bot) -> list[OutboxMessage]:
    with Session(bot.engine) as session:
        return list(
            session.exec(
                select(OutboxMessage).where(
                    col(OutboxMessage.method) == "views.publish",
                    col(OutboxMessage.status) == OutboxStatus.PENDING,
                )
            )
        )


def test_a_leader_s_home_is_drawn_when_it_is_sent_not_for_every_report(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In an outage every report changes each leader's queue: drawing each leader's Home for
    each report cost several times the rest of filing it. Filing queues what to draw it
    with, once while one waits, and the sender draws it as things are when it goes."""
    bot.setup_team()
    open_home(bot, LEADER)
    drawn: list[str] = []
    build_home = homes.build_home
    monkeypatch.setattr(
        homes, "build_home", lambda **kwargs: drawn.append("home") or build_home(**kwargs)
    )
    waiting_ids = set()
    for number in range(5):
        bot.command(ALICE, f"Label printer jams in shop {number}")
        waiting_ids |= {entry.id for entry in waiting_homes(bot)}
    assert drawn == [], "nothing drawn while filing"
    (waiting,) = waiting_homes(bot)
    assert waiting_ids == {waiting.id}, "the first one waiting shows the later reports too"
    assert "Label printer" not in waiting.payload, "no view waits in the database"
    assert LEADER not in waiting.payload, "nor whose Home it is"
    drain_refreshed(bot)
    assert drawn == ["home"]
    text = json.dumps(bot.slack.home_views[LEADER]["blocks"])
    assert "Waiting for acknowledgement* (5)" in text and "FB-1005" in text


def test_a_waiting_home_is_drawn_for_the_roles_its_owner_has_when_it_goes(bot: Bot) -> None:
    """A Home waits a moment, or longer while Slack is away: drawn, it shows the queue and the
    settings by the person's roles then. A leader removed meanwhile sees no reports."""
    bot.setup_team()
    open_home(bot, LEADER)
    bot.command(ALICE, "Card terminal reboots every hour in Gera")
    bot.configure(admins=f"{ADMIN},{LEADER}")
    drain_refreshed(bot)
    view = bot.slack.home_views[LEADER]
    assert "admin_edit_settings" in action_ids(view)
    assert "triage_acknowledge" in action_ids(view)
    bot.command(ALICE, "Card terminal reboots every hour in Jena")
    assert len(waiting_homes(bot)) == 1
    bot.configure(admins=ADMIN, leaders=LEADER_2)
    drain_refreshed(bot)
    view = bot.slack.home_views[LEADER]
    assert not {"admin_edit_settings", "triage_acknowledge"} & action_ids(view)
    assert "Jena" not in json.dumps(view["blocks"], ensure_ascii=False)


def to_be_drawn_in_german(bot: Bot, waiting: OutboxMessage) -> None:
    """The waiting Home was queued for someone who read German then."""
    with Session(bot.engine) as session:
        entry = session.get_one(OutboxMessage, waiting.id)
        entry.payload = entry.payload.replace('"en"', '"de"')
        session.add(entry)
        session.commit()


def test_a_waiting_home_in_another_language_is_replaced(bot: Bot) -> None:
    """A Home waiting to be drawn in a language the person no longer reads is not the one
    to show the next change: it is replaced."""
    bot.setup_team()
    open_home(bot, LEADER)
    bot.command(ALICE, "Card terminal reboots every hour in Gera")
    (first,) = waiting_homes(bot)
    to_be_drawn_in_german(bot, first)
    bot.command(ALICE, "Card terminal reboots every hour in Jena")
    (second,) = waiting_homes(bot)
    assert second.id != first.id
    drain_refreshed(bot)
    assert "Waiting for acknowledgement* (2)" in json.dumps(bot.slack.home_views[LEADER]["blocks"])


def test_a_home_a_sender_took_meanwhile_is_followed_by_another(bot: Bot) -> None:
    """A Home a sender has taken may be drawn before this report commits: it is not the
    waiting one any more, and the report queues another, which shows it."""
    bot.setup_team()
    open_home(bot, LEADER)
    bot.command(ALICE, "Card terminal reboots every hour in Gera")
    (taken,) = waiting_homes(bot)
    bot.clock.advance(seconds=homes.REFRESH_DELAY.total_seconds())
    with Session(bot.engine) as sender:
        claims = core_outbox.claim_due(sender, now=bot.clock(), limit=10, method="views.publish")
        assert [claim.entry.id for claim in claims] == [taken.id]
        sender.commit()
    bot.command(ALICE, "Card terminal reboots every hour in Jena")
    (queued,) = waiting_homes(bot)
    assert queued.id != taken.id
    with Session(bot.engine) as sender:  # it went, drawn before the report was there
        core_outbox.mark_sent(
            sender, taken.id, channel=None, ts=None, now=bot.clock(), attempt=taken.attempts + 1
        )
        sender.commit()
    drain_refreshed(bot)
    assert "Waiting for acknowledgement* (2)" in json.dumps(bot.slack.home_views[LEADER]["blocks"])


def test_a_report_refreshes_the_homes_of_its_reporter_and_leaders_only(bot: Bot) -> None:
    """Who opened their Home recently is asked for the people a report concerns (its
    reporter, its owner, its leaders), not read for the whole workspace with every report."""
    bot.setup_team()
    for user in (ALICE, BOB, LEADER):
        open_home(bot, user)
    publishes = len(bot.slack.calls_to("views.publish"))
    bot.command(ALICE, "Queue display dark in shop Gera")
    drain_refreshed(bot)
    refreshed = [call.args["user_id"] for call in bot.slack.calls_to("views.publish")[publishes:]]
    assert sorted(refreshed) == sorted([ALICE, LEADER]), "not Bob's: nothing of his changed"


def test_a_report_locks_a_waiting_home_only_as_it_commits(bot: Bot) -> None:
    """Every report of a burst needs each leader's waiting Home, which it locks until its
    transaction ends (`outbox.waiting_calls`): after all its other work, so the reports of a
    burst do not take turns for that work; and the leaders' Homes in one statement."""
    bot.setup_team()
    open_home(bot, LEADER)
    open_home(bot, LEADER_2)
    bot.command(ALICE, "Scanner at the counter in Gera rejects every barcode")  # Homes wait
    inbox = Inbox(bot.deps, liveness=Liveness(bot.engine))
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    with statements(bot.engine) as seen:
        assert bot.command(ALICE, "Scanner at the counter in Jena is down").status == 200
        assert inbox.drain() == 1
    assert len(waiting_homes(bot)) == 2, "the waiting ones show this report too"
    (lock,) = [
        n
        for n, (_, sql) in enumerate(seen)
        if sql.startswith("SELECT outbox_message")
        and "outbox_message.attempts =" in sql
        and "outbox_message.conversation IN" in sql
    ]
    before, after = around(seen, lock)
    assert after[0] == "COMMIT", after
    assert any(sql.startswith("INSERT INTO report ") for sql in before), "the report's"
    assert any(sql.startswith("UPDATE inbox_entry SET body=") for sql in before), "the done mark"


def test_a_leader_removed_in_the_settings_sees_their_home_without_the_queue(bot: Bot) -> None:
    """A change of roles re-draws the Homes of everyone who had a role or has one now, with
    the roles as just saved: not those the cache still held, nor only the admins'."""
    from tests.test_admin import open_group, state_of

    bot.setup_team()
    bot.command(ALICE, "Card terminal reboots every hour in Gera")
    assert "triage_acknowledge" in action_ids(open_home(bot, LEADER))
    view = open_group(bot, ADMIN, "people")
    leaders = {"type": "multi_users_select", "selected_users": [LEADER_2]}
    response = bot.submit(ADMIN, view, state_of(view, leaders=leaders))
    assert json.loads(response.body) == {"response_action": "clear"}
    drain_refreshed(bot)
    home = bot.slack.home_views[LEADER]
    assert "triage_acknowledge" not in action_ids(home)
    assert "Gera" not in json.dumps(home["blocks"], ensure_ascii=False)


def test_homes_changed_by_others_follow_within_seconds_the_actor_s_at_once(bot: Bot) -> None:
    """In a burst a watched Home would be re-drawn without pause: one changed by what others
    do waits `REFRESH_DELAY` and then shows everything since. Whoever acts, or opens their
    Home, sees it at once."""
    bot.setup_team()
    open_home(bot, LEADER)
    open_home(bot, LEADER_2)
    before = len(bot.slack.calls_to("views.publish"))

    def published() -> list[str]:
        calls = bot.slack.calls_to("views.publish")[before:]
        return [call.args["user_id"] for call in calls]

    bot.command(ALICE, "Receipt printer in Gera prints blank pages")
    bot.drain()
    assert published() == [], "not yet: more may come"
    bot.press_card(LEADER, "triage_acknowledge", bot.report())
    bot.drain()
    assert published() == [LEADER], "the one who acted"
    assert "Waiting for acknowledgement* (0)" in json.dumps(bot.slack.home_views[LEADER]["blocks"])
    open_home(bot, LEADER_2)  # the one waiting is brought forward, not drawn twice
    assert published() == [LEADER, LEADER_2]
    drain_refreshed(bot)
    assert published() == [LEADER, LEADER_2]
    assert "Waiting for acknowledgement* (0)" in json.dumps(
        bot.slack.home_views[LEADER_2]["blocks"]
    )


def test_a_home_just_opened_is_not_put_off_by_a_change_that_replaces_it(bot: Bot) -> None:
    """Someone opens their Home and, before it goes, a change queues one to replace it (in
    another language): the replacement is still due at once, not after the pause."""
    bot.setup_team()
    home_opened(bot, LEADER)
    (opened,) = waiting_homes(bot)
    to_be_drawn_in_german(bot, opened)
    bot.command(ALICE, "Card terminal reboots every hour in Gera")
    (replacing,) = waiting_homes(bot)
    assert replacing.id != opened.id
    bot.drain()
    assert "Waiting for acknowledgement* (1)" in json.dumps(bot.slack.home_views[LEADER]["blocks"])


def test_a_home_asked_for_at_once_and_later_in_one_transaction_goes_at_once(bot: Bot) -> None:
    bot.setup_team()
    with bot.deps.transaction() as session:
        homes.publish_home(session, bot.deps, LEADER, at_once=True)
        homes.publish_home(session, bot.deps, LEADER, at_once=False)
    assert len(waiting_homes(bot)) == 1
    bot.drain()
    assert LEADER in bot.slack.home_views, "not put off by the later ask"
