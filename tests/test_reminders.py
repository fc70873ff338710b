"""Issue 5: follow-up reminders, response targets and escalation.

The bot is driven like Slack drives it; the reminder scan runs as the scheduler's job would
(`send_due`), with the test clock moved between scans. The clock starts on Wednesday
2026-11-18 at 09:00 UTC, 10:00 in Berlin (the workspace's and everyone's default zone), where
working hours are Monday to Friday 08:00-18:00.
"""

from __future__ import annotations

import json
import threading
import weakref
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient
from sqlmodel import Session, col, select

from feedbot import jobs, scheduler
from feedbot.core import reminders
from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders import Due, Kind, Rules, due_steps, snooze_until
from feedbot.core.working_time import WorkingHours
from feedbot.db import make_engine
from feedbot.models import OutboxMessage, OutboxStatus, Reminder, Report, ReportSource, Urgency
from feedbot.slack.deps import Deps
from feedbot.slack.features import reminders as reminder_feature
from tests.harness import ADMIN, ALICE, LEADER, LEADER_2, LEADERSHIP, TOKEN, Bot
from tests.test_triage import file_from_form, open_and_submit

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ESCALATIONS = "CESCAL001"
WEEKDAYS = WorkingHours(days=frozenset(range(5)), start=time(8), end=time(18), holidays=frozenset())


