"""Webhooks end to end: report events delivered signed to a local receiver through the
outbox (retried through its failures, never naming anyone), and a ticket system calling back
over signed HTTP to comment on and resolve a report. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from sqlmodel import Session, col, select

from feedbot.cli import main
from feedbot.core import outbox as core_outbox
from feedbot.core import webhooks
from feedbot.core.liveness import Liveness
from feedbot.db import session_scope
from feedbot.errors import InvalidValue
from feedbot.models import OutboxMessage, OutboxStatus, Report, ReportStatus, Webhook
from feedbot.settings import get_settings
from feedbot.slack.ids import Action
from feedbot.slack.inbound_hooks import InboundHooks
from feedbot.slack.server import Listener
from feedbot.slack.webhook_sender import ALERT_AFTER, HOOK_LOOK_GAP, WebhookSender
from tests.harness import (
    ADMIN,
    ALICE,
    BOB,
    IDENTITIES,
    LEADER,
    LEADERSHIP,
    SECRET_KEY,
    SIGNING_SECRET,
    Bot,
)
from tests.test_anonymity import ANONYMOUSLY
from tests.test_http import request
from tests.test_reporting import form_values
from tests.test_triage import open_and_submit

CONTACT = "Mrs Example, +49 341 5550123"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A ticket system's endpoint: records every request; answers `failures` first (status,
    headers), then 200."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    holding: int = 0
    """The next this many requests are answered only once `released` is set."""
    released: threading.Event = field(default_factory=threading.Event)

    def fail(self, times: int, status: int = 503, **headers: str) -> None:
        self.failures += [(status, headers)] * times


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.requests.append(Received(self.path, dict(self.headers.items()), body))
                status, headers = state.failures.pop(0) if state.failures else (200, {})
                held, state.holding = state.holding > 0, max(state.holding - 1, 0)
            if held:
                state.released.wait(10)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/tickets"
    yield state
    server.shutdown()
    server.server_close()


def add_webhook(bot: Bot, url: str, events: str = "all") -> tuple[int, str]:
    with session_scope(bot.engine) as session:
        added = webhooks.add(
            session, url=url, events=events, identities=IDENTITIES, actor=ADMIN, now=bot.clock()
        )
        assert added.webhook.id is not None
        return added.webhook.id, added.secret


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Computed here from the README's description, not with feedbot's code."""
    message = b"v1:" + timestamp.encode() + b":" + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def assert_signed(received: Received, secret: str, webhook_id: int) -> None:
    timestamp = received.headers["X-Feedbot-Request-Timestamp"]
    assert abs(time.time() - int(timestamp)) < 60
    assert received.headers["X-Feedbot-Signature"] == expected_signature(
        secret, timestamp, received.body
    )
    assert received.headers["X-Feedbot-Webhook-Id"] == str(webhook_id)
    assert received.headers["Content-Type"].startswith("application/json")


@pytest.fixture
def hooks(bot: Bot) -> WebhookSender:
    return WebhookSender(bot.deps, timeout=5)


def file_report(bot: Bot, user: str, text: str, **values: Any) -> Report:
    bot.command(user, "")
    response = bot.submit(user, bot.last_view(), form_values(text, **values))
    assert response.status == 200, response.body
    bot.drain()
    return bot.report()


def webhook_entries(bot: Bot) -> list[OutboxMessage]:
    with Session(bot.engine) as session:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(col(OutboxMessage.method) == webhooks.METHOD)
                .order_by(col(OutboxMessage.id))
            )
        )


# --------------------------------------------------------------------------- outgoing


def test_report_events_reach_the_receiver_signed_and_in_order(
    bot: Bot, receiver: Receiver, hooks: WebhookSender
) -> None:
    bot.setup_team()
    webhook_id, secret = add_webhook(
        bot, receiver.url, "report.filed,report.acknowledged,report.resolved"
    )
    report = file_report(bot, BOB, "The card reader at desk 3 rejects every card")
    bot.drain()
    assert receiver.requests == [], "the Slack sender leaves webhook events alone"
    bot.press_card(LEADER, Action.ACKNOWLEDGE, report)
    bot.press_card(LEADER, Action.CLAIM, report)  # not chosen: no event
    bot.drain()
    hooks.drain()

    assert [r.json()["event"] for r in receiver.requests] == [
        "report.filed",
        "report.acknowledged",
    ]
    for received in receiver.requests:
        assert_signed(received, secret, webhook_id)
        assert received.path == "/tickets"
    filed = receiver.requests[0].json()
    assert filed["version"] == 1 and len(filed["id"]) == 32
    assert filed["report"]["reference"] == report.reference
    assert filed["report"]["text"] == "The card reader at desk 3 rejects every card"
    assert filed["report"]["category"] == "Devices & hardware"
    assert filed["report"]["urgency"] == "high"
    assert filed["report"]["location"] == "Shop Leipzig Hbf"
    assert filed["report"]["status"] == "open"
    assert receiver.requests[1].json()["report"]["status"] == "acknowledged"
    # the reporter is not in a body even when named
    assert all(
        BOB not in r.body.decode() and LEADER not in r.body.decode() for r in receiver.requests
    )


