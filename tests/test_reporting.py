"""Every way in produces the same kind of report, stored before anything is sent, with a
receipt to the reporter and a card for leadership (issue: reporting and triage)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from feedbot.core import events
from tests.harness import ALICE, BOB, CAROL, INTAKE, LEADERSHIP, Bot

FORM_FIELDS = {
    "text",
    "category",
    "location",
    "urgency",
    "customers",
    "callback",
    "contact",
    "anonymous",
}


def form_values(text: str, **overrides: Any) -> dict[str, dict[str, Any]]:
    """The state Slack sends for a filled-in report form, keyed by block id."""
    values: dict[str, dict[str, Any]] = {
        "text": {"type": "plain_text_input", "value": text},
        "category": {"type": "static_select", "selected_option": {"value": "Devices & hardware"}},
        "location": {"type": "plain_text_input", "value": "Shop Leipzig Hbf"},
        "urgency": {"type": "static_select", "selected_option": {"value": "high"}},
        "customers": {"type": "number_input", "value": "12"},
        "callback": {"type": "checkboxes", "selected_options": []},
        "contact": {"type": "plain_text_input", "value": None},
        "anonymous": {"type": "checkboxes", "selected_options": []},
    }
    values.update(overrides)
    return values


def block_ids(view: dict[str, Any]) -> set[str]:
    return {block.get("block_id") for block in view["blocks"] if block.get("block_id")}


def test_feedback_opens_the_form_with_every_field(bot: Bot) -> None:
    bot.setup_team()
    response = bot.command(ALICE, "")
    assert response.status == 200
    view = bot.last_view()
    assert view["callback_id"] == "report_form"
    assert block_ids(view) >= FORM_FIELDS
    category = next(b for b in view["blocks"] if b.get("block_id") == "category")
    labels = [o["text"]["text"] for o in category["element"]["options"]]
    assert labels == [
        "Network & coverage",
        "Devices & hardware",
        "Billing & tariffs",
        "Shop & tools",
        "IT systems",
        "Customer experience",
        "Other",
    ]
    urgency = next(b for b in view["blocks"] if b.get("block_id") == "urgency")
    assert urgency["element"]["initial_option"]["value"] == "normal"


def test_form_hides_anonymity_when_not_allowed_and_uses_the_location_list(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(allow_anonymous="false", locations="Leipzig,Dresden,Region Ost")
    bot.command(ALICE, "")
    view = bot.last_view()
    assert "anonymous" not in block_ids(view)
    location = next(b for b in view["blocks"] if b.get("block_id") == "location")
    assert location["element"]["type"] == "static_select"
    assert [o["value"] for o in location["element"]["options"]] == [
        "Leipzig",
        "Dresden",
        "Region Ost",
    ]


def test_submitted_form_is_stored_carded_and_receipted(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "")
    response = bot.submit(
        ALICE, bot.last_view(), form_values("Batch 7 of the Fritzbox 7590 reboots every hour")
    )
    assert response.status == 200
    assert response.body == ""
    report = bot.report()
    assert (report.reference, report.category, report.urgency, report.customers_affected) == (
        "FB-1001",
        "Devices & hardware",
        "high",
        12,
    )
    assert report.location == "Shop Leipzig Hbf"
    assert report.reporter_id == ALICE
    assert bot.slack.messages(LEADERSHIP) == [], "nothing is sent before the outbox delivers"
    bot.drain()
    card = bot.card(report)
    assert "FB-1001" in card["text"]
    card_text = json.dumps(card["blocks"])
    assert "Batch 7 of the Fritzbox 7590" in card_text
    assert f"<@{ALICE}>" in card_text
    assert any("FB-1001" in dm for dm in bot.dms(ALICE))


def test_invalid_form_input_is_shown_next_to_the_field(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "")
    view = bot.last_view()
    response = bot.submit(ALICE, view, form_values("   "))
    assert response.status == 200
    assert json.loads(response.body) == {
        "response_action": "errors",
        "errors": {"text": "Please describe what happened."},
    }
    # Slack's client would not let these through; the server refuses them all the same.
    response = bot.submit(
        ALICE,
        view,
        form_values("Router dead", customers={"type": "number_input", "value": "many"}),
        forged=True,
    )
    assert json.loads(response.body)["errors"].keys() == {"customers"}
    response = bot.submit(
        ALICE,
        view,
        form_values(
            "Router dead",
            category={"type": "static_select", "selected_option": {"value": "Forged"}},
        ),
        forged=True,
    )
    assert json.loads(response.body)["errors"].keys() == {"category"}
    response = bot.submit(ALICE, view, form_values("x" * 3001), forged=True)
    assert "3,000" in json.loads(response.body)["errors"]["text"]
    assert bot.reports() == []


def test_quick_report_from_the_command_and_adding_details(bot: Bot) -> None:
    bot.setup_team()
    response = bot.command(ALICE, "Tariff change for MagentaEINS customers charges twice")
    body = json.loads(response.body)
    assert "FB-1001" in body["text"]
    button = body["blocks"][1]["elements"][0]
    assert button["action_id"] == "report_add_details"
    report = bot.report()
    assert (report.category, report.urgency, report.source) == ("Other", "normal", "command")

    bot.press(ALICE, "report_add_details", button["value"], channel="CGENERAL1")
    view = bot.last_view()
    text_block = next(b for b in view["blocks"] if b.get("block_id") == "text")
    assert (
        text_block["element"]["initial_value"]
        == "Tariff change for MagentaEINS customers charges twice"
    )
    values = form_values(
        "Tariff change for MagentaEINS customers charges twice since Monday",
        category={"type": "static_select", "selected_option": {"value": "Billing & tariffs"}},
    )
    assert bot.submit(ALICE, view, values).status == 200
    report = bot.report(report.id)
    assert report.category == "Billing & tariffs"
    assert report.text.endswith("since Monday")
    assert len(bot.reports()) == 1
    bot.drain()
    header = bot.card(report)["blocks"][0]
    assert (
        header["text"]
        == {"type": "plain_text", "text": "FB-1001 · Billing & tariffs", "emoji": True}
        or header["text"]["text"] == "FB-1001 · Billing & tariffs"
    )
    assert "The reporter added details." in bot.thread(report)


def test_only_the_reporter_can_add_details(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "Printer in shop 12 is out of toner")
    report = bot.report()
    bot.press(BOB, "report_add_details", str(report.id), channel="CGENERAL1")
    assert bot.slack.calls_to("views.open") == []
    bot.drain()
    assert any(e["user"] == BOB for e in bot.slack.ephemerals)


def test_message_shortcut_prefills_the_form_with_the_message_and_its_link(bot: Bot) -> None:
    bot.setup_team()
    message = {
        "type": "message",
        "user": BOB,
        "ts": "1763456789.000200",
        "text": "Kunde sagt: Vertrag &lt;Basic&gt; &amp; Rabatt fehlen",
    }
    bot.shortcut(ALICE, message, channel="CSHOP0001")
    view = bot.last_view()
    text_block = next(b for b in view["blocks"] if b.get("block_id") == "text")
    assert text_block["element"]["initial_value"] == "Kunde sagt: Vertrag <Basic> & Rabatt fehlen"
    assert "https://frontline.slack.com/archives/CSHOP0001/p1763456789000200" in json.dumps(
        view["blocks"]
    )
    bot.submit(ALICE, view, form_values("Kunde sagt: Vertrag <Basic> & Rabatt fehlen"))
    report = bot.report()
    assert report.source == "shortcut"
    assert (
        report.source_permalink
        == "https://frontline.slack.com/archives/CSHOP0001/p1763456789000200"
    )


def test_direct_message_becomes_a_report_answered_in_the_dm(bot: Bot) -> None:
    bot.setup_team()
    dm = bot.slack.dm_channel(ALICE)
    response, ts = bot.message(
        ALICE, "The SIM activation tool times out at the counter", channel=dm, channel_type="im"
    )
    assert response.status == 200
    report = bot.report()
    assert (report.source, report.source_channel, report.source_ts) == ("direct_message", dm, ts)
    bot.drain()
    replies = [m["text"] for m in bot.slack.messages(dm)]
    assert any("FB-1001" in text for text in replies)
    assert bot.card(report)


def test_reports_link_to_the_message_they_came_from_unless_anonymous(bot: Bot) -> None:
    """Events carry no workspace domain: links come from the address auth.test gives."""
    bot.setup_team()
    dm = bot.slack.dm_channel(ALICE)
    _, dm_ts = bot.message(
        ALICE, "Till 4 freezes after every card payment", channel=dm, channel_type="im"
    )
    _, post_ts = bot.message(BOB, "Leipzig shop: label printer jams on every roll")
    from_dm, from_post = bot.reports()
    dm_link = f"https://frontline.slack.com/archives/{dm}/p{dm_ts.replace('.', '')}"
    post_link = f"https://frontline.slack.com/archives/{INTAKE}/p{post_ts.replace('.', '')}"
    assert (from_dm.source_permalink, from_post.source_permalink) == (dm_link, post_link)
    bot.drain()
    assert dm_link in json.dumps(bot.card(from_dm)["blocks"])
    assert post_link in json.dumps(bot.card(from_post)["blocks"])
    mine = json.loads(bot.command(ALICE, "mine").body)
    assert dm_link in json.dumps(mine["blocks"])

    # The reporter makes it anonymous: a link to their own post would name them.
    bot.click(
        ALICE, dm, next_dm_with_button(bot, ALICE, "report_add_details"), "report_add_details"
    )
    view = bot.last_view()
    values = {
        "text": {"value": from_dm.text},
        "anonymous": {"selected_options": [{"value": "yes"}]},
    }
    assert bot.submit(ALICE, view, values).status == 200
    bot.drain()
    assert bot.report(from_dm.id).anonymous
    assert dm_link not in json.dumps(bot.card(from_dm)), "no link to an anonymous reporter's DM"


def next_dm_with_button(bot: Bot, user: str, action_id: str) -> str:
    """The ts of the latest direct message to `user` that has the element `action_id`."""
    for message in reversed(bot.slack.dm_messages(user)):
        if action_id in json.dumps(message.get("blocks") or []):
            return str(message["ts"])
    raise AssertionError(f"no DM to {user} with {action_id}")


def test_intake_channel_posts_become_reports_with_a_me_too_receipt(bot: Bot) -> None:
    bot.setup_team()
    _, ts = bot.message(ALICE, "Coverage gone in Chemnitz-Nord since 7:00")
    report = bot.report()
    assert report.source == "intake_channel"
    assert (
        report.source_permalink
        == f"https://frontline.slack.com/archives/{INTAKE}/p{ts.replace('.', '')}"
    )
    bot.drain()
    receipt = next(m for m in bot.slack.messages(INTAKE) if m.get("thread_ts") == ts)
    assert "FB-1001" in receipt["text"]
    button = receipt["blocks"][1]["elements"][0]
    assert button["action_id"] == "report_me_too"

    for colleague in (BOB, CAROL, BOB, ALICE):
        bot.click(colleague, INTAKE, receipt["ts"], "report_me_too")
    assert bot.report(report.id).me_too_count == 2
    bot.drain()
    ephemeral = {(e["user"], e["text"].split(" ")[0]) for e in bot.slack.ephemerals}
    assert (BOB, "Du") in ephemeral, "Bob's Slack is German"
    assert any(e["user"] == ALICE and "your own report" in e["text"] for e in bot.slack.ephemerals)
    assert "*Me too*\n2" in json.dumps(bot.card(report)["blocks"]).replace("\\n", "\n")


def test_intake_ignores_replies_joins_bots_and_other_channels_and_follows_edits(bot: Bot) -> None:
    bot.setup_team()
    _, ts = bot.message(ALICE, "Kasse 3 in Shop Dresden bootet ständig")
    bot.message(BOB, "same here", thread_ts=ts)
    bot.message(BOB, "joined", subtype="channel_join")
    bot.message(BOB, "broadcast reply", thread_ts=ts, subtype="thread_broadcast")
    bot.message(BOB, "from a bot", bot_id="B0OTHER")
    bot.message(BOB, "not an intake channel", channel="CRANDOM01")
    bot.event(
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": INTAKE,
            "ts": "1.2",
            "deleted_ts": ts,
            "hidden": True,
        }
    )
    assert len(bot.reports()) == 1

    edit = {
        "type": "message",
        "subtype": "message_changed",
        "channel": INTAKE,
        "channel_type": "channel",
        "hidden": True,
        "ts": "1763456999.000100",
        "message": {
            "type": "message",
            "user": ALICE,
            "text": "Kasse 3 in Shop Dresden bootet ständig, seit dem Update",
            "ts": ts,
            "edited": {"user": ALICE, "ts": "1763456999.000000"},
        },
        "previous_message": {
            "type": "message",
            "user": ALICE,
            "text": "Kasse 3 in Shop Dresden bootet ständig",
            "ts": ts,
        },
    }
    bot.event(edit)
    assert bot.report().text == "Kasse 3 in Shop Dresden bootet ständig, seit dem Update"
    assert len(bot.reports()) == 1
    bot.drain()
    assert "The reporter edited the text." in bot.thread(bot.report())


def test_a_retried_event_never_creates_a_second_report(bot: Bot) -> None:
    bot.setup_team()
    first, ts = bot.message(ALICE, "Hotline queue is 90 minutes", event_id="Ev0RETRY1")
    again, _ = bot.message(
        ALICE, "Hotline queue is 90 minutes", ts=ts, event_id="Ev0RETRY1", retry_num=1
    )
    other_delivery, _ = bot.message(
        ALICE, "Hotline queue is 90 minutes", ts=ts, event_id="Ev0OTHER1"
    )
    assert (first.status, again.status, other_delivery.status) == (200, 200, 200)
    assert len(bot.reports()) == 1
    bot.drain()
    assert len([m for m in bot.slack.messages(LEADERSHIP) if not m.get("thread_ts")]) == 1


def test_an_event_id_is_claimed_once_on_every_database(engine: Engine) -> None:
    """The claim itself, without the source-message key that also stops a second report:
    on PostgreSQL the driver's row count said every retry was new."""
    now = datetime(2026, 11, 18, 9, tzinfo=UTC)
    with Session(engine) as session:
        assert events.claim_event(session, event_id="Ev0ONCE01", now=now) is True
        assert events.claim_event(session, event_id="Ev0ONCE01", now=now) is False
        session.commit()
    with Session(engine) as session:
        assert events.claim_event(session, event_id="Ev0ONCE01", now=now) is False
        assert events.claim_event(session, event_id="Ev0ONCE02", now=now) is True