def berlin(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A moment in November 2026, Berlin time (18 = Wednesday, 21/22 = the weekend)."""
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


# --------------------------------------------------------------------------- helpers


_deps: dict[int, tuple[weakref.ref[Bot], Deps]] = {}


def deps_of(bot: Bot) -> Deps:
    """What the scheduler hands its jobs, for this bot (same database, fake Slack, clock).

    Kept by the bot's id together with a weak reference to it: a later test's bot may get a
    finished one's id, and must not be handed that one's database and clock."""
    kept = _deps.get(id(bot))
    if kept is not None and kept[0]() is bot:
        return kept[1]
    deps = Deps(
        settings=bot.settings,
        engine=bot.engine,
        client=WebClient(token=TOKEN, base_url=bot.slack.base_url),
        clock=bot.clock,
        config_ttl=0,
    )
    _deps[id(bot)] = (weakref.ref(bot), deps)
    return deps


def scan(bot: Bot, at: datetime | None = None) -> list[tuple[str, Kind, int]]:
    """Move the clock to `at`, run one reminder scan, deliver the outbox."""
    if at is not None:
        assert at >= bot.clock.now, "the clock only moves forward"
        bot.clock.now = at
    sent = reminder_feature.send_due(deps_of(bot))
    bot.drain()
    return [(due.reference, due.kind, due.number) for due in sent]


def rows(bot: Bot) -> list[tuple[int, str, int]]:
    with Session(bot.engine) as session:
        found = session.exec(
            select(Reminder).order_by(
                col(Reminder.report_id), col(Reminder.kind), col(Reminder.sequence)
            )
        )
        return [(r.report_id, r.kind, r.sequence) for r in found]


def claim(bot: Bot, user: str, report: Report) -> None:
    assert bot.press_card(user, "triage_claim", report).status == 200
    bot.drain()


def reminder_dm(bot: Bot, user: str) -> dict[str, Any]:
    """The newest reminder in `user`'s direct messages (the one with Snooze and Hand over)."""
    for message in reversed(bot.slack.dm_messages(user)):
        for block in message.get("blocks") or []:
            if str(block.get("block_id", "")).startswith("reminder-"):
                return dict(message)
    raise AssertionError(f"no reminder in {user}'s direct messages")


def press_in_dm(
    bot: Bot, user: str, action_id: str, value: str | None = None, **element: Any
) -> None:
    message = reminder_dm(bot, user)
    block = next(b for b in message["blocks"] if str(b.get("block_id", "")).startswith("reminder-"))
    response = bot.press(
        user,
        action_id,
        value,
        channel=bot.slack.dm_channel(user),
        message_ts=message["ts"],
        block_id=block["block_id"],
        **element,
    )
    assert response.status == 200
    bot.drain()


def snooze(bot: Bot, user: str, choice: str) -> None:
    press_in_dm(
        bot, user, "reminder_snooze", type="static_select", selected_option={"value": choice}
    )


def pick_follow_up(bot: Bot, user: str, report: Report, day: date) -> None:
    """Pick a date in the picker offered after a claim."""
    prompt = next(
        e for e in reversed(bot.slack.ephemerals) if e["user"] == user and "follow" in e["text"]
    )
    block_id = prompt["blocks"][0]["block_id"]
    assert block_id == f"follow-up-{report.id}"
    bot.press(
        user,
        "reminder_follow_up_pick",
        None,
        block_id=block_id,
        type="datepicker",
        selected_date=day.isoformat(),
    )
    bot.drain()


def callback_report(bot: Bot) -> Report:
    return file_from_form(
        bot,
        callback={"type": "checkboxes", "selected_options": [{"value": "yes"}]},
        contact={"type": "plain_text_input", "value": "Frau Weber, 0171 2345678"},
    )


def texts(messages: list[dict[str, Any]]) -> str:
    return json.dumps(messages, ensure_ascii=False)


# --------------------------------------------------------------------------- working time


def test_working_time_skips_nights_weekends_and_holidays() -> None:
    hours = WorkingHours(
        days=frozenset(range(5)),
        start=time(8),
        end=time(18),
        holidays=frozenset({date(2026, 11, 23)}),
    )
    wednesday = berlin(18, 10)
    assert hours.add(wednesday, timedelta(hours=4), BERLIN) == berlin(18, 14)
    assert hours.add(wednesday, timedelta(hours=8), BERLIN) == berlin(19, 8), "18:00 is after work"
    assert hours.add(wednesday, timedelta(hours=9), BERLIN) == berlin(19, 9)
    assert hours.add(berlin(20, 17), timedelta(hours=2), BERLIN) == berlin(24, 9), (
        "Friday 17:00 + 2h skips the weekend and Monday's holiday"
    )
    assert hours.next_working_moment(berlin(21, 12), BERLIN) == berlin(24, 8)
    assert hours.next_working_moment(berlin(18, 3), BERLIN) == berlin(18, 8)
    assert hours.is_working(berlin(18, 8), BERLIN) and not hours.is_working(berlin(18, 18), BERLIN)
    assert not hours.is_working(berlin(23, 10), BERLIN), "a holiday"
    # The same moment is Wednesday 04:00 in New York: not working there yet.
    assert not hours.is_working(berlin(18, 10), NEW_YORK)
    assert hours.next_working_moment(berlin(18, 10), NEW_YORK) == berlin(18, 14)
    # Across the end of daylight saving time in Berlin (Sunday 25 October 2026).
    friday = berlin(23, 17, month=10)
    assert hours.add(friday, timedelta(hours=2), BERLIN) == berlin(26, 9, month=10)
    assert hours.duration("1d") == timedelta(hours=10) and hours.duration("90m") == timedelta(
        minutes=90
    )


def test_a_regions_public_holidays_are_not_working_days() -> None:
    """Corpus Christi (Thursday 4 June 2026) is a holiday in North Rhine-Westphalia, not in
    Berlin; the admin-kept list still counts on top of the region's."""
    weekdays = frozenset(range(5))
    cologne = WorkingHours(days=weekdays, start=time(8), end=time(18), region="DE-NW")
    berlin_office = WorkingHours(
        days=weekdays, start=time(8), end=time(18), holidays=frozenset({date(2026, 6, 5)})
    )
    berlin_region = WorkingHours(days=weekdays, start=time(8), end=time(18), region="DE-BE")
    corpus_christi = date(2026, 6, 4)
    assert not cologne.is_working_day(corpus_christi)
    assert berlin_region.is_working_day(corpus_christi)
    assert not berlin_office.is_working_day(date(2026, 6, 5))
    wednesday_evening = datetime(2026, 6, 3, 17, tzinfo=BERLIN).astimezone(UTC)
    two_hours = timedelta(hours=2)
    assert cologne.add(wednesday_evening, two_hours, BERLIN) == datetime(
        2026, 6, 5, 9, tzinfo=BERLIN
    ).astimezone(UTC), "Thursday is skipped in Cologne"
    assert berlin_region.add(wednesday_evening, two_hours, BERLIN) == datetime(
        2026, 6, 4, 9, tzinfo=BERLIN
    ).astimezone(UTC)
    assert not cologne.is_working_day(date(2026, 12, 25)), "Christmas, the whole country"
    configured = WorkingHours.from_config(RuntimeConfig(holiday_region="DE-NW"))
    assert not configured.is_working_day(corpus_christi)


@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    first=st.integers(min_value=0, max_value=60 * 60),
    second=st.integers(min_value=0, max_value=60 * 60),
)
def test_adding_working_time_in_steps_or_at_once_agrees(
    start: datetime, first: int, second: int
) -> None:
    """Why the rules may add an interval to whatever moment a reminder actually went out."""
    a, b = timedelta(minutes=first), timedelta(minutes=second)
    once = WEEKDAYS.add(start, a + b, BERLIN)
    assert WEEKDAYS.is_working(once, BERLIN)
    assert once - start >= a + b, "working time is never shorter than wall-clock time"
    assert WEEKDAYS.add(WEEKDAYS.add(start, a, BERLIN), b, BERLIN) == once