def test_an_anonymous_reporter_and_a_customer_never_appear_in_a_body(
    bot: Bot, receiver: Receiver, hooks: WebhookSender
) -> None:
    bot.setup_team()
    add_webhook(bot, receiver.url)
    report = file_report(
        bot,
        ALICE,
        "The roaming tariff double-charges customers",
        anonymous=ANONYMOUSLY,
        callback={"type": "checkboxes", "selected_options": [{"value": "yes"}]},
        contact={"type": "plain_text_input", "value": CONTACT},
    )
    assert report.anonymous and report.customer_contact == CONTACT
    open_and_submit(
        bot,
        LEADER,
        "triage_reply",
        report,
        {"note": {"type": "plain_text_input", "value": "We are on it"}},
    )
    bot.drain()
    hooks.drain()
    events = [r.json()["event"] for r in receiver.requests]
    assert events[0] == "report.filed" and "report.replied" in events
    replied = next(r.json() for r in receiver.requests if r.json()["event"] == "report.replied")
    assert replied["comment"] == {"text": "We are on it"}
    for received in receiver.requests:
        text = received.body.decode()
        assert ALICE not in text and "alice" not in text.lower()
        assert "Mrs Example" not in text and "5550123" not in text
        assert received.json()["report"]["callback_requested"] is True


def test_a_confidential_report_is_never_sent(
    bot: Bot, receiver: Receiver, hooks: WebhookSender
) -> None:
    bot.setup_team()
    bot.configure(confidential_categories="Devices & hardware")
    add_webhook(bot, receiver.url)
    file_report(bot, BOB, "My manager takes home the demo phones")
    hooks.drain()
    assert receiver.requests == []


def test_a_failing_receiver_is_retried_with_backoff_until_it_takes_the_event(
    bot: Bot, receiver: Receiver, hooks: WebhookSender
) -> None:
    bot.setup_team()
    webhook_id, secret = add_webhook(bot, receiver.url, "report.filed")
    receiver.fail(2, 503)
    receiver.fail(1, 429, Retry_After="30")
    file_report(bot, BOB, "Tills freeze at noon")

    hooks.drain()
    assert len(receiver.requests) == 1
    entry = webhook_entries(bot)[0]
    assert entry.status == OutboxStatus.PENDING and entry.last_error == "HTTP 503"
    hooks.drain()
    assert len(receiver.requests) == 1, "nothing is due before its backoff"
    bot.clock.advance(seconds=2)
    hooks.drain()
    assert len(receiver.requests) == 2
    bot.clock.advance(seconds=3)
    hooks.drain()
    assert len(receiver.requests) == 3  # the 429
    entry = webhook_entries(bot)[0]
    assert entry.last_error == "HTTP 429"
    assert (entry.next_attempt_at - bot.clock()).total_seconds() == pytest.approx(30)
    bot.clock.advance(seconds=29)
    hooks.drain()
    assert len(receiver.requests) == 3, "Retry-After is honoured"
    bot.clock.advance(seconds=2)
    hooks.drain()
    assert len(receiver.requests) == 4
    assert webhook_entries(bot)[0].status == OutboxStatus.SENT
    ids = {r.json()["id"] for r in receiver.requests}
    assert len(ids) == 1, "every attempt is the same delivery"
    for received in receiver.requests:
        assert_signed(received, secret, webhook_id)