def test_help_explains_every_way_in(bot: Bot) -> None:
    bot.setup_team()
    body = json.loads(bot.command(ALICE, "help").body)
    text = body["text"]
    for words in (
        "/feedback",
        "Report to leadership",
        "direct message",
        "mine",
        f"<#{INTAKE}>",
        "FB-1042",
    ):
        assert words in text


def test_my_reports_lists_status_and_latest_activity(bot: Bot) -> None:
    bot.setup_team()
    assert "not reported anything" in json.loads(bot.command(ALICE, "mine").body)["text"]
    bot.command(ALICE, "Shop Halle: door sensor broken")
    bot.command(ALICE, "Shop Halle: queue display dark")
    bot.command(BOB, "Not Alice's")
    body = json.loads(bot.command(ALICE, "mine").body)
    text = json.dumps(body["blocks"])
    assert "FB-1001" in text and "FB-1002" in text and "FB-1003" not in text
    assert text.index("FB-1002") < text.index("FB-1001"), "newest first"


def test_without_a_leadership_channel_reports_are_kept_and_the_reporter_told(bot: Bot) -> None:
    bot.command(ALICE, "")
    bot.submit(ALICE, bot.last_view(), form_values("Nobody set up leadership yet"))
    bot.drain()
    report = bot.report()
    assert report.card_message_id is None
    assert any("has not set up its channel" in dm for dm in bot.dms(ALICE))
