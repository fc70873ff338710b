"""One person cannot delay everyone: the per-person rate limit, fair turns in the leadership
channel's queue, and one answer however often a button is pressed."""

from __future__ import annotations

import json
import time

from slack_sdk import WebClient
from sqlmodel import Session, col, select

from feedbot.models import OutboxMessage, OutboxStatus, utcnow
from feedbot.slack.outbox import OutboxSender
from tests.harness import ALICE, BOB, INTAKE, LEADERSHIP, TOKEN, Bot
from tests.test_reporting import form_values


def test_an_eleventh_report_in_ten_minutes_waits_and_says_until_when(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(burst_threshold="0")
    for number in range(10):
        assert "FB-" in json.loads(bot.command(ALICE, f"Problem number {number}").body)["text"]
    # /feedback: the form opens with the text kept in it and the reason on top.
    response = bot.command(ALICE, "Problem number eleven")
    assert response.status == 200 and len(bot.reports()) == 10
    form = bot.last_view()
    shown = json.dumps(form["blocks"])
    assert "You filed 10 reports in a short time" in shown and "in 10 minutes" in shown
    text_block = next(b for b in form["blocks"] if b.get("block_id") == "text")
    assert text_block["element"]["initial_value"] == "Problem number eleven"
    # Submitting it too soon keeps the form open with the same words.
    errors = json.loads(bot.submit(ALICE, form, form_values("Problem number eleven")).body)
    assert "in 10 minutes" in errors["errors"]["text"]
    # A post in the intake channel is kept too, and offered to be sent later.
    bot.message(ALICE, "Problem number twelve")
    bot.drain()
    assert len(bot.reports()) == 10
    kept = next(
        m
        for m in reversed(bot.slack.dm_messages(ALICE))
        if "dm_new_report" in json.dumps(m["blocks"])
    )
    assert "You filed 10 reports" in kept["text"]
    bot.clock.advance(minutes=11)
    bot.click(ALICE, bot.slack.dm_channel(ALICE), kept["ts"], "dm_new_report")
    assert bot.report().text == "Problem number twelve"
    assert bot.report().source == "intake_channel"
    # Others were never held back.
    assert "FB-" in json.loads(bot.command(BOB, "Kasse 2 hängt").body)["text"]


def test_a_colleagues_card_is_not_held_up_by_one_persons_many(bot: Bot) -> None:
    """Alice sends ten reports at once (all she may), Bob one just after. Slack takes one
    post per second in the leadership channel; Bob's card does not wait for Alice's ten."""
    bot.setup_team()
    bot.configure(burst_threshold="0")
    bot.slack.channel_rate_limit = 1.0
    sender = OutboxSender(
        bot.engine,
        WebClient(token=TOKEN, base_url=bot.slack.base_url),
        clock=utcnow,
        identities=bot.deps.identities,
    )
    for number in range(10):
        bot.command(ALICE, f"Alice's problem {number}")
    bot.command(BOB, "Bob's problem: the till in Halle is frozen")
    started = time.monotonic()
    sender.start()
    try:
        deadline = started + 30
        while time.monotonic() < deadline:
            posted = [m["text"] for m in bot.slack.messages(LEADERSHIP) if not m.get("thread_ts")]
            if any("Bob's problem" in text for text in posted):
                break
            time.sleep(0.05)
        waited = time.monotonic() - started
        limited = bot.slack.rate_limited_count
    finally:
        sender.stop()
    position = next(i for i, text in enumerate(posted) if "Bob's problem" in text)
    assert waited < 10, f"Bob's card took {waited:.1f} s"
    assert position <= 3, f"Bob's card went out as number {position + 1}"
    assert limited == 0, "the pacing kept to Slack's limit"


def test_pressing_me_too_again_and_again_queues_one_answer(bot: Bot) -> None:
    bot.setup_team()
    _, ts = bot.message(ALICE, "Label printer in Halle prints blank labels")
    bot.drain()
    receipt = next(m for m in bot.slack.messages(INTAKE) if m.get("thread_ts") == ts)
    for _ in range(6):
        bot.click(BOB, INTAKE, receipt["ts"], "report_me_too")
    with Session(bot.engine) as session:
        waiting = session.exec(
            select(OutboxMessage).where(
                col(OutboxMessage.status) == OutboxStatus.PENDING,
                col(OutboxMessage.method) == "chat.postEphemeral",
            )
        ).all()
        updates = session.exec(
            select(OutboxMessage).where(
                col(OutboxMessage.status) == OutboxStatus.PENDING,
                col(OutboxMessage.method) == "chat.update",
            )
        ).all()
    assert len(waiting) == 1 and len(updates) == 1
    bot.drain()
    answers = [e for e in bot.slack.ephemerals if e["user"] == BOB]
    assert len(answers) == 1 and "schon mit" in answers[0]["text"]
    assert bot.report().me_too_count == 1