def test_a_receiver_that_keeps_failing_never_holds_up_slack_and_admins_hear_of_it(
    bot: Bot,
    receiver: Receiver,
    hooks: WebhookSender,
    cli: Callable[..., tuple[int, str]],
    database_url: str,
) -> None:
    bot.setup_team()
    webhook_id, _ = add_webhook(bot, receiver.url, "report.filed,report.acknowledged")
    receiver.fail(100, 500)
    report = file_report(bot, BOB, "Scanner in the stockroom is dead")
    for _ in range(ALERT_AFTER):
        hooks.drain()
        bot.clock.advance(minutes=2)
    assert len(receiver.requests) == ALERT_AFTER
    bot.press_card(LEADER, Action.ACKNOWLEDGE, report)
    bot.drain()
    assert "acknowledged" in " ".join(bot.thread(report)), "Slack's messages went meanwhile"
    alerts = [text for text in bot.dms(ADMIN) if "keeps failing" in text]
    assert len(alerts) == 1 and f"Webhook {webhook_id}" in alerts[0] and "HTTP 500" in alerts[0]

    code, out = cli("outbox", database_url=database_url)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith(f"webhook {webhook_id}"))
    assert "FAILING since" in line and "HTTP 500" in line and "2 waiting" in line

    for _ in range(3):  # a longer streak is not told again
        bot.clock.advance(minutes=10)
        hooks.drain()
    bot.drain()
    assert len([text for text in bot.dms(ADMIN) if "keeps failing" in text]) == 1


def test_a_receiver_refusing_an_event_for_good_is_not_retried(
    bot: Bot, receiver: Receiver, hooks: WebhookSender
) -> None:
    bot.setup_team()
    add_webhook(bot, receiver.url, "report.filed")
    receiver.fail(1, 410)
    file_report(bot, BOB, "Price labels print in the wrong currency")
    hooks.drain()
    bot.clock.advance(hours=1)
    hooks.drain()
    assert len(receiver.requests) == 1
    entry = webhook_entries(bot)[0]
    assert entry.status == OutboxStatus.FAILED and entry.last_error == "HTTP 410"
    bot.drain()
    assert any("keeps failing" in text for text in bot.dms(ADMIN))


def test_an_unreachable_receiver_is_retried(bot: Bot, hooks: WebhookSender) -> None:
    bot.setup_team()
    add_webhook(bot, "http://127.0.0.1:9/nobody-listens", "report.filed")
    file_report(bot, BOB, "The tills are slow")
    hooks.drain()
    entry = webhook_entries(bot)[0]
    assert entry.status == OutboxStatus.PENDING and entry.attempts == 1
    assert entry.last_error and "refused" in entry.last_error.lower()


def test_a_dead_process_webhook_claims_are_taken_over_before_their_lease_ends(
    bot: Bot, receiver: Receiver, hooks: WebhookSender
) -> None:
    """A workers' process killed while a receiver had its event: the next process sends the
    event again within seconds, not after the claim's one-minute lease."""
    bot.setup_team()
    add_webhook(bot, receiver.url, "report.filed")
    file_report(bot, BOB, "The tills are slow")
    receiver.holding = 1  # the dying process is mid-call
    dying = WebhookSender(bot.deps, timeout=5, poll_interval=0.05, owner="12345")
    dying.start()
    try:
        deadline = time.monotonic() + 5
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        [entry] = webhook_entries(bot)
        assert entry.status == OutboxStatus.SENDING and entry.claimed_by == "12345"
        with session_scope(bot.engine) as session:
            assert hooks.deliver_due() == 0, "its lease still runs"
            alive = Liveness(bot.engine)
            alive.start()
            try:
                assert alive.take_over(session, now=bot.clock()) == 1
            finally:
                alive.stop()
        assert hooks.deliver_due() == 0, "the dying process's call may still land"
        bot.clock.advance(seconds=core_outbox.CALL_TIMEOUT.total_seconds() + 1)
        assert hooks.deliver_due() == 1, "taken over long before the lease runs out"
        assert len(receiver.requests) == 2
        assert receiver.requests[0].body == receiver.requests[1].body
        [entry] = webhook_entries(bot)
        assert entry.status == OutboxStatus.SENT
    finally:
        receiver.released.set()
        dying.stop()


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Callable[..., tuple[int, str]]]:
    monkeypatch.chdir(tmp_path)

    def run(*args: str, database_url: str) -> tuple[int, str]:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("FEEDBOT_SECRET_KEY", SECRET_KEY)
        get_settings.cache_clear()
        code = main(list(args))
        return code, capsys.readouterr().out

    yield run
    get_settings.cache_clear()


