"""Slack as a real install meets it: slow or failing methods never hold up an answer, never
stick as a wrong answer, and a refused post says so where people look."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import Session, select

from feedbot.models import OutboxMessage, SlackUser
from feedbot.slack.directory import Profile
from feedbot.slack.ids import Action
from tests.harness import ADMIN, ALICE, BOB, LEADER, LEADERSHIP, Bot, Clock
from tests.test_admin import open_group, state_of
from tests.test_home import open_home
from tests.test_triage import file_from_form, open_and_submit

SLOW = 2.5
"""Seconds a slow Slack method takes: enough to push an ack towards Slack's 3 s limit."""


def timed(action: object) -> float:
    started = time.monotonic()
    assert callable(action)
    action()
    return time.monotonic() - started


def test_the_form_opens_at_once_however_slow_users_info_is(bot: Bot) -> None:
    bot.setup_team()
    bot.slack.fail("users.info", times=None, status=200, error="", delay=SLOW)
    assert timed(lambda: bot.command(BOB, "")) < 1.2
    assert bot.slack.calls_to("views.open"), "the form opened"
    assert timed(lambda: bot.command(BOB, "Kasse 3 bootet ständig")) < 1.2
    bot.slack.clear_faults()
    bot.deps.people.flush()
    answer = json.loads(bot.command(BOB, "Kasse 4 auch").body)
    assert "ist bei der Führung" in answer["text"], (
        "the slow answer is used from then on: Bob reads German"
    )


def test_a_failing_users_info_is_never_taken_for_a_person_without_a_profile(bot: Bot) -> None:
    """Rate limited, a 5xx or a timeout: try again later, and keep the last good profile."""
    bot.setup_team()
    for fault in ({"status": 429}, {"status": 503, "error": "service_unavailable"}):
        bot.slack.fail("users.info", times=1, **fault)
        if fault["status"] == 429:  # then everyone's profile is read at once, and fails too
            bot.slack.fail("users.list", times=1, **fault)
        bot.command(BOB, "Kasse 3 bootet ständig")
        bot.deps.people.flush()
        with Session(bot.engine) as session:
            assert session.get(SlackUser, BOB) is None, "a failure is not stored as a profile"
        bot.deps.people.forget(BOB)  # as after the retry delay
        bot.clock.advance(seconds=1)  # and Slack's Retry-After
    assert [call.status for call in bot.slack.calls_to("users.list")] == [429]
    bot.slack.clear_faults()
    answer = json.loads(bot.command(BOB, "Kasse 5 auch").body)
    assert "ist bei der Führung" in answer["text"]
    bot.deps.people.flush()

    # A day later the profile is due again and Slack times out: the last good one stays.
    bot.clock.advance(days=2)
    bot.deps.people.forget(BOB)
    bot.slack.fail("users.info", times=None, status=200, error="", delay=SLOW)
    answer = json.loads(bot.command(BOB, "Kasse 6 auch").body)
    assert "ist bei der Führung" in answer["text"], "German, from the stored profile"
    bot.slack.clear_faults()


def test_the_settings_form_answers_at_once_and_checks_a_slow_channel_afterwards(
    bot: Bot,
) -> None:
    bot.setup_team()
    bot.slack.add_channel("CNOBOT001", name="region-ost", bot_is_member=False)
    view = open_group(bot, ADMIN, "channels")
    state = state_of(
        view,
        escalation_channel={"type": "conversations_select", "selected_conversation": "CNOBOT001"},
    )
    bot.slack.fail("conversations.info", times=None, status=200, error="", delay=SLOW)
    started = time.monotonic()
    response = bot.submit(ADMIN, view, state)
    # About 1 s (the check's budget); waiting for the slow check would take SLOW. The bound
    # leaves room for a loaded machine: 1.8 s failed once in CI at 1.84 s.
    assert time.monotonic() - started < SLOW - 0.3, "not waiting for Slack's slow answer"
    assert json.loads(response.body) == {"response_action": "clear"}, "saved, not held up"
    bot.slack.clear_faults()
    bot.deps.channels.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("Saved, but" in dm for dm in bot.dms(ADMIN)):
        bot.drain()
        time.sleep(0.05)
    warning = next(dm for dm in bot.dms(ADMIN) if "Saved, but" in dm)
    assert "<#CNOBOT001>" in warning and "/invite @feedbot" in warning


def test_forwarding_to_a_channel_without_feedbot_is_refused_in_the_form(bot: Bot) -> None:
    bot.setup_team()
    bot.slack.add_channel("CNOBOT001", name="netops", bot_is_member=False)
    report = file_from_form(bot)
    state = {"channel": {"type": "conversations_select", "selected_conversation": "CNOBOT001"}}
    answer = open_and_submit(bot, LEADER, "triage_forward", report, state)
    assert answer is not None
    assert "Invite @feedbot to <#CNOBOT001> first" in answer["errors"]["channel"]
    bot.drain()
    assert not any("forwarded" in line for line in bot.thread(report)), "nothing pretends"


def test_a_forward_slack_refuses_later_says_so_in_the_cards_thread(bot: Bot) -> None:
    """Slack was too slow to say whether feedbot is in the channel; the post then failed."""
    bot.setup_team()
    bot.slack.add_channel("CNOBOT002", name="billing", bot_is_member=False)
    report = file_from_form(bot)
    state = {"channel": {"type": "conversations_select", "selected_conversation": "CNOBOT002"}}
    bot.slack.fail("conversations.info", times=1, status=200, error="", delay=SLOW)
    assert open_and_submit(bot, LEADER, "triage_forward", report, state) is None
    bot.drain()
    thread = bot.thread(report)
    assert any("did not arrive" in line and "not_in_channel" in line for line in thread), thread
    assert bot.slack.messages("CNOBOT002") == []
    assert LEADERSHIP  # the note sits in the leadership channel, under the card