@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    minutes=st.integers(min_value=0, max_value=5 * 600),
    later=st.integers(min_value=0, max_value=10 * 24 * 60),
)
def test_subtracting_working_time_bounds_what_can_be_due(
    start: datetime, minutes: int, later: int
) -> None:
    """Why the scan may select `created_at <= subtract(now, target)` and miss nothing due."""
    amount, now = timedelta(minutes=minutes), start + timedelta(minutes=later)
    if WEEKDAYS.add(start, amount, BERLIN) <= now:
        assert start <= WEEKDAYS.subtract(now, amount, BERLIN)
    assert WEEKDAYS.subtract(berlin(19, 10), timedelta(hours=4), BERLIN) == berlin(18, 16)
    assert WEEKDAYS.subtract(berlin(23, 9), timedelta(hours=10), BERLIN) == berlin(20, 9)


def test_snooze_ends_in_an_hour_tomorrow_morning_or_next_week() -> None:
    friday = berlin(20, 15)
    assert snooze_until(
        reminders.SnoozeChoice.HOUR, now=friday, hours=WEEKDAYS, zone=BERLIN
    ) == berlin(20, 16)
    assert snooze_until(
        reminders.SnoozeChoice.TOMORROW, now=friday, hours=WEEKDAYS, zone=BERLIN
    ) == berlin(23, 8)
    assert snooze_until(
        reminders.SnoozeChoice.NEXT_WEEK, now=berlin(18, 9), hours=WEEKDAYS, zone=BERLIN
    ) == berlin(23, 8)
    assert snooze_until(
        reminders.SnoozeChoice.TOMORROW, now=friday, hours=WEEKDAYS, zone=NEW_YORK
    ) == (datetime(2026, 11, 23, 8, tzinfo=NEW_YORK).astimezone(UTC))


@pytest.mark.parametrize(
    ("urgency", "default_due", "configured_due"),
    [
        (Urgency.CRITICAL, berlin(18, 11), berlin(18, 10, 30)),
        (Urgency.HIGH, berlin(18, 14), berlin(18, 12)),
        (Urgency.NORMAL, berlin(19, 10), berlin(20, 10)),
        (Urgency.LOW, berlin(23, 10), berlin(25, 10)),
    ],
)
def test_each_urgency_has_its_response_target_which_admins_can_change(
    urgency: Urgency, default_due: datetime, configured_due: datetime
) -> None:
    report = Report(
        id=1,
        source=ReportSource.COMMAND,
        text="x",
        category="Other",
        urgency=urgency,
        created_at=berlin(18, 10),
        card_message_id=1,
    )
    configured = RuntimeConfig(
        response_targets={"critical": "30m", "high": "2h", "normal": "2d", "low": "5d"}
    )
    expected = [Kind.ACK, Kind.ACK_ESCALATION] if urgency == Urgency.CRITICAL else [Kind.ACK]
    for config, first_due in ((RuntimeConfig(), default_due), (configured, configured_due)):
        rules = Rules.from_config(config)

        def due(at: datetime, rules: Rules = rules) -> list[Kind]:
            steps = due_steps(report, [], now=at, rules=rules, zone_for=lambda _: BERLIN)
            return [step.kind for step in steps]

        assert due(first_due - timedelta(minutes=1)) == []
        assert due(first_due) == expected


def test_the_reminder_job_runs_every_minute() -> None:
    _, function, trigger = next(job for job in scheduler.JOBS if job[0] == "reminders")
    assert function is jobs.scan_reminders
    assert trigger("Europe/Berlin").interval == timedelta(minutes=1)


# --------------------------------------------------------------------------- acknowledgement