def test_webhooks_are_added_listed_tested_and_removed_from_the_command_line(
    bot: Bot, receiver: Receiver, cli: Callable[..., tuple[int, str]], database_url: str
) -> None:
    code, out = cli(
        "webhooks", "add", receiver.url, "--events", "report.filed,report.resolved",
        database_url=database_url,
    )  # fmt: skip
    assert code == 0, out
    secret = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("secret:"))
    with Session(bot.engine) as session:
        stored = session.exec(select(Webhook)).one()
    assert secret not in stored.secret_sealed, "only its seal is stored"
    assert stored.events == "report.filed,report.resolved"

    code, out = cli("webhooks", "list", database_url=database_url)
    assert f"webhook {stored.id} {receiver.url} [report.filed,report.resolved]: ok" in out
    assert secret not in out

    code, out = cli("webhooks", "test", str(stored.id), database_url=database_url)
    assert code == 0 and "answered 200" in out
    assert receiver.requests[-1].json()["event"] == "ping"
    assert_signed(receiver.requests[-1], secret, stored.id or 0)

    code, out = cli("webhooks", "add", receiver.url, "--events", "report.eaten",
                    database_url=database_url)  # fmt: skip
    assert code != 0

    code, out = cli("webhooks", "remove", str(stored.id), database_url=database_url)
    assert code == 0
    code, out = cli("webhooks", "list", database_url=database_url)
    assert "no webhooks" in out


# --------------------------------------------------------------------------- calling back


@pytest.fixture
def base(bot: Bot) -> Iterator[str]:
    """feedbot in HTTP mode, with the ticket systems' endpoint."""
    listener = Listener(
        bot.app,
        bot.engine,
        host="127.0.0.1",
        port=0,
        signing_secret=SIGNING_SECRET,
        threads=4,
        hooks=InboundHooks(bot.deps),
        asyncore_loop_timeout=0.05,
    )
    thread = Thread(target=listener.run, name="waitress", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.port}"
    listener.stop()
    thread.join(5)


def call_back(
    base: str,
    reference: str,
    payload: Any,
    *,
    webhook_id: int,
    secret: str,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
    raw: str | None = None,
) -> Any:
    body = raw if raw is not None else json.dumps(payload)
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signed = {
        "Content-Type": "application/json",
        "X-Feedbot-Webhook-Id": str(webhook_id),
        "X-Feedbot-Request-Timestamp": ts,
        "X-Feedbot-Signature": expected_signature(secret, ts, body.encode()),
    }
    return request(base, "POST", f"/hooks/reports/{reference}", body, headers or signed)


def test_a_ticket_system_comments_and_resolves_like_a_leader(
    bot: Bot, base: str, receiver: Receiver, hooks: WebhookSender
) -> None:
    bot.setup_team()
    webhook_id, secret = add_webhook(bot, receiver.url, "report.replied,report.resolved")
    other_id, _ = add_webhook(bot, receiver.url + "/other", "report.replied,report.resolved")
    report = file_report(bot, ALICE, "Contracts print without the privacy page",
                         anonymous=ANONYMOUSLY)  # fmt: skip
    bot.drain()

    reply = call_back(
        base,
        report.reference,
        {"action": "comment", "text": "Fixed in the next template <!channel>", "author": "Kim"},
        webhook_id=webhook_id,
        secret=secret,
    )
    assert reply.status == 200, reply.body
    assert reply.json() == {"ok": True, "reference": report.reference, "status": "acknowledged"}
    bot.drain()
    thread = bot.thread(report)
    assert any("Kim replied to the reporter from the ticket system" in line for line in thread)
    assert "<!channel>" not in bot.slack.mentions(bot.slack.messages(LEADERSHIP)), "nobody pinged"
    told = bot.dms(ALICE)
    assert any("Leadership answered your report" in dm and "Fixed in the next template" in dm
               for dm in told)  # fmt: skip

    resolved = call_back(
        base,
        report.reference,
        {"action": "resolve", "text": "Template v7 is live in every shop", "author": "Kim"},
        webhook_id=webhook_id,
        secret=secret,
    )
    assert resolved.status == 200, resolved.body
    assert resolved.json()["status"] == "resolved"
    bot.drain()
    assert bot.report(report.id).status == ReportStatus.RESOLVED
    assert any("Kim resolved it from the ticket system" in line for line in bot.thread(report))
    assert any("is resolved: Template v7 is live" in dm for dm in bot.dms(ALICE))
    card = bot.card(report)
    assert "Template v7 is live" in json.dumps(card["blocks"])

    hooks.drain()
    sent_to = {(r.path, r.json()["event"]) for r in receiver.requests}
    assert sent_to == {
        ("/tickets/other", "report.replied"),
        ("/tickets/other", "report.resolved"),
    }, "the other ticket system hears of it; the one that did it does not"
    assert other_id != webhook_id

    again = call_back(
        base,
        report.reference,
        {"action": "resolve", "text": "Again", "author": "Kim"},
        webhook_id=webhook_id,
        secret=secret,
    )
    assert again.status == 409 and again.json()["ok"] is False


