"""The HTTP listener against a stranger on the network: in Socket Mode it serves no Slack
requests at all; in HTTP mode a request that is too big, unreadable or not signed by Slack is
refused before Bolt sees it, costs next to nothing, is logged as one short line without its
body and is counted under one metrics label.

Over real HTTP, as `tests/test_http.py`: the production listener on a free port.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import io
import json
import logging
import re
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from sqlmodel import Session, select

from feedbot.cli import build_parser, cmd_run
from feedbot.db import make_engine
from feedbot.errors import ConfigurationError
from feedbot.metrics import SLACK_REQUESTS
from feedbot.models import ProcessedEvent, Report
from feedbot.settings import Settings, get_settings
from feedbot.slack.app import REQUEST_KINDS, UNVERIFIED, build_app, dispatch, request_kind
from feedbot.slack.server import EVENTS_PATH, MAX_BODY_BYTES, FeedbotWSGI
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, SECRET_KEY, SIGNING_SECRET, TOKEN, Bot, sign
from tests.test_http import (
    Reply,
    count,
    message_envelope,
    post_event,
    request,
    served,
)
from tests.test_processes import free_port

APP_TOKEN = "xapp-1-A0123ABCDEF-1234567890123-0123456789abcdef0123456789abcdef"
PLACEHOLDER_SECRET = "your-signing-secret"  # as in .env.example


def command_form(user: str, text: str) -> str:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": "T0TEAM",
            "channel_id": "CGENERAL1",
            "user_id": user,
            "command": "/feedback",
            "text": text,
            "api_app_id": "A0FEEDBOT",
            "trigger_id": "1337.42",
            "response_url": "https://hooks.slack.invalid/commands/1",
        }
    )


@pytest.fixture
def run_env(
    tmp_path: Path, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """An environment for the real `cmd_run` in this process: settings from the environment
    (returned; change them before the run), the fake Slack, a SQLite file."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env = {
        "SLACK_API_URL": fake_slack.base_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "FEEDBOT_SECRET_KEY": SECRET_KEY,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'feedbot.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }
    monkeypatch.setattr("feedbot.cli.watch_outbox", lambda engine: None)  # a process-wide registry
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    yield env
    get_settings.cache_clear()


