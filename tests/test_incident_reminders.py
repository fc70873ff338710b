"""Issue 15, item 3: incident groups are never forgotten. A group waits for acknowledgement
like a report: reminded in its card's thread, then escalated; the reports in it have no
reminders of their own. The clock starts on Wednesday 2026-11-18, 10:00 in Berlin."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from feedbot.core.reminders import Kind
from feedbot.models import IncidentGroup, IncidentReminder, Reminder
from tests.harness import ALICE, CAROL, LEADER, LEADERSHIP, Bot
from tests.test_incidents import OUTAGE, file_dm, top_level
from tests.test_reminders import ESCALATIONS, berlin, scan
from tests.test_triage import file_from_form


def incident_card(bot: Bot, ref: str = "INC-101") -> dict[str, Any]:
    return next(m for m in top_level(bot) if f":rotating_light: {ref}:" in str(m["text"]))


def incident_thread(bot: Bot, ref: str = "INC-101") -> list[dict[str, Any]]:
    ts = incident_card(bot, ref)["ts"]
    return [m for m in bot.slack.messages(LEADERSHIP) if m.get("thread_ts") == ts]


def outage_group(bot: Bot, *, high: bool = True) -> IncidentGroup:
    """Six reports of one outage, one of them filed as high urgency: an incident group."""
    if high:
        file_from_form(
            bot,
            ALICE,
            text=OUTAGE,
            urgency={"type": "static_select", "selected_option": {"value": "high"}},
        )
    for n in range(6 if not high else 5):
        user = f"UFIELD{n:03d}"
        bot.slack.add_user(user)
        file_dm(bot, user, OUTAGE)
    bot.drain()
    with Session(bot.engine) as session:
        return session.exec(select(IncidentGroup)).one()


def test_a_group_is_reminded_in_its_cards_thread_then_escalated(bot: Bot) -> None:
    bot.setup_team()
    bot.slack.add_channel(ESCALATIONS, name="escalations")
    bot.configure(reminder_interval="1h", reminder_cap="2", escalation_channel=ESCALATIONS)
    group = outage_group(bot)
    assert group.urgency == "high", "the most urgent report's urgency"
    assert scan(bot, berlin(18, 13, 59)) == []
    assert scan(bot, berlin(18, 14)) == [("INC-101", Kind.ACK, 1)], "high: 4 working hours"
    assert scan(bot, berlin(18, 14, 30)) == []
    assert scan(bot, berlin(18, 15)) == [("INC-101", Kind.ACK, 2)]
    assert scan(bot, berlin(18, 16)) == [("INC-101", Kind.ACK_ESCALATION, 2)]
    assert scan(bot, berlin(19, 16)) == [], "escalated once; the cycle is over"
    thread = incident_thread(bot)
    reminders = [m for m in thread if "waiting for acknowledgement" in m["text"]]
    assert len(reminders) == 2
    assert "6 reports" in reminders[0]["text"] and f"<@{LEADER}>" in reminders[0]["text"]
    assert "Reminder 2 of 2" in json.dumps(reminders[1]["blocks"])
    escalation = bot.slack.messages(ESCALATIONS)
    assert len(escalation) == 1
    body = json.dumps(escalation, ensure_ascii=False)
    assert "INC-101" in body and "6 reports" in body
    assert "2 reminders in the leadership channel went unanswered" in body
    assert "Leipzig" in body
    with Session(bot.engine) as session:
        assert session.exec(select(Reminder)).all() == [], "no report reminders of its own"
        steps = session.exec(select(IncidentReminder)).all()
        assert [(s.kind, s.sequence) for s in steps] == [
            ("ack", 1),
            ("ack", 2),
            ("ack_escalation", 1),
        ]
        assert session.get(IncidentGroup, group.id).escalated_at == berlin(18, 16)  # type: ignore[union-attr]
    assert bot.press(LEADER, "incident_acknowledge", str(group.id)).status == 200
    bot.drain()
    done = [m for m in incident_thread(bot) if "no longer waiting" in m["text"]]
    assert len(done) == 2, "the reminders in the thread say it is acknowledged"


def test_acknowledging_the_group_stops_its_reminders(bot: Bot) -> None:
    bot.setup_team()
    group = outage_group(bot, high=False)
    assert group.urgency == "normal"
    assert scan(bot, berlin(19, 9, 59)) == []
    assert scan(bot, berlin(19, 10)) == [("INC-101", Kind.ACK, 1)], "normal: one working day"
    bot.press(LEADER, "incident_acknowledge", str(group.id))
    bot.drain()
    assert scan(bot, berlin(23, 10)) == []
    assert scan(bot, berlin(25, 10)) == []


def test_a_critical_report_joining_makes_the_group_escalate_at_its_target(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(escalation_channel=ESCALATIONS)
    bot.slack.add_channel(ESCALATIONS, name="escalations")
    outage_group(bot, high=False)
    file_from_form(
        bot,
        "UFIELD000",
        text=OUTAGE + " kritisch",
        urgency={"type": "static_select", "selected_option": {"value": "critical"}},
    )
    assert scan(bot, berlin(18, 11)) == [
        ("INC-101", Kind.ACK, 1),
        ("INC-101", Kind.ACK_ESCALATION, 0),
    ]
    assert "is *critical*" in json.dumps(bot.slack.messages(ESCALATIONS))


def test_the_digest_counts_a_group_once_with_its_number_of_reports(bot: Bot) -> None:
    """Hand-computed, week 2026-W47 (Berlin). On Wednesday at 10:00 six reports of one
    outage form INC-101 and one unrelated report FB-1007 gets its own card."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from feedbot.core.digest import build_digest
    from feedbot.slack.views.digest import build_digest_message

    bot.setup_team()
    group = outage_group(bot)
    bot.command(CAROL, "The coffee machine in shop Halle is broken")
    bot.drain()
    coffee = bot.report()
    assert coffee.incident_id is None and coffee.reference == "FB-1007"
    bot.clock.now = berlin(18, 11)
    assert bot.press_card(LEADER, "triage_acknowledge", coffee).status == 200
    assert scan(bot, berlin(18, 14)) == [("INC-101", Kind.ACK, 1)]

    def digest() -> Any:
        with Session(bot.engine) as session:
            return build_digest(
                session, period="2026-W47", zone=ZoneInfo("Europe/Berlin"), now=bot.clock.now
            )

    first = digest()
    assert first.new.count == 7, "new counts every report, grouped or not"
    assert (first.still_open.count, first.still_open.previous) == (2, 0), "INC-101 and FB-1007"
    assert [(line.reference, line.incident_reports) for line in first.unacknowledged.items] == [
        ("INC-101", 6)
    ]
    assert first.unacknowledged.total == 1, "the six reports in it are not counted again"
    assert [(line.reference, line.incident_reports) for line in first.overdue.items] == [
        ("INC-101", 6)
    ], "past its 4 h target (high), unacknowledged"
    assert [line.reference for line in first.urgent.items] == ["INC-101"]
    assert (first.acknowledge.count, first.acknowledge.median) == (1, timedelta(hours=1))
    text = json.dumps(build_digest_message(first, locale="en").to_payload()["blocks"])
    assert "INC-101" in text and "(incident of 6 reports)" in text

    bot.clock.now = berlin(18, 15)
    bot.press(LEADER, "incident_acknowledge", str(group.id))
    bot.drain()
    second = digest()
    assert second.still_open.count == 2
    assert second.unacknowledged.total == 0 and second.overdue.total == 0
    # acknowledged after 1 h (FB-1007) and 5 h (INC-101, once, not six times):
    # median 3 h; p90 at rank 0.9 = 1 h + 0.9 x 4 h = 4 h 36 min
    assert second.acknowledge.count == 2
    assert second.acknowledge.median == timedelta(hours=3)
    assert second.acknowledge.p90 == timedelta(hours=4, minutes=36)

    bot.clock.now = berlin(19, 10)
    bot.press(LEADER, "incident_resolve", str(group.id))
    note = {"note": {"type": "plain_text_input", "value": "Sendemast wieder in Betrieb"}}
    assert bot.submit(LEADER, bot.last_view(), note).status == 200
    bot.drain()
    third = digest()
    assert third.resolved.count == 6, "resolved counts reports"
    assert third.still_open.count == 1, "FB-1007 only"
    assert (third.resolve.count, third.resolve.median) == (1, timedelta(hours=24)), (
        "INC-101 once, 24 h after it formed"
    )
