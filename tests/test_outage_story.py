"""Issue 15, item 4: one outage, one story, however it is worded. Reports at one place, in
one category, about the same kind of problem join one incident group in German and English;
cards posted before the group formed point at it; leaders merge two groups by hand."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select

from feedbot.core.burst_keys import concepts
from feedbot.models import IncidentGroup, Report, TimelineEntry
from tests.harness import ALICE, BOB, LEADER, LEADERSHIP, Bot, Clock
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
    bot.slack.clock = lambda: clock.now.timestamp()  # Slack counts its limits in these minutes
    bot.setup_team()
    people = [f"UFIELD{n:03d}" for n in range(40)]
    for number, user in enumerate(people):
        bot.slack.add_user(user, locale="de-DE" if number % 2 else "en-US")
    for number in range(200):
        file_form(bot, people[number % 40], WORDINGS[number % 4], location="Leipzig")
        # 200 reports in two minutes: Slack opens about 100 forms a minute for a workspace.
        clock.advance(seconds=0.6)
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


PAYMENT = [
    "Kartenzahlung geht nicht, Terminal meldet Fehler",
    "Card payments failing at the till",
    "EC-Terminal offline, keine Kartenzahlung",
    "Payment terminal down, only cash possible",
]


def two_groups(bot: Bot) -> tuple[IncidentGroup, IncidentGroup]:
    """A network outage in Leipzig (INC-101) and failing card payments in Dresden (INC-102),
    which leadership learns are one story: the payment terminals run over the network."""
    for city, wordings, category, offset in (
        ("Leipzig", WORDINGS, NETWORK, 0),
        ("Dresden", PAYMENT, "Shop & tools", 10),
    ):
        for n in range(5):
            user = f"UFIELD{offset + n:03d}"
            bot.slack.add_user(user)
            file_form(bot, user, wordings[n % 4], location=city, category=category)
    bot.drain()
    first, second = groups(bot)
    return first, second


def merge_form(bot: Bot, user: str, group: IncidentGroup) -> Any:
    assert bot.press(user, "incident_merge", str(group.id)).status == 200
    return bot.last_view()


def submit_merge(bot: Bot, user: str, view: dict[str, Any], reference: str) -> Any:
    values = {"reference": {"type": "plain_text_input", "value": reference}}
    return bot.submit(user, view, values)


def test_a_leader_merges_two_groups_and_both_cards_say_so(bot: Bot) -> None:
    bot.setup_team()
    leipzig, dresden = two_groups(bot)
    assert (leipzig.reference, dresden.reference) == ("INC-101", "INC-102")
    opened = len(bot.slack.calls_to("views.open"))
    bot.press(ALICE, "incident_merge", str(leipzig.id))
    assert len(bot.slack.calls_to("views.open")) == opened, "no form for a non-leader"
    view = merge_form(bot, LEADER, leipzig)
    assert view["callback_id"] == "incident_merge_form"
    response = submit_merge(bot, LEADER, view, "INC-101")
    assert "another open incident" in response.body, "not into itself"
    response = submit_merge(bot, LEADER, view, "INC-999")
    assert "another open incident" in response.body
    assert submit_merge(bot, LEADER, view, "inc-102").status == 200
    bot.drain()
    with Session(bot.engine) as session:
        moved = session.exec(select(Report).where(col(Report.incident_id) == dresden.id)).all()
        source = session.get(IncidentGroup, leipzig.id)
        entries = session.exec(
            select(TimelineEntry).where(col(TimelineEntry.action) == "incident_merged")
        ).all()
    assert len(moved) == 10
    assert source is not None and source.merged_into_id == dresden.id
    assert len(entries) == 5 and {e.actor_id for e in entries} == {LEADER}
    assert all(e.detail == "INC-101 -> INC-102" for e in entries)
    old_card = card_of(bot, "INC-101")
    assert "was merged into *INC-102*" in json.dumps(old_card["blocks"])
    assert "incident_acknowledge" not in json.dumps(old_card["blocks"])
    new_card = card_of(bot, "INC-102")
    assert "10 similar reports" in str(new_card["text"])
    thread = [m for m in bot.slack.messages(LEADERSHIP) if m.get("thread_ts") == new_card["ts"]]
    assert any(f"<@{LEADER}> merged INC-101 into this incident" in m["text"] for m in thread)
    pre_group = next(r for r in bot.reports() if r.card_message_id is not None)
    assert "Part of incident *INC-102*" in json.dumps(bot.card(pre_group)["blocks"])
    # the merged group is closed: merging it again is refused
    response = submit_merge(bot, LEADER, view, "INC-102")
    assert "already closed" in response.body


def test_a_non_leaders_forged_merge_is_refused(bot: Bot) -> None:
    bot.setup_team()
    leipzig, dresden = two_groups(bot)
    view = merge_form(bot, LEADER, leipzig)
    response = submit_merge(bot, ALICE, view, dresden.reference)
    assert "Only leaders" in response.body
    assert all(r.incident_id in (leipzig.id, dresden.id) for r in bot.reports())
    assert sum(r.incident_id == dresden.id for r in bot.reports()) == 5