def test_unacknowledged_reports_are_reminded_after_their_target_and_critical_ones_escalate(
    bot: Bot,
) -> None:
    bot.setup_team()
    bot.configure(reminder_interval="3d")  # only first reminders in this test
    made = {
        urgency: file_from_form(
            bot,
            text=f"{urgency} problem",
            urgency={"type": "static_select", "selected_option": {"value": urgency}},
        )
        for urgency in ("critical", "high", "normal", "low")
    }
    refs = {urgency: report.reference for urgency, report in made.items()}
    assert scan(bot, berlin(18, 10, 59)) == []
    assert scan(bot, berlin(18, 11)) == [
        (refs["critical"], Kind.ACK, 1),
        (refs["critical"], Kind.ACK_ESCALATION, 0),
    ]
    assert "waiting for acknowledgement" in bot.thread(made["critical"])[-1]
    thread_reminder = next(
        m for m in bot.slack.messages(LEADERSHIP) if "waiting for acknowledgement" in m["text"]
    )
    assert "Reminder 1 of 3" in texts([thread_reminder])
    assert {f"<@{LEADER}>", f"<@{LEADER_2}>"} <= set(bot.slack.mentions(thread_reminder))
    assert any("is *critical*" in dm for dm in bot.dms(ADMIN)), (
        "no escalation channel: admins by DM"
    )
    assert scan(bot, berlin(18, 14)) == [(refs["high"], Kind.ACK, 1)]
    assert scan(bot, berlin(19, 9, 59)) == []
    assert scan(bot, berlin(19, 10)) == [(refs["normal"], Kind.ACK, 1)]
    assert scan(bot, berlin(21, 10)) == [], "Saturday"
    assert scan(bot, berlin(23, 9, 59)) == []
    assert scan(bot, berlin(23, 10)) == [(refs["low"], Kind.ACK, 1)], (
        "3 working days: Thu, Fri, Mon"
    )
    assert scan(bot, berlin(23, 10, 1)) == [], "sent once"


def test_reminders_repeat_up_to_the_cap_then_escalate_with_the_history(bot: Bot) -> None:
    bot.setup_team()
    bot.slack.add_channel(ESCALATIONS, name="escalations")
    bot.configure(reminder_interval="1h", reminder_cap="2", escalation_channel=ESCALATIONS)
    bot.command(ALICE, "Router firmware update bricks the Speedport W 724V")
    bot.drain()
    report = bot.report()
    ref = report.reference
    assert scan(bot, berlin(19, 10)) == [(ref, Kind.ACK, 1)]
    assert scan(bot, berlin(19, 10, 59)) == []
    assert scan(bot, berlin(19, 11)) == [(ref, Kind.ACK, 2)]
    assert scan(bot, berlin(19, 12)) == [(ref, Kind.ACK_ESCALATION, 2)]
    assert scan(bot, berlin(19, 15)) == [], "escalated once; the cycle is over"
    thread = bot.thread(report)
    assert sum("waiting for acknowledgement" in line for line in thread) == 2
    escalation = bot.slack.messages(ESCALATIONS)
    assert len(escalation) == 1
    body = texts(escalation)
    assert "2 reminders in the leadership channel went unanswered" in body
    assert "reminder 1 in the leadership channel" in body and "reported" in body
    assert "Speedport" in body
    assert bot.report(report.id).escalated_at == berlin(19, 12)
    resolve = {"note": {"type": "plain_text_input", "value": "Rolled back the firmware"}}
    open_and_submit(bot, LEADER, "triage_resolve", report, resolve)
    bot.drain()
    assert scan(bot, berlin(20, 12)) == []
    resolved_by = f"resolved by <@{LEADER}>"
    assert sum(resolved_by in line for line in bot.thread(report)) == 2
    assert resolved_by in bot.slack.messages(ESCALATIONS)[0]["text"]
    assert "acknowledge" not in texts(bot.slack.messages(ESCALATIONS))


# --------------------------------------------------------------------------- follow-ups


