"""Socket Mode end to end (issue: works on a real Slack install): the real app, connected by
`feedbot.slack.socket_mode` to the test bed's Socket Mode server, takes commands, events,
button presses and modal submissions, acks each within Slack's 3 seconds, and takes requests
again within 10 seconds after Slack asks it to reconnect or after the network drops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from feedbot.slack.socket_mode import SocketMode
from tests import slack_payloads as payloads
from tests.fakeslack import FakeSlack
from tests.fakesocket import Envelope, FakeSocketMode
from tests.harness import ALICE, INTAKE, LEADER, LEADERSHIP, SECRET_KEY, TOKEN, Bot
from tests.test_processes import free_port
from tests.test_reporting import form_values

APP_TOKEN = "xapp-1-A0FEEDBOT-1-0123456789abcdef0123456789abcdef"
ACK_DEADLINE = 3.0
"""Slack's: an envelope not acked within 3 seconds has failed."""
BACK_WITHIN = 10.0
"""After a fault, the bot must be answering again within this many seconds."""


@pytest.fixture
def socket_server(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    """The Socket Mode server, handed out by the fake's `apps.connections.open`."""
    with FakeSocketMode() as server:
        fake_slack.serve_socket_mode(APP_TOKEN, server.new_url)
        yield server
    server.assert_no_violations()


@pytest.fixture
def connected(bot: Bot, socket_server: FakeSocketMode) -> Iterator[SocketMode]:
    """The bot, connected in Socket Mode the way `feedbot run` connects it."""
    bot.setup_team()
    connection = SocketMode(bot.app, APP_TOKEN)
    assert connection.connect(), "Slack's hello never reached the bot"
    yield connection
    connection.close()


def command(server: FakeSocketMode, slack: FakeSlack, user: str, text: str = "") -> Envelope:
    form = payloads.slash_command(
        user=user,
        text=text,
        channel="CGENERAL1",
        channel_name="general",
        response_url=slack.new_response_url(),
    )
    return server.slash_command(form)


def answered_after(envelope: Envelope, moment: float) -> float:
    """Seconds from `moment` (time.monotonic) until the envelope was acked."""
    ack = envelope.wait_ack(BACK_WITHIN)
    return envelope.sent_at + ack.seconds - moment


def assert_acked_in_time(server: FakeSocketMode) -> None:
    assert server.envelopes, "nothing was delivered"
    assert server.unacked() == []
    slow = [(e.type, e.ack.seconds) for e in server.envelopes if e.ack.seconds >= ACK_DEADLINE]  # type: ignore[union-attr]
    assert slow == [], f"acked after Slack's deadline: {slow}"


# -- the fake itself ------------------------------------------------------------------------


def test_only_an_app_level_token_in_the_header_gets_a_single_use_socket_url() -> None:
    with FakeSlack(serves_feedbot=False) as slack, FakeSocketMode() as server:
        slack.serve_socket_mode(APP_TOKEN, server.new_url)

        def connections_open(token: str, *, in_header: bool = True) -> dict[str, object]:
            request = urllib.request.Request(
                slack.base_url + "apps.connections.open",
                data=b"" if in_header else f"token={token}".encode(),
                headers={"Authorization": f"Bearer {token}"} if in_header else {},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                return dict(json.loads(reply.read()))

        assert connections_open(TOKEN)["error"] == "not_allowed_token_type"
        assert connections_open("xapp-1-A0OTHER-1-f00")["error"] == "invalid_auth"
        assert connections_open(APP_TOKEN, in_header=False)["error"] == "not_authed"
        assert slack.violations == [
            "apps.connections.open: the app-level token must be sent in the Authorization "
            "header, not as a parameter"
        ]
        answer = connections_open(APP_TOKEN)
        assert answer["ok"] is True
        url = str(answer["url"])
        assert url.startswith(f"ws://127.0.0.1:{server.port}/link/?ticket=")

        first = websocket.create_connection(url, timeout=5)
        hello = json.loads(first.recv())
        assert hello["type"] == "hello" and hello["num_connections"] == 1
        assert hello["connection_info"] == {"app_id": payloads.APP_ID}
        first.ping("are you there")
        assert first.recv_data_frame(True)[1].data == b"are you there"
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(url, timeout=5)  # the ticket was used
        first.close()
        assert len(server.violations) == 1 and "already used" in server.violations[0]


# -- requests ---------------------------------------------------------------------------------


def test_commands_events_buttons_and_forms_are_handled_and_acked_in_time(
    bot: Bot, connected: SocketMode, socket_server: FakeSocketMode
) -> None:
    slack = bot.slack

    opened = command(socket_server, slack, ALICE)
    assert opened.wait_ack(ACK_DEADLINE).payload is None
    assert [call.args["view"]["callback_id"] for call in slack.calls_to("views.open")] == [
        "report_form"
    ]

    form = bot.last_view()
    submitted = socket_server.interactive(
        payloads.view_submission(
            user=ALICE, view=form, state=payloads.view_state(form, form_values("   "))
        )
    )
    assert submitted.accepts_response_payload
    assert submitted.wait_ack(ACK_DEADLINE).payload == {
        "response_action": "errors",
        "errors": {"text": "Please describe what happened."},
    }
    assert bot.reports() == []

    ts = slack.add_message(INTAKE, "Coverage gone in Chemnitz-Nord since 7:00", user=ALICE)
    posted = socket_server.event(
        payloads.event_callback(
            payloads.message_event(
                user=ALICE,
                text="Coverage gone in Chemnitz-Nord since 7:00",
                channel=INTAKE,
                channel_type="channel",
                ts=ts,
            )
        )
    )
    assert posted.wait_ack(ACK_DEADLINE).payload is None
    bot.drain()
    report = bot.report()
    card = bot.card(report)
    assert "FB-1001" in card["text"]

    message = slack.message_as_sent(LEADERSHIP, card["ts"])
    assert message is not None
    found = payloads.find_element(message["blocks"], "triage_acknowledge")
    assert found is not None, "the card has no Acknowledge button"
    block_id, button = found
    pressed = socket_server.interactive(
        payloads.block_actions_in_message(
            user=LEADER,
            actions=[payloads.action(button, block_id=block_id)],
            channel=LEADERSHIP,
            channel_name="leadership",
            message=message,
            message_ts=card["ts"],
            response_url=slack.new_response_url(),
        )
    )
    assert pressed.wait_ack(ACK_DEADLINE).payload is None
    bot.drain()
    [update] = slack.calls_to("chat.update")
    assert update.args["ts"] == card["ts"]
    assert "Acknowledged" in json.dumps(bot.card(report)["blocks"])

    assert_acked_in_time(socket_server)


def test_a_retried_event_makes_one_report(
    bot: Bot, connected: SocketMode, socket_server: FakeSocketMode
) -> None:
    ts = bot.slack.add_message(INTAKE, "Shop printer jams", user=ALICE)
    event = payloads.message_event(
        user=ALICE, text="Shop printer jams", channel=INTAKE, channel_type="channel", ts=ts
    )
    callback = payloads.event_callback(event)
    socket_server.event(callback).wait_ack(ACK_DEADLINE)
    socket_server.event(callback, retry_attempt=1, retry_reason="timeout").wait_ack(ACK_DEADLINE)
    assert len(bot.reports()) == 1
    assert_acked_in_time(socket_server)


# -- faults -----------------------------------------------------------------------------------


def test_after_slack_asks_for_a_new_connection_requests_are_answered_at_once(
    bot: Bot, connected: SocketMode, socket_server: FakeSocketMode
) -> None:
    first = socket_server.wait_for_connection()
    refreshed = time.monotonic()
    socket_server.disconnect(first)

    again = command(socket_server, bot.slack, ALICE)
    assert answered_after(again, refreshed) < BACK_WITHIN
    assert again.connection > first
    assert len(bot.slack.calls_to("views.open")) == 1
    assert_acked_in_time(socket_server)


def test_after_the_network_drops_requests_are_answered_within_seconds(
    bot: Bot, connected: SocketMode, socket_server: FakeSocketMode
) -> None:
    """The connection goes silent without closing: only the bot's own pings can tell."""
    first = socket_server.wait_for_connection()
    command(socket_server, bot.slack, ALICE).wait_ack(ACK_DEADLINE)
    dropped, cpu = time.monotonic(), time.process_time()
    socket_server.drop(first)

    again = command(socket_server, bot.slack, ALICE)
    took = answered_after(again, dropped)
    assert took < BACK_WITHIN
    assert again.connection > first
    assert len(bot.slack.calls_to("views.open")) == 2
    busy = time.process_time() - cpu
    assert busy < took / 2, f"{busy:.1f} s of CPU in {took:.1f} s: something spins"
    assert_acked_in_time(socket_server)


def test_a_connection_closed_without_a_goodbye_costs_no_busy_cpu(
    bot: Bot, connected: SocketMode, socket_server: FakeSocketMode
) -> None:
    """A FIN without a close frame made slack_sdk's built-in client spin a core for a
    minute; the bot must notice it at once and wait quietly."""
    first = socket_server.wait_for_connection()
    socket_server.hang_up(first)
    socket_server.wait_for_connection(newer_than=first, timeout=BACK_WITHIN)
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(2)
    busy = time.process_time() - cpu
    assert busy < 0.5, f"{busy:.1f} s of CPU in {time.monotonic() - wall:.1f} s while idle"
    command(socket_server, bot.slack, ALICE).wait_ack(ACK_DEADLINE)
    assert_acked_in_time(socket_server)


# -- `feedbot run --socket` -------------------------------------------------------------------


@pytest.mark.slow
def test_feedbot_run_connects_in_socket_mode_and_answers_a_command(
    fake_slack: FakeSlack, socket_server: FakeSocketMode, tmp_path: Path
) -> None:
    fake_slack.add_user(ALICE, locale="en-US")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FEEDBOT_"))}
    env |= {
        "SLACK_API_URL": fake_slack.base_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "FEEDBOT_SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'feedbot.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "feedbot.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "feedbot", "run", "--socket"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not socket_server.open_connections():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        opened = command(socket_server, fake_slack, ALICE)
        assert opened.wait_ack(ACK_DEADLINE).payload is None
        assert fake_slack.calls_to("views.open"), log.read_text()
        assert_acked_in_time(socket_server)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = log.read_text()
    assert process.returncode == 0, text
    assert "connected to Slack in Socket Mode" in text
    assert "Traceback" not in text, text