def test_unsigned_stale_forged_and_replayed_calls_are_refused(bot: Bot, base: str) -> None:
    bot.setup_team()
    webhook_id, secret = add_webhook(bot, "https://tickets.example.com/hook")
    report = file_report(bot, BOB, "Queue display shows yesterday's numbers")
    comment = {"action": "comment", "text": "Looking into it", "author": "Kim"}

    unsigned = request(
        base,
        "POST",
        f"/hooks/reports/{report.reference}",
        json.dumps(comment),
        {"Content-Type": "application/json"},
    )
    assert unsigned.status == 401 and unsigned.json()["error"] == "not_signed"

    stale = call_back(base, report.reference, comment, webhook_id=webhook_id, secret=secret,
                      timestamp=int(time.time()) - 6 * 60)  # fmt: skip
    assert stale.status == 401 and stale.json()["error"] == "stale"

    forged = call_back(base, report.reference, comment, webhook_id=webhook_id,
                       secret="whsec_not-the-secret")  # fmt: skip
    assert forged.status == 401 and forged.json()["error"] == "bad_signature"

    unknown = call_back(base, report.reference, comment, webhook_id=999, secret=secret)
    assert unknown.status == 401 and unknown.json()["error"] == "bad_signature"

    ts = int(time.time())
    first = call_back(base, report.reference, comment, webhook_id=webhook_id, secret=secret,
                      timestamp=ts)  # fmt: skip
    assert first.status == 200, first.body
    replayed = call_back(base, report.reference, comment, webhook_id=webhook_id, secret=secret,
                         timestamp=ts)  # fmt: skip
    assert replayed.status == 409 and replayed.json()["error"] == "replayed"

    with Session(bot.engine) as session:
        replies = [e for e in session.exec(select(OutboxMessage)) if e.purpose == "notice_replied"]
    assert len(replies) == 1, "the reporter heard once"

    bad = call_back(base, report.reference, None, webhook_id=webhook_id, secret=secret, raw="{")
    assert bad.status == 400 and bad.json()["error"] == "invalid_json"
    wrong = call_back(base, report.reference, {"action": "delete", "text": "x"},
                      webhook_id=webhook_id, secret=secret)  # fmt: skip
    assert wrong.status == 400 and wrong.json()["error"] == "invalid_action"
    elsewhere = call_back(base, "FB-1002", comment, webhook_id=webhook_id, secret=secret,
                          timestamp=ts)  # fmt: skip
    assert elsewhere.status == 409, "a signed call cannot be replayed against another report"
    mismatched = call_back(base, report.reference, {**comment, "reference": "FB-1002"},
                           webhook_id=webhook_id, secret=secret)  # fmt: skip
    assert mismatched.status == 400 and mismatched.json()["error"] == "wrong_reference"
    missing = call_back(base, "FB-9999", {**comment, "text": "Anyone there?"},
                        webhook_id=webhook_id, secret=secret)  # fmt: skip
    assert missing.status == 404 and missing.json()["error"] == "no_such_report"
    big = call_back(base, report.reference, None, webhook_id=webhook_id, secret=secret,
                    raw=json.dumps({**comment, "text": "x" * 70_000}))  # fmt: skip
    assert big.status == 413
    get = request(base, "GET", f"/hooks/reports/{report.reference}")
    assert get.status == 405


def test_the_endpoint_does_not_exist_in_socket_mode(bot: Bot) -> None:
    listener = Listener(
        None,
        bot.engine,
        host="127.0.0.1",
        port=0,
        threads=2,
        hooks=InboundHooks(bot.deps),
        asyncore_loop_timeout=0.05,
    )
    thread = Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        reply = request(f"http://127.0.0.1:{listener.port}", "POST", "/hooks/reports/FB-1001", "{}")
        assert reply.status == 404
    finally:
        listener.stop()
        thread.join(5)


