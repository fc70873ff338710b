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


def latest_dm_with(bot: Bot, user: str, action_id: str) -> dict[str, Any]:
    for message in reversed(bot.slack.dm_messages(user)):
        if action_id in json.dumps(message.get("blocks") or []):
            return message
    raise AssertionError(f"no DM to {user} with {action_id}")


def test_an_anonymous_reporter_and_leadership_talk_back_and_forth(bot: Bot) -> None:
    bot.setup_team()
    report = file_anonymously(bot, ALICE, "Shift plans change at night without notice")
    bot.drain()
    for round_ in (1, 2):
        bot.press_card(LEADER, "triage_reply", report)
        bot.submit(LEADER, bot.last_view(), {"note": {"value": f"Which shop is it? ({round_})"}})
        bot.drain()
        notice = latest_dm_with(bot, ALICE, "report_reporter_reply")
        assert f"Which shop is it? ({round_})" in notice["text"]
        dm = bot.slack.dm_channel(ALICE)
        bot.click(ALICE, dm, notice["ts"], "report_reporter_reply")
        form = bot.last_view()
        assert "without your name" in json.dumps(form["blocks"])
        assert (
            bot.submit(ALICE, form, {"text": {"value": f"Halle, every Friday ({round_})"}}).status
            == 200
        )
        bot.drain()
        assert f"The reporter answered: Halle, every Friday ({round_})" in bot.thread(report)
    assert any("leadership reads your answer" in dm for dm in bot.dms(ALICE))
    leaders_see = json.dumps(bot.slack.messages(LEADERSHIP))
    assert ALICE not in leaders_see, "leaders never see who answered"
    assert where_named(bot.engine, ALICE) == ["slack_user.user_id"]
    with Session(bot.engine) as session:
        from feedbot.models import TimelineEntry

        answers = session.exec(
            select(TimelineEntry).where(TimelineEntry.action == "reporter_replied")
        ).all()
        assert [entry.actor_id for entry in answers] == [None, None]


def test_a_direct_message_that_may_be_an_answer_asks_before_filing_anything(bot: Bot) -> None:
    """After leadership answered her anonymous report, Alice writes to the bot: it must not
    become a new report under her name unless she says so."""
    bot.setup_team()
    report = file_anonymously(bot, ALICE, "Shift plans change at night without notice")
    bot.drain()
    dm = bot.slack.dm_channel(ALICE)
    bot.message(ALICE, "It happened again last night", channel=dm, channel_type="im")
    bot.drain()
    assert len(bot.reports()) == 1, "nothing filed yet"
    question = latest_dm_with(bot, ALICE, "dm_new_report")
    assert "FB-1001" in json.dumps(question["blocks"])
    bot.click(ALICE, dm, question["ts"], f"dm_about_report-{report.id}")
    bot.drain()
    assert "The reporter answered: It happened again last night" in bot.thread(report)
    assert len(bot.reports()) == 1
    assert where_named(bot.engine, ALICE) == ["slack_user.user_id"], "stored only sealed"
    # Pressing again, or as someone else, does nothing: the message was taken care of.
    bot.click(BOB, dm, question["ts"], "dm_new_report")
    bot.drain()
    assert len(bot.reports()) == 1

    bot.message(ALICE, "Also: the coffee machine in Halle is broken", channel=dm, channel_type="im")
    bot.drain()
    question = latest_dm_with(bot, ALICE, "dm_new_report")
    bot.click(ALICE, dm, question["ts"], "dm_new_report")
    bot.drain()
    named = bot.report()
    assert named.id != report.id and named.reporter_id == ALICE and not named.anonymous
    assert named.text == "Also: the coffee machine in Halle is broken"


def test_a_curious_colleague_learns_nothing_about_other_peoples_reports(bot: Bot) -> None:
    """Bob is an ordinary employee. Alice filed one report anonymously and one named by DM.
    Whatever Bob types or presses, forged ids included, he learns neither her words nor that
    she wrote them, and changes nothing."""
    bot.setup_team()
    bot.message(
        ALICE,
        "The SIM activation tool times out at the counter in Halle",
        channel=bot.slack.dm_channel(ALICE),
        channel_type="im",
    )
    private = bot.report()
    anonymous = file_anonymously(bot, ALICE, "My shift lead forges the cash count every Friday")
    bot.drain()
    secrets = ("every Friday", "in Halle", ALICE)  # words only Alice wrote

    def seen_by_bob() -> str:
        bot.drain()
        shown = [m for m in bot.slack.dm_messages(BOB)]
        shown += [e for e in bot.slack.ephemerals if e["user"] == BOB]
        shown += [r for r in bot.slack.responses]
        return json.dumps(shown, ensure_ascii=False)

    answers = [
        bot.command(BOB, "mine").body,
        bot.command(BOB, "Shift lead forges the cash count").body,
        bot.command(BOB, "SIM activation tool times out at the counter").body,
    ]
    for report in (anonymous, private):
        for action in ("report_add_details", "report_reporter_reply", "triage_resolve"):
            bot.press(BOB, action, str(report.id), channel=bot.slack.dm_channel(BOB))
        bot.press(BOB, "report_me_too_instead", f"{report.id}:{private.id}", channel=INTAKE)
    bot.event(payloads.app_home_opened_event(user=BOB, channel=bot.slack.dm_channel(BOB)))
    bot.drain()
    home = json.dumps(bot.slack.home_views.get(BOB, {}), ensure_ascii=False)
    everything = "".join(str(a) for a in answers) + seen_by_bob() + home
    views = json.dumps([c.args for c in bot.slack.calls_to("views.open")], ensure_ascii=False)
    for secret in secrets:
        assert secret not in everything, secret
        assert secret not in views, f"a form showed {secret!r}"
    assert anonymous.reference in everything, "he may still say me too on it by reference"
    for report in (anonymous, private):
        stored = bot.report(report.id)
        assert stored.status == "open" and stored.me_too_count == 0
    assert len(bot.reports()) == 4, "only Bob's own two quick reports were added"
