"""Issue 15, item 4: one outage, one story, however it is worded. Reports at one place, in
one category, about the same kind of problem join one incident group in German and English;
cards posted before the group formed point at it; leaders merge two groups by hand."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select

from feedbot.core.burst_keys import concepts
from feedbot.models import IncidentGroup
from tests.harness import ALICE, BOB, Bot, Clock
from tests.test_incidents import top_level
from tests.test_reporting import form_values

NETWORK = "Network & coverage"
WORDINGS = [
    "Kein Netz in der Innenstadt, Mobilfunk komplett ausgefallen",
    "Netzausfall: Kunden haben seit eben keinen Empfang mehr",
    "Network outage downtown, customers cannot make calls",
    "No signal at all in the shop, phones show no service",
]


def file_form(bot: Bot, user: str, text: str, *, location: str, category: str = NETWORK) -> None:
    bot.command(user, "")
    values = form_values(
        text,
        category={"type": "static_select", "selected_option": {"value": category}},
        location={"type": "plain_text_input", "value": location},
        urgency={"type": "static_select", "selected_option": {"value": "normal"}},
    )
    response = bot.submit(user, bot.last_view(), values)
    assert response.status == 200, response.body


def groups(bot: Bot) -> list[IncidentGroup]:
    with Session(bot.engine) as session:
        return list(session.exec(select(IncidentGroup).order_by(col(IncidentGroup.id))))


def card_of(bot: Bot, ref: str) -> dict[str, Any]:
    return next(m for m in top_level(bot) if f":rotating_light: {ref}:" in str(m["text"]))


def test_the_outage_table_knows_network_words_in_german_and_english() -> None:
    assert all(concepts(text) == {"network"} for text in WORDINGS)
    assert concepts("Die Kaffeemaschine ist kaputt") == frozenset()
    assert concepts("The printer is down") == frozenset(), "'down' alone links nothing"


def test_two_hundred_reports_in_four_wordings_make_one_story(bot: Bot, clock: Clock) -> None:
    bot.setup_team()
    people = [f"UFIELD{n:03d}" for n in range(40)]
    for number, user in enumerate(people):
        bot.slack.add_user(user, locale="de-DE" if number % 2 else "en-US")
    for number in range(200):
        file_form(bot, people[number % 40], WORDINGS[number % 4], location="Leipzig")
        clock.advance(seconds=0.25)  # 200 reports within a minute
        if number % 20 == 0:
            bot.drain()
    bot.drain()
    (group,) = groups(bot)
    reports = bot.reports()
    assert len(reports) == 200 and all(r.incident_id == group.id for r in reports)
    cards = top_level(bot)
    assert len(cards) == 4 + 1, "the four cards before the group formed, and the group's"
    incident = card_of(bot, "INC-101")
    assert "200 similar reports" in str(incident["text"])
    assert "*Reported by*\\n40 named" in json.dumps(incident["blocks"])
    for report in reports[:4]:
        card = bot.card(report)
        assert "Part of incident *INC-101*" in json.dumps(card["blocks"]), report.reference
    assert all(r.card_message_id is None for r in reports[4:]), "no card of their own"


def test_same_place_and_time_but_another_problem_or_place_stays_apart(bot: Bot) -> None:
    bot.setup_team()
    for n in range(5):
        user = f"UFIELD{n:03d}"
        bot.slack.add_user(user)
        file_form(bot, user, WORDINGS[n % 4], location="Leipzig")
    bot.drain()
    assert len(groups(bot)) == 1
    file_form(bot, ALICE, "Kunde beschwert sich über die Rechnung vom Oktober", location="Leipzig")
    file_form(bot, BOB, "Handynetz gestört, Anrufe brechen ab", location="Dresden")
    file_form(
        bot,
        ALICE,
        "Mobilfunkmast am Markt ohne Funktion",
        location="Leipzig",
        category="Shop & tools",
    )
    bot.drain()
    apart = [r for r in bot.reports() if r.incident_id is None]
    assert [r.location for r in apart] == ["Leipzig", "Dresden", "Leipzig"]