def test_a_form_slack_is_too_busy_to_open_is_explained_to_whoever_asked(
    bot: Bot, clock: Clock
) -> None:
    """In an outage everyone opens the form at once, and Slack opens about 100 views a minute
    for a workspace: the 101st person hears why nothing opened, and how to report anyway;
    by a sealed DM, since what someone asked for may concern an anonymous report."""
    bot.slack.clock = lambda: clock.now.timestamp()  # Slack's minute is the test's
    bot.setup_team()
    bot.command(ALICE, "Kasse 3 bootet ständig")
    home = open_home(bot, BOB)
    bot.drain()
    for _ in range(100 - len(bot.slack.calls_to("views.open"))):
        assert bot.command(ALICE, "").status == 200
    assert len(bot.slack.calls_to("views.open")) == 100

    assert bot.command(ALICE, "").status == 200
    assert bot.click_in_view(BOB, home, Action.OPEN_FORM).status == 200
    assert bot.press_card(LEADER, Action.REPLY, bot.report()).status == 200
    assert bot.command(ADMIN, "admin").status == 200
    assert bot.slack.rate_limited_by == {"views.open": 4}
    with Session(bot.engine) as session:
        waiting = session.exec(
            select(OutboxMessage).where(OutboxMessage.purpose == "form_busy")
        ).all()
    assert len(waiting) == 4
    for person in (ALICE, BOB, LEADER, ADMIN):
        assert not [e for e in waiting if person in e.conversation or person in e.payload]
    bot.drain()
    (told,) = [text for text in bot.dms(ALICE) if "too busy" in text]
    assert "`/feedback what happened`" in told
    assert any("zu ausgelastet" in text and "/feedback" in text for text in bot.dms(BOB))
    (leader_told,) = [text for text in bot.dms(LEADER) if "too busy" in text]
    assert "try again in a minute" in leader_told and "/feedback" not in leader_told
    (admin_told,) = [text for text in bot.dms(ADMIN) if "busy" in text or "ausgelastet" in text]
    assert "/feedback" not in admin_told, "the settings are no report form"
    assert not [r for r in bot.slack.responses if "busy" in str(r)]

    clock.advance(seconds=60)
    bot.command(ALICE, "")
    assert bot.slack.calls_to("views.open")[-1].status == 200, "a minute later it opens"


def test_when_slack_limits_profile_lookups_everyone_is_read_at_once(
    bot: Bot, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """In an outage, more people report for the first time within a minute than Slack
    answers `users.info` for (about 100): one `users.list` read gives everyone's language,
    and only the profiles of those who reported are stored."""
    bot.slack.clock = lambda: clock.now.timestamp()
    bot.setup_team()
    people = [f"UFIELD{n:03d}" for n in range(130)]
    for person in [*people, "UQUIET001"]:
        bot.slack.add_user(person, locale="de-DE")
    for person in people:
        answer = json.loads(bot.command(person, "Kein Netz am Markt").body)
        assert "ist bei der Führung" in answer["text"], f"{person} is answered in German"
    bot.deps.people.flush()
    assert bot.slack.rate_limited_by == {"users.info": 1}
    assert len(bot.slack.calls_to("users.list")) == 1
    assert sum("Slack limits users.info" in r.getMessage() for r in caplog.records) == 1
    with Session(bot.engine) as session:
        stored = set(session.exec(select(SlackUser.user_id)).all())
    assert set(people) <= stored and "UQUIET001" not in stored


def test_a_read_of_everyone_slack_stops_goes_on_from_where_it_stopped(
    bot: Bot, clock: Clock
) -> None:
    """`users.list` is limited too (about 20 pages a minute): in a workspace of 4,100
    people the read stops at its 21st page and takes it up after Slack's `Retry-After`."""
    bot.slack.clock = lambda: clock.now.timestamp()
    for n in range(4100):
        bot.slack.add_user(f"UW{n:05d}", locale="de-DE")
    people = bot.deps.people
    people._sweep()
    assert len(people._everyone) == 4000 and bot.slack.rate_limited_by == {"users.list": 1}
    people._sweep()  # before Retry-After: nothing is asked
    assert len(bot.slack.calls_to("users.list")) == 21
    clock.advance(seconds=60)
    people._sweep()
    assert {f"UW{n:05d}" for n in range(4100)} <= set(people._everyone), "everyone"
    assert [call.args.get("cursor") for call in bot.slack.calls_to("users.list")[-1:]] == ["4000"]
    clock.advance(minutes=5)
    people._sweep()  # a whole read is not repeated for ten minutes
    assert len(bot.slack.calls_to("users.list")) == 22
    assert people._swept("UW04050") == Profile("de-DE", "Europe/Berlin")
    assert len(bot.slack.calls_to("users.list")) == 22, "answered from the read"
    clock.advance(days=2)  # a read older than a profile may be is read again
    assert people._swept("UW00050") == Profile("de-DE", "Europe/Berlin")
    assert len(bot.slack.calls_to("users.list")) == 22 + 21, "up to Slack's limit again"
