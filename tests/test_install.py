"""Uninstalled or revoked: feedbot keeps every report and message, says why nothing leaves,
and resumes by itself once it has a token that works."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlmodel import Session, select

from feedbot.models import OutboxMessage, OutboxStatus
from feedbot.slack.access import SlackAccess
from feedbot.slack.outbox import OutboxSender
from feedbot.slack.server import FeedbotWSGI
from tests import slack_payloads as payloads
from tests.harness import ALICE, LEADERSHIP, TOKEN, Bot

NEW_TOKEN = "xoxb-reinstalled-token"


def health(bot: Bot) -> tuple[str, dict[str, Any]]:
    answered: list[str] = []
    app = FeedbotWSGI(None, bot.engine, refused=bot.deps.access.revocation)
    body = b"".join(
        app(
            {"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET"},
            lambda status, headers: answered.append(status),  # type: ignore[arg-type,return-value]
        )
    )
    return answered[0], json.loads(body)


def waiting(bot: Bot) -> list[OutboxMessage]:
    with Session(bot.engine) as session:
        return list(
            session.exec(select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING))
        )


def feedbot_outbox(bot: Bot, tmp_path: Path, token: str) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env["DATABASE_URL"] = bot.engine.url.render_as_string(hide_password=False)
    env["SLACK_BOT_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "feedbot", "outbox"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def sender_for(bot: Bot) -> OutboxSender:
    """The sender as `feedbot run` wires it: sharing the app's view of Slack access."""
    return OutboxSender(
        bot.engine,
        WebClient(token=TOKEN, base_url=bot.slack.base_url),
        clock=bot.clock,
        access=bot.deps.access,
    )


