"""Anonymity and privacy as an outsider tries them: what a database reader, or a colleague
who uses feedbot like anyone else, can learn about other people's reports.

Every claim of docs/privacy.md about who can see what has a test here or next to the
feature it belongs to (tests/test_suggestions.py, tests/test_privacy.py)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session, select

from feedbot import models
from feedbot.models import MeToo, Report, SlackUser
from tests import slack_payloads as payloads
from tests.harness import ALICE, BOB, CAROL, IDENTITIES, INTAKE, LEADER, LEADERSHIP, Bot
from tests.test_reporting import form_values

ANONYMOUSLY = {"type": "checkboxes", "selected_options": [{"value": "yes"}]}


def dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as a database reader sees them."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for table in models.metadata.sorted_tables:
            rows = connection.execute(text(f'SELECT * FROM "{table.name}"')).mappings().all()
            tables[table.name] = [dict(row) for row in rows]
    return tables


def where_named(engine: Engine, *needles: str) -> list[str]:
    """`table.column` of every cell that contains one of `needles`."""
    found = []
    for table, rows in dump(engine).items():
        for row in rows:
            for column, value in row.items():
                if value is not None and any(needle in str(value) for needle in needles):
                    found.append(f"{table}.{column}")
    return sorted(set(found))


def file_anonymously(bot: Bot, user: str, text_: str) -> Report:
    bot.command(user, "")
    response = bot.submit(user, bot.last_view(), form_values(text_, anonymous=ANONYMOUSLY))
    assert response.status == 200, response.body
    return bot.report()


def test_a_database_reader_cannot_name_anonymous_reporters_or_me_toos(bot: Bot) -> None:
    """Alice reports anonymously, Bob and Carol say *me too* (an anonymous act); leaders
    answer and resolve; everyone hears back. Then read the whole database: neither their
    Slack ids nor their DM channels appear anywhere tied to the report."""
    bot.setup_team()
    report = file_anonymously(bot, ALICE, "The new tariff sheet double-charges roaming")
    bot.drain()
    card = bot.card(report)
    for colleague in (BOB, CAROL):
        bot.press(colleague, "report_me_too", str(report.id), channel=INTAKE)
    bot.press_card(LEADER, "triage_acknowledge", report)
    bot.press_card(LEADER, "triage_resolve", report)
    bot.submit(LEADER, bot.last_view(), {"note": {"value": "Sheet corrected, refunds issued"}})
    bot.drain()
    assert any("FB-1001" in dm and "resolved" in dm for dm in bot.dms(ALICE)), "she hears back"
    assert any("FB-1001" in dm and "erledigt" in dm for dm in bot.dms(BOB)), "so does Bob"
    assert card

    people = (ALICE, BOB, CAROL)
    dms = tuple(bot.slack.dm_channel(user) for user in people)
    # Only the profile cache knows these people exist, with a day's precision: nothing there
    # ties them to a report or to a moment.
    assert where_named(bot.engine, *people, *dms) == ["slack_user.user_id"]
    with Session(bot.engine) as session:
        for profile in session.exec(select(SlackUser)).all():
            assert profile.fetched_at.hour == profile.fetched_at.minute == 0
        stored = session.get(Report, report.id)
        assert stored is not None and stored.reporter_id is None
        assert IDENTITIES.open(stored.reporter_sealed) == ALICE, "feedbot itself can answer her"
        seals = session.exec(select(MeToo.user_sealed)).all()
        assert sorted(IDENTITIES.open(seal) or "" for seal in seals) == [BOB, CAROL]
        assert len(set(seals)) == 2


def test_seals_of_one_person_look_unrelated() -> None:
    assert IDENTITIES.seal(ALICE) != IDENTITIES.seal(ALICE)
    assert IDENTITIES.open(IDENTITIES.seal(ALICE)) == ALICE
    assert IDENTITIES.me_too_key(1, ALICE) != IDENTITIES.me_too_key(2, ALICE)


def test_a_lost_key_only_means_no_news_for_anonymous_reporters(bot: Bot) -> None:
    """The key changed: the report and its card stay, leaders work on it; only the sealed
    reporter cannot be told any more."""
    bot.setup_team()
    report = file_anonymously(bot, ALICE, "Coverage gone in the Leipzig depot")
    bot.drain()
    from feedbot.core.identity import Identities

    bot.sender.identities = Identities("another-key-after-the-old-one-was-lost-00")
    bot.deps._identities = bot.sender.identities
    bot.press_card(LEADER, "triage_acknowledge", report)
    bot.drain()
    assert bot.report(report.id).acknowledged_at is not None
    assert not any("was acknowledged" in dm for dm in bot.dms(ALICE))
    assert "acknowledged" in json.dumps(bot.card(report)["blocks"]).lower()


def test_the_home_tab_of_an_anonymous_reporter_is_stored_sealed(bot: Bot) -> None:
    bot.setup_team()
    file_anonymously(bot, ALICE, "Label printer in Halle prints blank labels")
    event = payloads.app_home_opened_event(user=ALICE, channel=bot.slack.dm_channel(ALICE))
    bot.event(event)
    bot.drain()
    home = json.dumps(bot.slack.home_views[ALICE]["blocks"])
    assert "FB-1001" in home, "she sees her own anonymous report"
    assert where_named(bot.engine, ALICE) == ["slack_user.user_id"]
    assert LEADERSHIP not in where_named(bot.engine, ALICE)


def test_an_incident_card_never_counts_who_filed_the_anonymous_reports(bot: Bot) -> None:
    """Three anonymous reports from Alice and one named from Bob: the card counts named
    people and anonymous reports, so nothing says two people (or one) were behind them."""
    bot.setup_team()
    bot.configure(burst_threshold="4")
    for number in range(3):
        file_anonymously(bot, ALICE, f"Mobile network down in Leipzig Gohlis since noon ({number})")
    bot.command(BOB, "Mobile network down in Leipzig Gohlis since noon, customers angry")
    bot.drain()
    (card,) = [
        m for m in bot.slack.messages(LEADERSHIP) if m["text"].startswith(":rotating_light:")
    ]
    shown = json.dumps(card["blocks"], ensure_ascii=False)
    assert "1 named · 3 anonymous reports" in shown
    assert "2 people" not in shown.lower() and ALICE not in shown
