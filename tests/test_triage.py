"""Leaders act on the card; the card, its thread, the timeline and the reporter follow."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select

from feedbot.models import Report, TimelineEntry
from tests.harness import ALICE, BOB, CAROL, INTAKE, LEADER, LEADER_2, LEADERSHIP, Bot
from tests.test_reporting import form_values


def file_from_form(
    bot: Bot, user: str = ALICE, text: str = "Fritzbox batch 7 reboots hourly", **overrides: Any
) -> Report:
    bot.command(user, "")
    response = bot.submit(user, bot.last_view(), form_values(text, **overrides))
    assert response.status == 200, response.body
    bot.drain()
    return bot.report()


def timeline(bot: Bot, report: Report) -> list[tuple[str | None, str, str | None]]:
    with Session(bot.engine) as session:
        entries = session.exec(
            select(TimelineEntry)
            .where(TimelineEntry.report_id == report.id)
            .order_by(col(TimelineEntry.id))
        )
        return [(e.actor_id, e.action, e.detail) for e in entries]


def card_json(bot: Bot, report: Report) -> str:
    return json.dumps(bot.card(report)["blocks"], ensure_ascii=False)


def open_and_submit(
    bot: Bot, user: str, action: str, report: Report, state: dict[str, Any]
) -> dict[str, Any] | None:
    bot.press_card(user, action, report)
    view = bot.last_view()
    response = bot.submit(user, view, state)
    assert response.status == 200
    return json.loads(response.body) if response.body else None


def test_acknowledge_updates_card_thread_timeline_and_tells_the_reporter(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(bot)
    assert "Acknowledge" in card_json(bot, report)
    assert bot.press_card(LEADER, "triage_acknowledge", report).status == 200
    bot.drain()
    card = card_json(bot, report)
    assert "Acknowledged" in card and "triage_acknowledge" not in card
    assert f"<@{LEADER}> acknowledged." in bot.thread(report)
    assert (LEADER, "acknowledged", None) in timeline(bot, report)
    assert any("FB-1001* was acknowledged" in dm for dm in bot.dms(ALICE))
    assert len(bot.slack.calls_to("chat.update")) == 1, "one edit of the card, not a new post"


def test_a_non_leader_gets_an_explanation_and_nothing_changes(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(bot)
    before = timeline(bot, report)
    for action in ("triage_acknowledge", "triage_claim"):
        bot.press_card(BOB, action, report)
    # Reopen is not on an open card; a forged press is refused all the same.
    bot.press(BOB, "triage_reopen", str(report.id), block_id=f"triage-{report.id}")
    bot.press_card(CAROL, "triage_resolve", report)
    bot.press(
        CAROL,
        "triage_assign",
        None,
        block_id=f"triage-{report.id}",
        type="users_select",
        selected_user=CAROL,
    )
    bot.drain()
    assert bot.slack.calls_to("views.open")[-1].args["view"]["callback_id"] == "report_form", (
        "no triage form opened"
    )
    assert timeline(bot, report) == before
    assert bot.report(report.id).status == "open" and bot.report(report.id).owner_id is None
    refusals = [e for e in bot.slack.ephemerals if e["user"] in (BOB, CAROL)]
    assert len(refusals) == 5
    assert all(
        "Only leaders and admins" in e["text"] or "Führungskräfte" in e["text"] for e in refusals
    )
    assert bot.slack.calls_to("chat.update") == []


def test_a_forged_form_submission_from_a_non_leader_is_refused(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(bot)
    bot.press_card(LEADER, "triage_resolve", report)
    view = bot.last_view()
    response = bot.submit(
        BOB, view, {"note": {"type": "plain_text_input", "value": "I close it myself"}}
    )
    assert "Führungskräfte" in json.loads(response.body)["errors"]["note"]
    assert bot.report(report.id).status == "open"


def test_claim_and_assign_set_the_owner_and_tell_the_assignee(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(bot)
    bot.press_card(LEADER, "triage_claim", report)
    assert bot.report(report.id).owner_id == LEADER
    bot.press(
        LEADER,
        "triage_assign",
        None,
        block_id=f"triage-{report.id}",
        type="users_select",
        selected_user=LEADER_2,
    )
    bot.drain()
    assert bot.report(report.id).owner_id == LEADER_2
    assert f"<@{LEADER}> claimed it." in bot.thread(report)
    assert f"<@{LEADER}> assigned it to <@{LEADER_2}>." in bot.thread(report)
    assert any("You were assigned *FB-1001*" in dm for dm in bot.dms(LEADER_2))
    assert f"<@{LEADER_2}>" in card_json(bot, report)
    dms = bot.dms(ALICE)
    assert sum("was acknowledged" in dm for dm in dms) == 1, "claiming acknowledges, once"


def test_reply_reaches_the_reporter_even_when_anonymous(bot: Bot) -> None:
    bot.setup_team()
    anonymous = {"type": "checkboxes", "selected_options": [{"value": "yes"}]}
    report = file_from_form(bot, anonymous=anonymous)
    assert report.anonymous
    card = card_json(bot, report)
    assert ALICE not in card and "Anonymous" in card
    errors = open_and_submit(
        bot, LEADER, "triage_reply", report, {"note": {"type": "plain_text_input", "value": " "}}
    )
    assert errors is not None and "note" in errors["errors"]
    assert (
        open_and_submit(
            bot,
            LEADER,
            "triage_reply",
            report,
            {
                "note": {
                    "type": "plain_text_input",
                    "value": "We swap batch 7 on Friday. <!here> thanks!",
                }
            },
        )
        is None
    )
    bot.drain()
    reply = next(dm for dm in bot.dms(ALICE) if "answered your report" in dm)
    assert "We swap batch 7 on Friday. &lt;!here&gt; thanks!" in reply
    leader_facing = json.dumps(bot.slack.messages(LEADERSHIP))
    assert ALICE not in leader_facing
    assert all(actor != ALICE for actor, _, _ in timeline(bot, report))


def test_forward_posts_a_copy_without_buttons_or_contact(bot: Bot) -> None:
    bot.setup_team()
    callback = {"type": "checkboxes", "selected_options": [{"value": "yes"}]}
    contact = {"type": "plain_text_input", "value": "Frau Weber, 0171 2345678"}
    report = file_from_form(bot, callback=callback, contact=contact)
    state = {"channel": {"type": "conversations_select", "selected_conversation": "CNETOPS01"}}
    assert open_and_submit(bot, LEADER, "triage_forward", report, state) is None
    bot.drain()
    copy = bot.slack.messages("CNETOPS01")
    assert len(copy) == 1
    body = json.dumps(copy[0]["blocks"])
    assert "FB-1001" in body and "Forwarded from leadership" in body
    assert '"type": "actions"' not in body and "0171" not in body
    assert f"<@{LEADER}> forwarded it to <#CNETOPS01>." in bot.thread(report)


def test_resolve_tells_reporter_and_me_toos_then_reopen(bot: Bot) -> None:
    bot.setup_team()
    bot.message(ALICE, "LTE down around Magdeburg Hbf")
    report = bot.report()
    bot.press(BOB, "report_me_too", str(report.id), channel=INTAKE)
    bot.press(CAROL, "report_me_too", str(report.id), channel=INTAKE)
    bot.drain()
    errors = open_and_submit(
        bot, LEADER, "triage_resolve", report, {"note": {"type": "plain_text_input", "value": ""}}
    )
    assert errors is not None
    note = "Antenna replaced by the network team at 14:10."
    assert (
        open_and_submit(
            bot,
            LEADER,
            "triage_resolve",
            report,
            {"note": {"type": "plain_text_input", "value": note}},
        )
        is None
    )
    bot.drain()
    resolved = bot.report(report.id)
    assert resolved.status == "resolved" and resolved.resolution_note == note
    for user in (ALICE, BOB, CAROL):
        assert any(note in dm for dm in bot.dms(user)), user
    assert any(dm.startswith("*FB-1001* ist erledigt") for dm in bot.dms(BOB)), "Bob reads German"
    card = card_json(bot, report)
    assert "Resolved" in card and "triage_reopen" in card and "triage_resolve" not in card

    bot.press(LEADER, "triage_reopen", str(report.id), block_id="triage")
    bot.drain()
    assert bot.report(report.id).status == "acknowledged"
    assert any("was reopened" in dm for dm in bot.dms(ALICE))
    assert [a for _, a, _ in timeline(bot, report)][-2:] == ["resolved", "reopened"]


def test_duplicate_moves_reporter_and_me_toos_to_the_original(bot: Bot) -> None:
    bot.setup_team()
    original = file_from_form(bot, ALICE, "Kassensystem friert beim Bezahlen ein")
    duplicate = file_from_form(bot, BOB, "Kasse hängt beim Bezahlen mit Karte")
    bot.press(CAROL, "report_me_too", str(duplicate.id), channel=INTAKE)
    errors = open_and_submit(
        bot,
        LEADER,
        "triage_duplicate",
        duplicate,
        {"reference": {"type": "plain_text_input", "value": "FB-9999"}},
    )
    assert errors is not None and "FB-9999" in errors["errors"]["reference"]
    errors = open_and_submit(
        bot,
        LEADER,
        "triage_duplicate",
        duplicate,
        {"reference": {"type": "plain_text_input", "value": "FB-1002"}},
    )
    assert errors is not None, "not a duplicate of itself"
    assert (
        open_and_submit(
            bot,
            LEADER,
            "triage_duplicate",
            duplicate,
            {"reference": {"type": "plain_text_input", "value": "fb-1001"}},
        )
        is None
    )
    bot.drain()
    assert bot.report(duplicate.id).status == "duplicate"
    assert bot.report(original.id).me_too_count == 2
    assert "Duplicate of FB-1001" in card_json(bot, duplicate)
    assert "*Me too*\\n2" in card_json(bot, original)
    assert any("merged into *FB-1001*" in dm for dm in bot.dms(CAROL))
    assert "FB-1002 was merged into this report." in bot.thread(original)

    note = {"note": {"type": "plain_text_input", "value": "Kassen-Update 4.2 eingespielt"}}
    open_and_submit(bot, LEADER, "triage_resolve", original, note)
    bot.drain()
    for user in (ALICE, BOB, CAROL):
        assert any("Kassen-Update 4.2" in dm for dm in bot.dms(user)), user


def test_call_back_contact_is_masked_and_revealed_only_to_the_owner(bot: Bot) -> None:
    bot.setup_team()
    callback = {"type": "checkboxes", "selected_options": [{"value": "yes"}]}
    contact = {"type": "plain_text_input", "value": "Herr Yilmaz, 0151 9876543"}
    report = file_from_form(bot, callback=callback, contact=contact)
    assert "9876543" not in json.dumps(bot.slack.messages(LEADERSHIP))
    assert "contact on file" in card_json(bot, report)

    bot.press_card(LEADER, "triage_reveal_contact", report)
    bot.drain()
    assert not any("9876543" in e["text"] for e in bot.slack.ephemerals), "not the owner yet"
    bot.press_card(LEADER, "triage_claim", report)
    bot.press_card(LEADER, "triage_reveal_contact", report)
    bot.drain()
    reveal = [e for e in bot.slack.ephemerals if "9876543" in e["text"]]
    assert [e["user"] for e in reveal] == [LEADER]
    assert (LEADER, "contact_revealed", None) in timeline(bot, report)

    state = {"note": {"type": "plain_text_input", "value": "Called, new router is on its way"}}
    assert open_and_submit(bot, LEADER, "triage_customer_called", report, state) is None
    bot.drain()
    assert bot.report(report.id).customer_called_at is not None
    assert any("called back: Called, new router" in dm for dm in bot.dms(ALICE))
    assert "triage_customer_called" not in card_json(bot, report)


def test_critical_reports_mention_the_leaders(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(
        bot, urgency={"type": "static_select", "selected_option": {"value": "critical"}}
    )
    card = bot.card(report)
    mentions = bot.slack.mentions(card)
    assert f"<@{LEADER}>" in mentions and f"<@{LEADER_2}>" in mentions
    assert f"<@{LEADER}>" in card["text"], "the notification text mentions them too"
    normal = file_from_form(bot, text="Just a normal one")
    assert f"<@{LEADER}>" not in bot.slack.mentions(bot.card(normal))


def test_each_action_is_on_the_timeline_with_who_and_when(bot: Bot) -> None:
    bot.setup_team()
    report = file_from_form(bot)
    bot.clock.advance(minutes=5)
    bot.press_card(LEADER, "triage_acknowledge", report)
    with Session(bot.engine) as session:
        entries = list(
            session.exec(
                select(TimelineEntry)
                .where(TimelineEntry.report_id == report.id)
                .order_by(col(TimelineEntry.id))
            )
        )
    assert [(e.action, e.actor_id) for e in entries] == [
        ("created", ALICE),
        ("acknowledged", LEADER),
    ]
    assert entries[1].at - entries[0].at == bot.clock.now - entries[0].at


def test_a_confidential_report_is_forwarded_only_to_leadership_channels(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(confidential_categories="Customer experience")
    category = {"type": "static_select", "selected_option": {"value": "Customer experience"}}
    report = file_from_form(bot, text="Shift lead shouts at trainees", category=category)
    state = {"channel": {"type": "conversations_select", "selected_conversation": "CNETOPS01"}}
    answer = open_and_submit(bot, LEADER, "triage_forward", report, state)
    assert answer is not None and "confidential" in answer["errors"]["channel"]
    bot.drain()
    assert bot.slack.messages("CNETOPS01") == []
    bot.configure(escalation_channel="CESCAL001")
    bot.slack.add_channel("CESCAL001", name="escalations")
    state = {"channel": {"type": "conversations_select", "selected_conversation": "CESCAL001"}}
    assert open_and_submit(bot, LEADER, "triage_forward", report, state) is None
    bot.drain()
    assert len(bot.slack.messages("CESCAL001")) == 1