def test_uninstalled_it_keeps_everything_says_why_and_resumes_once_reinstalled(
    bot: Bot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bot.setup_team()
    sender = sender_for(bot)
    bot.command(ALICE, "The card terminal in Halle rejects every chip card")
    sender.drain()
    assert len(bot.slack.messages(LEADERSHIP)) == 1

    bot.slack.uninstall()
    with caplog.at_level(logging.ERROR):
        assert bot.event(payloads.bare_event("app_uninstalled")).status == 200
    assert any("no longer accepts the bot token" in r.getMessage() for r in caplog.records)

    # Reports are still taken; nothing is sent, nothing is given up.
    assert bot.command(ALICE, "Second terminal in Halle too").status == 200
    calls = len(bot.slack.calls)
    assert sender.deliver_due() == 0
    assert len(bot.slack.calls) == calls, "not even an attempt"
    assert len(bot.reports()) == 2 and len(waiting(bot)) >= 1
    status, body = health(bot)
    assert status.startswith("503") and "uninstalled" in body["slack"]
    listed = feedbot_outbox(bot, tmp_path, TOKEN)
    assert "nothing is sent: Slack refuses the bot token" in listed
    assert "the app was uninstalled" in listed

    # Reinstalled: a new token is put in place, and feedbot picks it up by itself.
    bot.slack.reinstall(NEW_TOKEN)
    bot.deps.access.load_token = lambda: NEW_TOKEN
    assert bot.deps.access.check() is True
    assert sender.client.token == NEW_TOKEN and bot.deps.client.token == NEW_TOKEN
    sender.drain()
    assert waiting(bot) == []
    texts = [m["text"] for m in bot.slack.messages(LEADERSHIP)]
    assert len(texts) == 2 and "Second terminal" in texts[1], "what waited, in order"
    assert health(bot)[0].startswith("200")
    assert "nothing is sent" not in feedbot_outbox(bot, tmp_path, NEW_TOKEN)


def test_a_token_accepted_again_sends_what_waited_at_once(bot: Bot) -> None:
    """The senders are woken as sending resumes, not left until their next look."""
    bot.setup_team()
    sender = OutboxSender(
        bot.engine,
        WebClient(token=TOKEN, base_url=bot.slack.base_url),
        clock=bot.clock,
        access=bot.deps.access,
        poll_interval=60,
    )
    bot.slack.uninstall()
    bot.event(payloads.bare_event("app_uninstalled"))
    bot.command(ALICE, "Roaming option billed twice")
    assert len(waiting(bot)) >= 1
    bot.deps.on_commit = sender.wake
    seen_paused = threading.Event()
    paused = bot.deps.access.paused

    def watched_paused() -> bool:
        found = paused()
        if found:
            seen_paused.set()
        return found

    bot.deps.access.paused = watched_paused  # type: ignore[method-assign]
    sender.start()
    try:
        assert seen_paused.wait(5), "the sender never looked"  # and now waits for its next look
        bot.slack.reinstall(NEW_TOKEN)
        bot.deps.access.load_token = lambda: NEW_TOKEN
        assert bot.deps.access.check() is True
        deadline = time.monotonic() + 5
        # Until the card is in the channel: a claimed entry no longer waits, but a sender
        # stopped before its call puts the claim back unsent.
        while not bot.slack.messages(LEADERSHIP):
            assert time.monotonic() < deadline, "still waiting for the sender's next look"
            time.sleep(0.02)
    finally:
        sender.stop()
    assert [m["text"][:6] for m in bot.slack.messages(LEADERSHIP)] == ["FB-100"]


def test_a_process_told_the_token_works_again_takes_it_up_at_once(bot: Bot) -> None:
    """With the work in a process of its own, that process sends: told by the bot that Slack
    accepts the token again, it looks at once (its own look may be 30 s away), takes up the
    new token and wakes its senders."""
    bot.setup_team()
    woken: list[bool] = []
    child = SlackAccess(
        bot.engine,
        [WebClient(token=TOKEN, base_url=bot.slack.base_url)],
        clock=bot.clock,
        load_token=lambda: NEW_TOKEN,
        on_restored=lambda: woken.append(True),
    )
    bot.slack.uninstall()
    bot.event(payloads.bare_event("app_uninstalled"))
    assert child.paused() and bot.deps.access.paused()
    bot.slack.reinstall(NEW_TOKEN)
    bot.deps.access.load_token = lambda: NEW_TOKEN
    assert bot.deps.access.check() is True
    assert child.paused() and not woken, "it still holds the refused token"
    assert child.recheck() is True
    assert child.token == NEW_TOKEN and not child.paused() and woken == [True]


def test_a_token_slack_stops_accepting_mid_send_pauses_without_losing_the_message(
    bot: Bot,
) -> None:
    """No event arrived (Socket Mode was down, say): the refused call itself tells."""
    bot.setup_team()
    sender = sender_for(bot)
    bot.slack.uninstall()
    bot.command(ALICE, "Roaming option billed twice")
    sender.drain()
    (kept,) = waiting(bot)
    assert kept.last_error == "token_revoked" and kept.purpose == "card"
    assert bot.deps.access.paused()
    assert "Slack answered token_revoked" in health(bot)[1]["slack"]

    bot.deps.access.load_token = lambda: TOKEN  # still the old one: still refused
    assert bot.deps.access.check() is False
    bot.slack.reinstall(NEW_TOKEN)
    bot.deps.access.load_token = lambda: NEW_TOKEN
    assert bot.deps.access.check() is True
    sender.drain()
    assert [m["text"][:6] for m in bot.slack.messages(LEADERSHIP)] == ["FB-100"]


def test_a_revoked_user_token_is_not_feedbots_business(bot: Bot) -> None:
    bot.setup_team()
    event = payloads.bare_event("tokens_revoked", tokens={"oauth": ["UADMIN001"]})
    assert bot.event(event).status == 200
    assert not bot.deps.access.paused()
    event = payloads.bare_event("tokens_revoked", tokens={"bot": ["UBOT"]})
    assert bot.event(event).status == 200
    assert bot.deps.access.paused()


def test_other_processes_pause_too_and_a_new_token_resumes_only_its_holder(bot: Bot) -> None:
    """The record is shared: a replica still holding the refused token waits; one given a
    new token sends."""
    bot.setup_team()
    other = SlackAccess(
        bot.engine,
        [WebClient(token=TOKEN, base_url=bot.slack.base_url)],
        clock=bot.clock,
    )
    bot.slack.uninstall()
    bot.event(payloads.bare_event("app_uninstalled"))
    assert other.paused()
    bot.slack.reinstall(NEW_TOKEN)
    other.load_token = lambda: NEW_TOKEN
    assert other.check() is True and not other.paused()
    assert bot.deps.access.paused(), "this one still holds the old token"
