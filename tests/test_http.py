"""HTTP mode over real HTTP: the production listener (`FeedbotWSGI` around the real Bolt app,
in waitress) on a free port, talked to with `http.client` the way Slack and a load
balancer do.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from threading import Thread
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from feedbot.db import make_engine
from feedbot.models import ProcessedEvent, Report, SlackUser
from feedbot.slack.app import build_app
from feedbot.slack.outbox import OutboxSender
from feedbot.slack.server import EVENTS_PATH, Listener
from feedbot.worker_process import Health
from tests.fakeslack import FakeSlack
from tests.harness import (
    ALICE,
    BOB,
    INTAKE,
    LEADERSHIP,
    SIGNING_SECRET,
    TEAM,
    TOKEN,
    Bot,
    sign,
)


@dataclass
class Reply:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    base: str, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
) -> Reply:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request(method, path, body=body.encode() or None, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.read().decode())
    finally:
        connection.close()


@contextmanager
def served(
    bot: Bot, engine: Engine | None = None, workers: Callable[[], Health] | None = None
) -> Iterator[str]:
    """A new app instance (as another replica would build it) served over HTTP by the
    production listener; its base URL."""
    engine = engine or bot.engine
    app = build_app(
        bot.settings, engine, client=WebClient(token=TOKEN, base_url=bot.slack.base_url)
    )
    listener = Listener(
        app,
        engine,
        host="127.0.0.1",
        port=0,
        signing_secret=SIGNING_SECRET,
        threads=4,
        workers=workers,
        asyncore_loop_timeout=0.05,  # notice stop() at once rather than within a second
    )
    thread = Thread(target=listener.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.port}"
    finally:
        listener.stop()
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture
def base(bot: Bot) -> Iterator[str]:
    with served(bot) as url:
        yield url


def post_event(
    base: str, envelope: dict[str, Any], *, retry: int | None = None, timestamp: int | None = None
) -> Reply:
    body = json.dumps(envelope)
    headers = {"Content-Type": "application/json", **sign(body, timestamp=timestamp)}
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return request(base, "POST", EVENTS_PATH, body, headers)


def message_envelope(event_id: str, text: str, *, ts: str) -> dict[str, Any]:
    """An `event_callback` carrying a new message in the intake channel, as Slack sends it."""
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM["id"],
        "api_app_id": "A0FEEDBOT",
        "event": {
            "type": "message",
            "channel": INTAKE,
            "user": ALICE,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": "channel",
            "team": TEAM["id"],
            "client_msg_id": f"cm-{event_id}",
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM["id"],
                "user_id": "UBOT",
                "is_bot": True,
                "is_enterprise_install": False,
                "team_domain": TEAM["domain"],
            }
        ],
        "is_ext_shared_channel": False,
    }


def count(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def cards(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages(LEADERSHIP) if m["thread_ts"] is None]


def deliver(engine: Engine, slack: FakeSlack) -> None:
    OutboxSender(engine, WebClient(token=TOKEN, base_url=slack.base_url)).drain()


# -- health ---------------------------------------------------------------------------------------


def test_healthz_is_200_while_the_database_answers(base: str) -> None:
    reply = request(base, "GET", "/healthz")
    assert reply.status == 200
    assert reply.json() == {
        "ok": True,
        "database": "ok",
        "slack": "ok",
        "job_runner": False,
    }


def test_healthz_says_how_the_workers_process_is_and_is_503_once_it_is_down_too_long(
    bot: Bot,
) -> None:
    state = Health(True, "running in process 4242")
    with served(bot, workers=lambda: state) as url:
        running = request(url, "GET", "/healthz")
        state = Health(False, "not running for 31 s (its last process exited with 1; 5 started)")
        down = request(url, "GET", "/healthz")
    assert running.status == 200
    assert running.json()["ok"] is True
    assert running.json()["workers"] == "running in process 4242"
    assert down.status == 503
    assert down.json()["ok"] is False
    assert down.json()["workers"].startswith("not running for 31 s")


def test_healthz_is_503_when_the_database_is_unreachable(bot: Bot) -> None:
    unreachable = make_engine(
        "postgresql://feedbot@127.0.0.1:1/feedbot", connect_args={"connect_timeout": 2}
    )
    with served(bot, unreachable) as url:
        reply = request(url, "GET", "/healthz")
    unreachable.dispose()
    assert reply.status == 503
    assert reply.json() == {
        "ok": False,
        "database": "unreachable",
        "slack": "ok",
        "job_runner": False,
    }


def test_unknown_paths_are_404(base: str) -> None:
    assert request(base, "GET", "/").status == 404
    assert request(base, "GET", EVENTS_PATH).status in (404, 405)  # Slack only POSTs


# -- request signatures ------------------------------------------------------------------------


def test_a_bad_signature_is_401(base: str, bot: Bot) -> None:
    body = json.dumps(message_envelope("EvBADSIG01", "forged", ts="1700000000.000100"))
    headers = {"Content-Type": "application/json", **sign(body, secret="not-the-secret")}
    assert request(base, "POST", EVENTS_PATH, body, headers).status == 401
    unsigned = {"Content-Type": "application/json"}
    assert request(base, "POST", EVENTS_PATH, body, unsigned).status == 401
    assert count(bot.engine, ProcessedEvent) == 0


def test_a_correctly_signed_but_stale_request_is_401(base: str, bot: Bot) -> None:
    bot.setup_team()
    envelope = message_envelope("EvSTALE001", "replayed", ts="1700000000.000200")
    stale = int(time.time()) - 6 * 60
    assert post_event(base, envelope, timestamp=stale).status == 401
    assert count(bot.engine, Report) == 0
    assert post_event(base, envelope).status == 200  # the same body, fresh: accepted


def test_url_verification_answers_the_challenge(base: str) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps(
        {"token": "legacy-verification-token", "challenge": challenge, "type": "url_verification"}
    )
    reply = request(
        base, "POST", EVENTS_PATH, body, {"Content-Type": "application/json", **sign(body)}
    )
    assert reply.status == 200
    assert challenge in reply.body
    assert reply.json() == {"challenge": challenge}


# -- Slack's retries are handled once ------------------------------------------------------------


def posted(bot: Bot, text: str) -> str:
    """Put Alice's message into the fake workspace's intake channel; returns its ts. (The
    bot's receipt is a reply in its thread, which Slack refuses under a missing message.)"""
    return posted_by(bot, ALICE, text)


def posted_by(bot: Bot, user: str, text: str) -> str:
    return bot.slack.add_message(INTAKE, text, user=user)


def test_a_retried_event_is_filed_once_and_carded_once(base: str, bot: Bot) -> None:
    bot.setup_team()
    text = "Card reader in Leipzig is down"
    ts = posted(bot, text)
    envelope = message_envelope("EvRETRY0001", text, ts=ts)

    assert post_event(base, envelope).status == 200
    assert post_event(base, envelope, retry=1).status == 200

    assert count(bot.engine, Report) == 1
    assert count(bot.engine, ProcessedEvent) == 1
    deliver(bot.engine, bot.slack)
    [card] = cards(bot.slack)
    assert "FB-1001" in card["text"]
    receipts = [m for m in bot.slack.messages(INTAKE) if m["thread_ts"] == ts]
    assert len(receipts) == 1


def test_a_retry_reaching_another_replica_is_filed_once(base: str, bot: Bot) -> None:
    bot.setup_team()
    text = "No signal at the Dresden shop"
    envelope = message_envelope("EvREPLICA01", text, ts=posted(bot, text))
    other_engine = make_engine(bot.engine.url.render_as_string(hide_password=False))
    with served(bot, other_engine) as other:
        assert post_event(base, envelope).status == 200
        assert post_event(other, envelope, retry=1).status == 200
        assert post_event(other, envelope, retry=2).status == 200
    other_engine.dispose()

    assert count(bot.engine, Report) == 1
    deliver(bot.engine, bot.slack)
    assert len(cards(bot.slack)) == 1


# Problems without a word in common, so that no report suggests another (see the last test).
DISTINCT_PROBLEMS = [
    "Printer jams in Leipzig",
    "Router offline Dresden",
    "Till frozen Hamburg",
    "Tablet cracked Bremen",
    "Badge reader broken Essen",
]


def test_simultaneous_deliveries_to_two_replicas_are_filed_once(base: str, bot: Bot) -> None:
    """Slack's first retry comes almost at once: both copies may be in flight together."""
    bot.setup_team()
    with served(bot) as other, ThreadPoolExecutor(max_workers=2) as pool:
        for n, text in enumerate(DISTINCT_PROBLEMS):
            envelope = message_envelope(f"EvRACE{n:05d}", text, ts=posted(bot, text))
            first = pool.submit(post_event, base, envelope)
            retry = pool.submit(post_event, other, envelope, retry=1)
            assert (first.result().status, retry.result().status) == (200, 200)
    assert count(bot.engine, Report) == len(DISTINCT_PROBLEMS)
    deliver(bot.engine, bot.slack)
    assert len(cards(bot.slack)) == len(DISTINCT_PROBLEMS)


# -- Slack's 3 seconds ----------------------------------------------------------------------------


def test_a_report_with_suggestions_never_waits_on_its_own_database_lock(
    bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A second, similar intake report from someone whose Slack profile is not cached yet.

    The receipt's language used to be looked up while the report's transaction was open, and
    the profile lookup stores what it learnt in a second transaction. On SQLite that second
    write waited for the first one's lock, released only after it: the request stalled for the
    whole busy timeout (10 s in production, far beyond Slack's 3 s, so Slack retried) and the
    profile was not stored. Here the timeout is cut to 1 s, so a regression fails fast.
    """
    if bot.engine.dialect.name == "sqlite":
        monkeypatch.setattr("feedbot.db.SQLITE_BUSY_TIMEOUT_MS", 1000)
        bot.engine.dispose()  # connections from now on get the shorter timeout
    bot.setup_team()
    for user, text in (
        (BOB, "Card terminal offline in Leipzig"),
        (ALICE, "Card terminal offline Leipzig again"),
    ):
        started = time.monotonic()
        response, _ = bot.message(user, text, ts=posted_by(bot, user, text))
        assert response.status == 200
        assert time.monotonic() - started < 3.0
    assert count(bot.engine, Report) == 2
    deadline = time.monotonic() + 3  # the profile may be stored after the answer
    while True:
        with Session(bot.engine) as session:
            if session.get(SlackUser, ALICE) is not None:
                break
        assert time.monotonic() < deadline, "Alice's profile was not stored"
        time.sleep(0.02)
    assert "database is locked" not in caplog.text