def test_a_follow_up_reminds_the_owner_and_each_snooze_holds_it_back(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(bot)
    claim(bot, LEADER, report)
    pick_follow_up(bot, LEADER, report, date(2026, 11, 19))
    assert bot.report(report.id).follow_up_at == berlin(19, 8)
    assert f"<@{LEADER}> set a follow-up for 2026-11-19." in bot.thread(report)
    assert scan(bot, berlin(19, 7, 59)) == []
    assert scan(bot, berlin(19, 8)) == [(report.reference, Kind.FOLLOW_UP, 1)]
    dm = reminder_dm(bot, LEADER)
    assert "Time to follow up" in dm["text"] and "triage_resolve" in texts([dm])

    snooze(bot, LEADER, "hour")
    assert "Snoozed until" in bot.slack.dm_messages(LEADER)[-1]["text"] or any(
        "Snoozed until" in m["text"] for m in bot.slack.dm_messages(LEADER)
    )
    assert scan(bot, berlin(19, 8, 59)) == []
    assert scan(bot, berlin(19, 9)) == [(report.reference, Kind.FOLLOW_UP, 1)], "a new cycle"

    snooze(bot, LEADER, "tomorrow")
    assert scan(bot, berlin(19, 17)) == []
    assert scan(bot, berlin(20, 8)) == [(report.reference, Kind.FOLLOW_UP, 1)]

    snooze(bot, LEADER, "next_week")
    assert scan(bot, berlin(20, 12)) == [] and scan(bot, berlin(22, 12)) == []
    assert scan(bot, berlin(23, 8)) == [(report.reference, Kind.FOLLOW_UP, 1)]

    press_in_dm(bot, LEADER, "triage_resolve", value=str(report.id))
    # Done opens the resolve form; resolving updates every reminder already sent.
    view = bot.last_view()
    assert view["callback_id"] == "resolve_form"
    bot.submit(LEADER, view, {"note": {"type": "plain_text_input", "value": "Swapped"}})
    bot.drain()
    reminders_sent = [
        m
        for m in bot.slack.dm_messages(LEADER)
        if "Snoozed" in m["text"] or "resolved" in m["text"]
    ]
    assert len(reminders_sent) == 4
    assert all(f"resolved by <@{LEADER}>" in m["text"] for m in reminders_sent)
    assert not any("reminder-" in texts([m]) for m in reminders_sent), "no buttons left"
    assert scan(bot, berlin(30, 8)) == []


def test_a_forged_snooze_cannot_touch_another_leaders_reminder(bot: Bot) -> None:
    """The block id names a report and a reminder; both are checked against the presser."""
    bot.setup_team()
    first = file_from_form(bot, text="Fritzbox batch 7 reboots hourly")
    second = file_from_form(bot, text="Label printer jams in Leipzig")
    claim(bot, LEADER, first)
    claim(bot, LEADER_2, second)
    for leader, report in ((LEADER, first), (LEADER_2, second)):
        pick_follow_up(bot, leader, report, date(2026, 11, 19))
    assert len(scan(bot, berlin(19, 8))) == 2
    theirs = reminder_dm(bot, LEADER)
    block = next(b for b in theirs["blocks"] if b["block_id"].startswith("reminder-"))
    _, report_id, reminder_id = block["block_id"].split("-")
    own = reminder_dm(bot, LEADER_2)
    for forged in (f"reminder-{second.id}-{reminder_id}", f"reminder-{report_id}-{reminder_id}"):
        bot.press(
            LEADER_2,
            "reminder_snooze",
            None,
            channel=bot.slack.dm_channel(LEADER_2),
            message_ts=own["ts"],
            block_id=forged,
            type="static_select",
            selected_option={"value": "next_week"},
        )
        bot.drain()
    assert reminder_dm(bot, LEADER)["text"] == theirs["text"], "their reminder is untouched"
    for report in (first, second):
        snoozed = bot.report(report.id).snoozed_until
        assert snoozed is None or snoozed < berlin(23, 0), "nothing was snoozed to next week"


def test_an_ignored_follow_up_repeats_then_escalates_and_shows_in_feedback_mine(bot: Bot) -> None:
    bot.setup_team()
    bot.slack.add_channel(ESCALATIONS, name="escalations")
    bot.configure(escalation_channel=ESCALATIONS, reminder_interval="2h")
    report = file_from_form(bot)
    bot.drain()
    # No owner yet, so the card has no Follow up; a stale or forged press is refused.
    bot.press(LEADER_2, "reminder_follow_up", str(report.id), block_id=f"triage2-{report.id}")
    bot.drain()
    assert any("Claim or assign the report first" in e["text"] for e in bot.slack.ephemerals)
    bot.press(
        LEADER,
        "triage_assign",
        None,
        block_id=f"triage-{report.id}",
        type="users_select",
        selected_user=LEADER_2,
    )
    bot.drain()
    assert "reminder_follow_up" in texts([bot.card(report)]), "the card offers Follow up"
    past = {"follow_up_date": {"type": "datepicker", "selected_date": "2026-11-17"}}
    errors = open_and_submit(bot, LEADER, "reminder_follow_up", report, past)
    assert errors is not None and "later date" in errors["errors"]["follow_up_date"]
    friday = {"follow_up_date": {"type": "datepicker", "selected_date": "2026-11-20"}}
    assert open_and_submit(bot, LEADER, "reminder_follow_up", report, friday) is None
    bot.drain()

    mine = json.loads(bot.command(LEADER_2, "mine").body)
    assert "Your follow-ups" in texts(mine["blocks"]) and report.reference in texts(mine["blocks"])
    assert "Your follow-ups" not in bot.command(ALICE, "mine").body, "only leaders have them"

    ref = report.reference
    assert scan(bot, berlin(20, 8)) == [(ref, Kind.FOLLOW_UP, 1)]
    assert scan(bot, berlin(20, 10)) == [(ref, Kind.FOLLOW_UP, 2)]
    assert scan(bot, berlin(20, 12)) == [(ref, Kind.FOLLOW_UP, 3)]
    assert scan(bot, berlin(20, 13)) == []
    assert scan(bot, berlin(20, 14)) == [(ref, Kind.FOLLOW_UP_ESCALATION, 3)]
    assert scan(bot, berlin(23, 14)) == [], "escalated once"
    escalation = texts(bot.slack.messages(ESCALATIONS))
    assert f"follow-up on *{ref}* by <@{LEADER_2}>" in escalation
    assert "follow-up reminder 3 to the owner" in escalation
    assert "overdue" in bot.command(LEADER_2, "mine").body


def test_hand_over_moves_the_follow_up_to_the_new_owner(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(bot)
    claim(bot, LEADER, report)
    pick_follow_up(bot, LEADER, report, date(2026, 11, 18))  # today: due at once
    assert scan(bot, berlin(18, 10, 1)) == [(report.reference, Kind.FOLLOW_UP, 1)]
    press_in_dm(bot, LEADER, "reminder_hand_over", type="users_select", selected_user=LEADER_2)
    assert bot.report(report.id).owner_id == LEADER_2
    assert f"Handed over to <@{LEADER_2}>" in texts(bot.slack.dm_messages(LEADER))
    assert any("You were assigned" in dm for dm in bot.dms(LEADER_2))
    assert scan(bot, berlin(18, 11)) == [], "the new owner gets a working hour first"
    assert scan(bot, berlin(18, 11, 1)) == [(report.reference, Kind.FOLLOW_UP, 1)]
    assert "Time to follow up" in reminder_dm(bot, LEADER_2)["text"]
    leader_dms = bot.dms(LEADER)
    assert sum("Handed over" in dm for dm in leader_dms) == 1, "edited, not sent again"
    assert not any("Time to follow up" in dm for dm in leader_dms)


def test_call_back_reminders_start_after_the_claim_and_stop_when_the_call_is_recorded(
    bot: Bot,
) -> None:
    bot.setup_team()
    report = callback_report(bot)
    bot.clock.now = berlin(18, 17, 30)
    claim(bot, LEADER, report)
    assert scan(bot, berlin(18, 17, 59)) == []
    assert scan(bot, berlin(19, 8, 29)) == [], "one working hour after the claim: tomorrow 08:30"
    assert scan(bot, berlin(19, 8, 30)) == [(report.reference, Kind.CALLBACK, 1)]
    dm = texts([reminder_dm(bot, LEADER)])
    assert "waiting for your call back" in dm and "triage_customer_called" in dm
    assert "0171" not in dm, "the contact only by Show contact"
    assert scan(bot, berlin(19, 12, 29)) == []
    assert scan(bot, berlin(19, 12, 30)) == [(report.reference, Kind.CALLBACK, 2)]
    assert scan(bot, berlin(19, 16, 30)) == [(report.reference, Kind.CALLBACK, 3)]
    assert scan(bot, berlin(20, 10, 30)) == [(report.reference, Kind.CALLBACK, 4)], "no cap"
    note = {"note": {"type": "plain_text_input", "value": "Called, router is on its way"}}
    assert open_and_submit(bot, LEADER, "triage_customer_called", report, note) is None
    bot.drain()
    assert scan(bot, berlin(23, 16)) == []
    reminders_sent = [m["text"] for m in bot.slack.dm_messages(LEADER) if "call" in m["text"]]
    assert len(reminders_sent) == 4 and all("was called back" in m for m in reminders_sent)


def test_reminders_wait_for_the_recipients_working_hours_across_zones_weekend_and_holiday(
    bot: Bot,
) -> None:
    bot.setup_team()
    bot.slack.add_user(LEADER_2, name="uleader02", locale="en-US", tz="America/New_York")
    bot.configure(holidays="2026-11-20")
    report = file_from_form(bot)
    claim(bot, LEADER_2, report)
    pick_follow_up(bot, LEADER_2, report, date(2026, 11, 20))
    new_york_friday = datetime(2026, 11, 20, 8, tzinfo=NEW_YORK).astimezone(UTC)
    assert bot.report(report.id).follow_up_at == new_york_friday
    assert scan(bot, new_york_friday) == [], "Friday is a holiday"
    assert scan(bot, berlin(21, 15)) == [] and scan(bot, berlin(22, 15)) == [], "the weekend"
    new_york_monday = datetime(2026, 11, 23, 8, tzinfo=NEW_YORK).astimezone(UTC)
    assert scan(bot, berlin(23, 10)) == [], "Berlin works, New York still sleeps"
    assert scan(bot, new_york_monday - timedelta(minutes=1)) == []
    assert scan(bot, new_york_monday) == [(report.reference, Kind.FOLLOW_UP, 1)]


# --------------------------------------------------------------------------- never stale, never twice


def test_a_report_resolved_or_acknowledged_between_scheduling_and_sending_gets_no_reminder(
    bot: Bot,
) -> None:
    bot.setup_team()
    resolve = {"note": {"type": "plain_text_input", "value": "Fixed"}}
    for text in ("Queue display is dark", "Card reader declines all", "Shop tablet will not boot"):
        bot.command(ALICE, text)
    bot.drain()
    first, second, third = bot.reports()
    bot.clock.now = berlin(19, 10)
    config = deps_of(bot).config()

    # 1. Found due by a scan, resolved before that scan claims it.
    with Session(bot.engine) as session:
        due = reminders.find_due(
            session, now=bot.clock.now, config=config, zone_for=lambda _: BERLIN
        )
    assert [d.report_id for d in due] == [first.id, second.id, third.id]
    open_and_submit(bot, LEADER, "triage_resolve", first, resolve)
    with Session(bot.engine) as session:
        assert (
            reminders.claim(
                session, due=due[0], now=bot.clock.now, config=config, zone_for=lambda _: BERLIN
            )
            is None
        )
        session.commit()
    assert rows(bot) == []

    # 2. Queued by a scan, then resolved (or acknowledged) before the outbox delivered it:
    # the reminder is withdrawn and never posted.
    sent = reminder_feature.send_due(deps_of(bot))
    assert [d.report_id for d in sent] == [second.id, third.id]
    open_and_submit(bot, LEADER, "triage_resolve", second, resolve)
    bot.press_card(LEADER, "triage_acknowledge", third)
    bot.drain()
    for report in (first, second, third):
        assert not any("waiting for acknowledgement" in line for line in bot.thread(report))
    with Session(bot.engine) as session:
        statuses = session.exec(
            select(OutboxMessage.status).where(OutboxMessage.purpose == "reminder_ack")
        ).all()
    assert statuses == [OutboxStatus.SUPERSEDED] * 2
    assert scan(bot, berlin(20, 10)) == []


def test_two_processes_scanning_at_once_send_each_reminder_once(
    bot: Bot, database_url: str
) -> None:
    bot.setup_team()
    bot.configure(burst_threshold="0")  # eight alike reports: not an incident here
    for n in range(8):
        bot.command(ALICE, f"Problem number {n} in shop {n}")
    bot.drain()
    bot.clock.now = berlin(19, 10)
    engines = [make_engine(database_url) for _ in range(2)]
    replicas = [
        Deps(
            settings=bot.settings,
            engine=engine,
            client=WebClient(token=TOKEN, base_url=bot.slack.base_url),
            clock=bot.clock,
            config_ttl=0,
        )
        for engine in engines
    ]
    start = threading.Barrier(2)
    results: list[list[Due]] = [[], []]

    def run(index: int) -> None:
        start.wait()
        results[index] = reminder_feature.send_due(replicas[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    firsts = {due.report_id for due in results[0]}
    seconds = {due.report_id for due in results[1]}
    assert not firsts & seconds, "never both"
    assert len(firsts | seconds) == 8
    assert scan(bot) == []
    assert len(rows(bot)) == 8 and len(set(rows(bot))) == 8
    for report in bot.reports():
        assert sum("waiting for acknowledgement" in line for line in bot.thread(report)) == 1


def test_a_restart_in_the_middle_sends_nothing_twice_and_catches_up_in_the_morning(
    bot: Bot,
) -> None:
    bot.setup_team()
    bot.command(ALICE, "VPN drops every 10 minutes in the field")
    bot.drain()
    report = bot.report()
    bot.clock.now = berlin(19, 10)
    # The scheduler's job queues reminder 1; the process dies before the outbox delivers it.
    jobs.scan_reminders(deps_of(bot))
    assert rows(bot) == [(report.id or 0, "ack", 1)]

    restarted = Bot(engine=bot.engine, slack=bot.slack, clock=bot.clock)
    assert scan(restarted) == [], "already claimed"
    assert sum("waiting for acknowledgement" in line for line in restarted.thread(report)) == 1
    # Down again all afternoon; back at night: reminder 2 is overdue but waits for the morning.
    assert scan(restarted, berlin(19, 23)) == []
    assert scan(restarted, berlin(20, 8)) == [(report.reference, Kind.ACK, 2)]
    assert scan(restarted, berlin(20, 11, 59)) == [], "the next one an interval later, no burst"
    assert scan(restarted, berlin(20, 12)) == [(report.reference, Kind.ACK, 3)]
    assert [kind for _, kind, _ in rows(bot)] == ["ack", "ack", "ack"]


# --------------------------------------------------------------------------- operators


def test_feedbot_reminders_run_shows_then_sends_what_is_due(
    bot: Bot, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI reads the real clock, so this test makes every hour a working hour."""
    from feedbot import cli
    from feedbot.settings import get_settings

    if datetime.now(BERLIN).time() >= time(23, 58):
        pytest.skip("the one minute a day outside these working hours")
    for name, value in {
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": bot.slack.base_url,
        "FEEDBOT_ADMINS": ADMIN,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()  # read the environment above; cleared again at the end
    bot.setup_team()
    bot.configure(working_days="mon,tue,wed,thu,fri,sat,sun", working_hours="00:00-23:59")
    bot.clock.now = datetime.now(UTC) - timedelta(days=2)
    bot.command(ALICE, "Ticket printer in shop 3 is jammed")
    bot.drain()
    report = bot.report()
    try:
        assert cli.main(["reminders", "run", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert f"{report.reference}   reminder 1 in the card's thread (due " in out
        assert "1 due now; nothing sent (dry run)" in out
        assert rows(bot) == []
        assert cli.main(["reminders", "run"]) == 0
        assert "sent 1" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    assert sum("waiting for acknowledgement" in line for line in bot.thread(report)) == 1


def test_feedbot_reminders_run_delivers_what_else_is_due_as_the_bot_would(
    bot: Bot, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command drains the whole outbox, not only its reminders: a receipt to someone who
    reported anonymously (sealed) and a leader's Home (drawn when sent) go out as the bot
    would send them, instead of being given up as undeliverable or drawn without a queue."""
    from feedbot import cli
    from feedbot.settings import get_settings
    from tests.harness import SECRET_KEY
    from tests.test_anonymity import file_anonymously
    from tests.test_home import home_opened

    for name, value in {
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": bot.slack.base_url,
        "FEEDBOT_ADMINS": ADMIN,
        "FEEDBOT_SECRET_KEY": SECRET_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    bot.setup_team()
    home_opened(bot, LEADER)
    report = file_anonymously(bot, ALICE, "Cash drawer in shop 4 opens by itself")
    try:
        assert cli.main(["reminders", "run"]) == 0
    finally:
        get_settings.cache_clear()
    with Session(bot.engine) as session:
        statuses = set(session.exec(select(OutboxMessage.status)).all())
    assert statuses == {OutboxStatus.SENT}, "nothing given up, nothing left"
    assert any(report.reference in dm for dm in bot.dms(ALICE)), "her receipt"
    assert "triage_acknowledge" in json.dumps(bot.slack.home_views[LEADER]["blocks"])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    action_id=st.sampled_from(
        ["reminder_follow_up", "reminder_follow_up_pick", "reminder_snooze", "reminder_hand_over"]
    ),
    block_id=st.one_of(
        st.text(max_size=20),
        st.sampled_from(["reminder-1-1", "follow-up-1", "reminder-99999999999999-1", "reminder-1"]),
    ),
    value=st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["1", "-1", "9" * 30])),
    state=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=12),
        st.sampled_from(["hour", "2026-11-20", "2026-02-30", ALICE, LEADER]),
        st.dictionaries(st.sampled_from(["value", "x"]), st.text(max_size=10), max_size=2),
    ),
    user=st.sampled_from([ALICE, "UFORGED01"]),
)
def test_forged_reminder_presses_answer_without_a_5xx_and_change_nothing(
    bot: Bot, action_id: str, block_id: str, value: str | None, state: Any, user: str
) -> None:
    bot.setup_team()
    if not bot.reports():
        bot.command(ALICE, "A report to poke at")
    element = {
        "selected_option": state,
        "selected_user": state,
        "selected_date": state,
        "type": "static_select",
    }
    response = bot.press(user, action_id, value, block_id=block_id, **element)
    assert response.status < 500
    report = bot.report()
    assert report.owner_id is None and report.follow_up_at is None and report.snoozed_until is None