# --------------------------------------------------------------------------- the README


README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
WEBHOOKS_SECTION = README.split("## Webhooks", 1)[1].split("\n## ", 1)[0]


def readme_code() -> dict[str, Any]:
    """The README's Python examples for receivers, run as they are written."""
    namespace: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", WEBHOOKS_SECTION, re.DOTALL):
        exec(block, namespace)
    return namespace


def test_the_readme_example_body_has_the_fields_feedbot_sends(bot: Bot) -> None:
    example = json.loads(re.findall(r"```json\n(.*?)```", WEBHOOKS_SECTION, re.DOTALL)[0])
    report = Report(id=42, text="x", category="Other", reporter_id=ALICE)
    with Session(bot.engine) as session:
        fields = webhooks.report_fields(session, report)
    body = json.loads(
        webhooks.build_body(event="report.replied", report=fields, now=bot.clock(), comment="y")
    )
    assert set(example) == set(body)
    assert set(example["report"]) == set(body["report"])
    for event in webhooks.EVENTS:
        assert f"`{event}`" in WEBHOOKS_SECTION


def test_the_readme_verification_and_call_back_examples_work(
    bot: Bot, base: str, receiver: Receiver, hooks: WebhookSender
) -> None:
    code = readme_code()
    bot.setup_team()
    webhook_id, secret = add_webhook(bot, receiver.url, "report.filed,report.resolved")
    report = file_report(bot, BOB, "The queue display is stuck on number 12")
    hooks.drain()
    received = receiver.requests[-1]
    assert code["verify"](secret, received.headers, received.body) is True
    assert code["verify"]("whsec_other", received.headers, received.body) is False
    assert code["verify"](secret, received.headers, received.body + b" ") is False

    answer = code["call_feedbot"](
        base,
        webhook_id,
        secret,
        report.reference,
        {"action": "resolve", "text": "Display replaced", "author": "Kim"},
    )
    assert answer == {"ok": True, "reference": report.reference, "status": "resolved"}
    bot.drain()
    assert any("Display replaced" in dm and report.reference in dm for dm in bot.dms(BOB))


# --------------------------------------------------------------------------- the admins' form


def open_webhooks_form(bot: Bot, user: str) -> dict[str, Any]:
    bot.press(user, "admin_edit_webhooks", "webhooks", channel="")
    return bot.last_view()


def test_admins_list_add_and_remove_webhooks_in_slack(
    bot: Bot, receiver: Receiver, hooks: WebhookSender
) -> None:
    bot.setup_team()
    # Settings kept an hour: webhooks are read with each change, not with the settings (a
    # worker in another process would otherwise miss events for a new one meanwhile).
    bot.deps.config_cache.ttl = 3600
    bot.deps.config_cache.invalidate()
    bot.command(ADMIN, "admin")
    picker = bot.last_view()
    assert any(b.get("block_id") == "settings-webhooks" for b in picker["blocks"])

    form = open_webhooks_form(bot, ADMIN)
    assert form["callback_id"] == "webhooks_form"
    assert "No webhooks yet" in json.dumps(form["blocks"])
    refused = bot.submit(
        ADMIN, form, {"webhook_url": {"type": "plain_text_input", "value": "ftp://nope"}}
    )
    assert "webhook_url" in json.loads(refused.body)["errors"]

    chosen = [{"value": "report.filed"}, {"value": "report.resolved"}]
    response = bot.submit(
        ADMIN,
        form,
        {
            "webhook_url": {"type": "plain_text_input", "value": receiver.url},
            "webhook_events": {"type": "checkboxes", "selected_options": chosen},
        },
    )
    answer = json.loads(response.body)
    assert answer["response_action"] == "update"
    shown = json.dumps(answer["view"]["blocks"])
    secret = re.search(r"`(whsec_[A-Za-z0-9_-]+)`", shown)
    assert secret is not None, "the secret is shown once"
    assert receiver.url in shown and "`report.filed`" in shown
    with Session(bot.engine) as session:
        webhook = session.exec(select(Webhook)).one()
    assert webhook.events == "report.filed,report.resolved" and webhook.created_by == ADMIN

    file_report(bot, BOB, "The returns scanner beeps but records nothing")
    hooks.drain()
    assert_signed(receiver.requests[-1], secret.group(1), webhook.id or 0)
    again = open_webhooks_form(bot, ADMIN)
    assert secret.group(1) not in json.dumps(again), "never shown again"

    bot.press(ALICE, "admin_edit_webhooks", "webhooks", channel="")
    assert bot.last_view()["id"] == again["id"], "no form for a non-admin"
    bot.press(ALICE, "admin_remove_webhook", str(webhook.id), channel="")
    with Session(bot.engine) as session:
        assert session.exec(select(Webhook)).all(), "a non-admin removes nothing"

    bot.click_in_view(ADMIN, again, "admin_remove_webhook")
    with Session(bot.engine) as session:
        assert session.exec(select(Webhook)).all() == []
    updated = bot.slack.calls_to("views.update")[-1].args["view"]
    assert "No webhooks yet" in json.dumps(updated["blocks"])
    sent = len(receiver.requests)
    file_report(bot, BOB, "The label printer prints blank labels")
    hooks.drain()
    assert len(receiver.requests) == sent, "a removed webhook gets no more events"