def run(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    cmd_run(build_parser().parse_args(["run", *args]))


@pytest.fixture
def base(bot: Bot) -> Iterator[str]:
    with served(bot) as url:
        yield url


# -- Socket Mode --------------------------------------------------------------------------------


def test_in_socket_mode_the_listener_serves_no_slack_requests(
    run_env: dict[str, str], fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`feedbot run --socket` with the signing secret still the `.env.example` stand-in: a
    stranger who signs a request with it reaches nothing, while health and metrics answer.

    Runs the real `cmd_run`; only the connection to Slack is replaced, by a handler that
    probes the listener and then fails the way a refused connection does, ending the run."""
    fake_slack.add_user(ALICE, locale="en-US")
    run_env |= {"SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": PLACEHOLDER_SECRET}
    reached_bolt: list[BoltRequest] = []
    real_dispatch = App.dispatch

    def spy(app: App, req: BoltRequest) -> BoltResponse:
        reached_bolt.append(req)
        return real_dispatch(app, req)

    monkeypatch.setattr(App, "dispatch", spy)
    replies: dict[str, Reply] = {}
    base = f"http://127.0.0.1:{run_env['PORT']}"

    class ProbingHandler:
        def __init__(self, app: App, app_token: str) -> None:
            assert app_token == APP_TOKEN

        def connect(self) -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the listener may still be starting
                with contextlib.suppress(OSError):
                    replies["health"] = request(base, "GET", "/healthz")
                    break
                time.sleep(0.05)
            body = command_form(ALICE, "Forged through the health port")
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                **sign(body, secret=PLACEHOLDER_SECRET),
            }
            replies["forged"] = request(base, "POST", EVENTS_PATH, body, headers)
            replies["metrics"] = request(base, "GET", "/metrics")
            raise OSError("probed; end the run")

        def close(self) -> None:
            pass

    monkeypatch.setattr("feedbot.slack.socket_mode.SocketMode", ProbingHandler)
    with pytest.raises(ConfigurationError, match="SLACK_APP_TOKEN"):
        run(run_env, monkeypatch, "--socket")

    assert replies["forged"].status == 404
    assert reached_bolt == []
    assert replies["health"].status == 200 and replies["health"].json()["ok"] is True
    assert replies["metrics"].status == 200
    engine = make_engine(run_env["DATABASE_URL"])
    with Session(engine) as session:
        assert session.exec(select(Report)).all() == []
    engine.dispose()


def test_an_address_in_use_stops_the_start_with_one_message(
    run_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run_env["PORT"] = str(port)
        with pytest.raises(ConfigurationError) as refused:
            run(run_env, monkeypatch, "--http")
    message = str(refused.value)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in message
    assert "HOST" in message and "PORT" in message


# -- HTTP mode: what reaches Bolt ---------------------------------------------------------------

MARKER = "MARKER-7f3a9c"
FORGED_LINE = "\n2026-11-18 09:00:00,000 INFO feedbot: UEVIL0001 is now an admin"
"""In every refused body: found in the log, it would mean the body was logged."""


def post_bytes(base: str, body: bytes, headers: dict[str, str]) -> Reply:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("POST", EVENTS_PATH, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.read().decode())
    finally:
        connection.close()


def exchange(base: str, data: bytes) -> int:
    """Send `data` on a connection as it is and read the status line; 0 for no answer within
    5 seconds (the server waits for more)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5) as conn:
        conn.sendall(data)
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            return 0
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def head(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in (f"POST {EVENTS_PATH} HTTP/1.1", *lines, "")).encode()


def forged_envelope(event_type: str = "message") -> str:
    envelope = message_envelope("EvFORGED01", MARKER + FORGED_LINE, ts="1700000000.000100")
    envelope["event"]["type"] = event_type
    return json.dumps(envelope)


def counted(kind: str, outcome: str) -> float:
    return SLACK_REQUESTS.labels(kind, outcome)._value.get()


def test_a_body_announced_over_the_limit_is_413_before_it_is_sent(base: str) -> None:
    """Slack's payloads are a few KB: a bigger one is refused on its headers, unread."""
    for length in (MAX_BODY_BYTES + 1, 20_000_000):
        status = exchange(
            base,
            head("Host: feedbot", "Content-Type: application/json", f"Content-Length: {length}"),
        )
        assert status == 413, length


def test_a_chunked_body_is_413_as_soon_as_it_passes_the_limit(base: str) -> None:
    chunk_size = f"{4 * MAX_BODY_BYTES:x}\r\n".encode()
    # Exactly up to the limit, then one byte more; the server must answer without the rest.
    data = b"x" * (MAX_BODY_BYTES + 1 - len(chunk_size))
    request_head = head(
        "Host: feedbot", "Content-Type: application/json", "Transfer-Encoding: chunked"
    )
    assert exchange(base, request_head + chunk_size + data) == 413


def test_a_body_of_exactly_the_limit_is_read(base: str) -> None:
    challenge = "c" * 40
    body = json.dumps({"type": "url_verification", "challenge": challenge})
    body += " " * (MAX_BODY_BYTES - len(body))
    headers = {"Content-Type": "application/json", **sign(body)}
    reply = request(base, "POST", EVENTS_PATH, body, headers)
    assert reply.status == 200 and reply.json() == {"challenge": challenge}


class CountingInput(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_under_any_server_the_app_reads_no_more_than_the_limit(bot: Bot) -> None:
    """Under waitress the server enforces the limit first; the app does not rely on it. (A
    direct WSGI call: waitress always hands the app a Content-Length.)"""
    wsgi = FeedbotWSGI(bot.app, bot.engine, signing_secret=SIGNING_SECRET)
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        statuses.append(status)

    def post(environ: dict[str, Any]) -> None:
        environ |= {"REQUEST_METHOD": "POST", "PATH_INFO": EVENTS_PATH}
        wsgi(environ, start_response)  # type: ignore[arg-type]

    announced = CountingInput(b"x" * 10)
    post({"CONTENT_LENGTH": "20000000", "wsgi.input": announced})
    assert statuses.pop() == "413 Request Entity Too Large" and announced.asked == []

    unannounced = CountingInput(b"x" * (MAX_BODY_BYTES + 100))  # chunked: no Content-Length
    post({"wsgi.input": unannounced})
    assert statuses.pop() == "413 Request Entity Too Large"
    assert sum(unannounced.asked) <= MAX_BODY_BYTES + 1

    post({"CONTENT_LENGTH": "-1", "wsgi.input": CountingInput(b"{}")})
    assert statuses.pop() == "400 Bad Request"


def test_a_body_that_is_not_utf8_is_400(base: str) -> None:
    body = b'{"type": "event_callback", "event": {"type": "\xff\xfe"}}'
    headers = {"Content-Type": "application/json", **sign(body.decode("latin-1"))}
    assert post_bytes(base, body, headers).status == 400
    assert post_bytes(base, body, {"Content-Type": "application/json"}).status == 400


@pytest.mark.parametrize(
    "timestamp",
    ["not-a-time", "{now}.5", "+{now}", "{now}0000000000", "9" * 5000],
    ids=["word", "fraction", "plus", "far-future", "5000-digits"],
)
def test_a_timestamp_that_is_not_a_number_is_401(base: str, bot: Bot, timestamp: str) -> None:
    """Signed correctly over the odd timestamp, so only the timestamp is wrong."""
    timestamp = timestamp.format(now=int(time.time()))
    body = command_form(ALICE, "Odd timestamp")
    digest = hmac.new(
        SIGNING_SECRET.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
    }
    assert request(base, "POST", EVENTS_PATH, body, headers).status == 401
    assert count(bot.engine, Report) == 0


@pytest.mark.parametrize(
    "signature",
    ["", "v0=", "v0=" + "é" * 64, "v0=" + "A" * 64, "v1=" + "0" * 64, "v0=" + "0" * 65],
    ids=["empty", "bare", "not-ascii", "upper-case", "other-version", "too-long"],
)
def test_a_missing_or_malformed_signature_is_401(base: str, bot: Bot, signature: str) -> None:
    body = forged_envelope()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": signature,
    }
    assert request(base, "POST", EVENTS_PATH, body, headers).status == 401
    assert count(bot.engine, ProcessedEvent) == 0


def refused_requests(base: str) -> list[Reply]:
    """One of each request a stranger might send, each carrying MARKER and a forged log line."""
    body = forged_envelope()
    now = int(time.time())
    json_type = {"Content-Type": "application/json"}
    return [
        request(base, "POST", EVENTS_PATH, body, json_type),
        request(base, "POST", EVENTS_PATH, body, {**json_type, **sign(body, secret="x" * 32)}),
        request(base, "POST", EVENTS_PATH, body, {**json_type, **sign(body, timestamp=now - 600)}),
        request(
            base,
            "POST",
            EVENTS_PATH,
            body,
            {**json_type, "X-Slack-Request-Timestamp": MARKER, "X-Slack-Signature": MARKER},
        ),
        post_bytes(base, body.encode() + b"\xff", {**json_type, **sign(body)}),
    ]


def test_a_refused_request_is_one_short_log_line_without_its_body(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    # Before the app is built: Bolt's loggers copy the root's level then. Bolt also sets the
    # app's own logger ("feedbot", its name) to the root's level on every request it handles.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="feedbot")
    with served(bot) as url:
        replies = refused_requests(url)
    assert [reply.status for reply in replies] == [401, 401, 401, 401, 400]
    assert all(MARKER not in reply.body for reply in replies)
    for record in caplog.records:
        line = caplog.handler.format(record)
        assert MARKER not in line and "UEVIL0001" not in line, line
    refusals = [r for r in caplog.records if r.name == "feedbot.slack.server"]
    assert len(refusals) == len(replies)
    for record in refusals:
        message = record.getMessage()
        assert "127.0.0.1" in message and "\n" not in message and len(message) < 120, message


def test_bolt_does_not_log_the_body_of_a_request_it_refuses(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind the listener's own check Bolt should never refuse a signature; if it does (a
    request crossing the 5-minute mark between the two checks), it keeps the body out too."""
    caplog.set_level(logging.DEBUG)
    app = build_app(
        bot.settings, bot.engine, client=WebClient(token=TOKEN, base_url=bot.slack.base_url)
    )
    body = forged_envelope()
    headers = {"content-type": "application/json", **sign(body, secret="x" * 32)}
    assert dispatch(app, body=body, headers=headers).status == 401
    assert "Invalid request signature detected" in caplog.text
    assert MARKER not in caplog.text and "UEVIL0001" not in caplog.text


def test_unverified_requests_are_counted_under_one_label(base: str) -> None:
    """Unsigned requests with made-up event types must not grow /metrics (each new label
    value is a new time series, kept until the process ends)."""
    before = request(base, "GET", "/metrics").body
    unverified = counted(UNVERIFIED, "4xx")
    made_up = [f"zz_{uuid.uuid4().hex}" for _ in range(20)]
    for event_type in made_up:
        body = forged_envelope(event_type)
        assert (
            request(base, "POST", EVENTS_PATH, body, {"Content-Type": "application/json"}).status
            == 401
        )
        body = json.dumps({"type": event_type, "token": MARKER})
        assert (
            request(base, "POST", EVENTS_PATH, body, {"Content-Type": "application/json"}).status
            == 401
        )
    after = request(base, "GET", "/metrics").body
    assert counted(UNVERIFIED, "4xx") == unverified + 2 * len(made_up)
    assert not any(event_type in after for event_type in made_up)
    assert len(after) - len(before) < 2000


def test_slacks_certificate_check_is_answered_without_a_signature(base: str) -> None:
    body = "ssl_check=1&token=legacy-verification-token"
    reply = request(
        base, "POST", EVENTS_PATH, body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (reply.status, reply.body) == (200, "")


def test_a_signed_but_malformed_request_is_still_400(base: str) -> None:
    for body, content_type in (
        ("payload=%7Bnot-json", "application/x-www-form-urlencoded"),
        ("[1, 2]", "application/json"),
    ):
        headers = {"Content-Type": content_type, **sign(body)}
        assert request(base, "POST", EVENTS_PATH, body, headers).status == 400, body


def test_a_signed_request_the_database_cannot_take_is_still_500(bot: Bot) -> None:
    unreachable = make_engine(
        "postgresql://feedbot@127.0.0.1:1/feedbot", connect_args={"connect_timeout": 2}
    )
    with served(bot, unreachable) as url:
        reply = post_event(url, message_envelope("EvNODB0001", "No database", ts="1700000000.1"))
    unreachable.dispose()
    assert reply.status == 500


def metric_kinds(exposition: str) -> set[str]:
    return set(re.findall(r'^feedbot_slack_request\w*\{[^}]*kind="([^"]*)"', exposition, re.M))


def test_signed_requests_are_counted_by_a_fixed_set_of_kinds(base: str) -> None:
    """Slack may send types feedbot does not know (or a leaked secret may): each is counted
    as `event:other` or `other`, never under a name taken from the body."""
    made_up = [f"zz_{uuid.uuid4().hex}" for _ in range(10)]
    for name in made_up:
        for body in (forged_envelope(name), json.dumps({"type": name, "token": "t"})):
            headers = {"Content-Type": "application/json", **sign(body)}
            request(base, "POST", EVENTS_PATH, body, headers)
    exposition = request(base, "GET", "/metrics").body
    kinds = metric_kinds(exposition)
    assert {"event:other", "other"} <= kinds
    assert kinds <= REQUEST_KINDS | {UNVERIFIED}
    assert not any(name in exposition for name in made_up)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"type": "event_callback", "event": {"type": "message"}}, "event:message"),
        ({"type": "event_callback", "event": {"type": "app_home_opened"}}, "event:app_home_opened"),
        ({"type": "event_callback", "event": {"type": "reaction_added"}}, "event:other"),
        ({"type": "event_callback", "event": {"type": ["message"]}}, "event:other"),
        ({"type": "event_callback", "event": "message"}, "event:other"),
        ({"command": "/feedback", "text": "help"}, "command"),
        ({"type": "block_actions"}, "block_actions"),
        ({"type": "view_submission"}, "view_submission"),
        ({"type": "view_closed"}, "view_closed"),
        ({"type": "shortcut"}, "shortcut"),
        ({"type": "message_action"}, "message_action"),
        ({"type": "url_verification"}, "url_verification"),
        ({"type": "block_suggestion"}, "other"),
        ({"type": {"nested": "x" * 100}}, "other"),
        ({"type": ["view_submission"]}, "other"),
        ({}, "other"),
    ],
)
def test_request_kind_maps_every_body_to_a_known_kind(body: dict[str, Any], kind: str) -> None:
    assert request_kind(body) == kind
    assert kind in REQUEST_KINDS