# --------------------------------------------------------------------------- small rules


def test_event_names_are_checked_and_all_means_every_event() -> None:
    assert webhooks.parse_events("all") == list(webhooks.EVENTS)
    assert webhooks.parse_events(" report.filed, report.filed ,report.resolved") == [
        "report.filed",
        "report.resolved",
    ]
    with pytest.raises(InvalidValue, match=r"report\.eaten"):
        webhooks.parse_events("report.filed,report.eaten")
    with pytest.raises(InvalidValue):
        webhooks.parse_events("")
    with pytest.raises(InvalidValue):
        webhooks.check_url("file:///etc/passwd")


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    assert webhooks.retry_after("120") == 120
    assert webhooks.retry_after(None) is None
    assert webhooks.retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 80 < (webhooks.retry_after(later) or 0) <= 90


def test_an_event_queued_for_a_webhook_removed_meanwhile_is_given_up_not_left(
    bot: Bot,
) -> None:
    """A report that read the webhooks just before one was removed queues an event for it
    after the removal failed its others. The loop's looks read only existing webhooks'
    conversations (it is woken by every commit), so once per `poll_interval` one reads
    them all: the event is found and given up, not left unfinished for ever."""
    sender = WebhookSender(bot.deps, timeout=5, poll_interval=0.3)
    sender.start()
    try:
        time.sleep(0.1)  # its first look, which reads everything, is over
        with session_scope(bot.engine) as session:
            stray = core_outbox.enqueue(
                session,
                conversation=webhooks.conversation_of(Webhook(id=999, url="https://x")),
                method=webhooks.METHOD,
                payload={"body": "{}"},
                purpose="report.filed",
                now=bot.clock(),
            )
        deadline = time.monotonic() + 5
        status = OutboxStatus.PENDING
        while time.monotonic() < deadline and status != OutboxStatus.FAILED:
            sender.wake()  # as every commit does
            time.sleep(0.02)
            with Session(bot.engine) as session:
                entry = session.get(OutboxMessage, stray.id)
                assert entry is not None
                status = entry.status
        assert status == OutboxStatus.FAILED
        assert entry.last_error == "the webhook was removed"
    finally:
        sender.stop()


def test_the_webhook_loop_looks_at_most_once_per_its_gap_however_often_it_is_woken(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every commit wakes the webhook loop, a hundred times a second and more under load,
    though few queue a webhook event: it looks at most once per `HOOK_LOOK_GAP` (about
    fifty times a second without it, the outbox loop's gap)."""
    looks: list[float] = []
    claim_due = core_outbox.claim_due

    def counted(*args: Any, **kwargs: Any) -> core_outbox.Claims:
        looks.append(time.monotonic())
        return claim_due(*args, **kwargs)

    monkeypatch.setattr(core_outbox, "claim_due", counted)
    sender = WebhookSender(bot.deps, timeout=5, poll_interval=5.0)
    sender.start()
    try:
        time.sleep(0.1)
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # a thousand commits a second
            sender.wake()
            time.sleep(0.001)
        during = [look for look in looks if started <= look < started + 1.0]
        assert 3 <= len(during) <= 1.0 / HOOK_LOOK_GAP + 2
    finally:
        sender.stop()
