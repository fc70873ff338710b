"""Driving the real feedbot app the way Slack does: signed requests with real payload shapes.

`Bot` builds the app against the fake Slack, dispatches signed requests through
`App.dispatch` (or over HTTP, see `tests/test_http.py`) and delivers the outbox on demand, so
a test reads top to bottom: a person does something, then we look at what Slack received.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from slack_bolt import BoltResponse
from slack_sdk import WebClient
from sqlalchemy import Engine, event
from sqlmodel import Session, select

from feedbot.core import config as runtime_config
from feedbot.core.identity import Identities
from feedbot.db import session_scope
from feedbot.models import Report
from feedbot.settings import Settings
from feedbot.slack.app import build_app, dispatch
from feedbot.slack.deps import Deps
from feedbot.slack.outbox import OutboxSender
from tests import slack_payloads as payloads
from tests.fakeslack import FakeSlack

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
SECRET_KEY = "test-secret-key-that-seals-anonymous-people-0123"
IDENTITIES = Identities(SECRET_KEY)
"""What the bot seals anonymous people with, for tests that call the core directly."""
TOKEN = "xoxb-test-token"
TEAM = {"id": payloads.TEAM_ID, "domain": payloads.TEAM_DOMAIN}
next_id = payloads.next_id
LEADERSHIP = "CLEAD0001"
INTAKE = "CINTAKE01"
LEADER = "ULEADER01"
LEADER_2 = "ULEADER02"
ADMIN = "UADMIN001"
ALICE = "UALICE001"  # a technician
BOB = "UBOB00001"  # a shop employee
CAROL = "UCAROL001"


@dataclass
class Clock:
    """A controllable `now` for the bot; starts at a fixed Wednesday morning, UTC."""

    now: datetime = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def sign(
    body: str, *, timestamp: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    """Slack's request signature: HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[int, str]]]:
    """Every statement `engine` runs meanwhile, and "COMMIT" for each commit, in order, each
    with the connection it ran on."""
    seen: list[tuple[int, str]] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append((id(conn.connection), sql))

    def committed(conn: Any) -> None:
        seen.append((id(conn.connection), "COMMIT"))

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", committed)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", committed)


def around(seen: list[tuple[int, str]], index: int) -> tuple[list[str], list[str]]:
    """What the connection of statement `index` ran in the same transaction before it, and
    everything it ran after it."""
    connection = seen[index][0]
    before = [sql for other, sql in seen[:index] if other == connection]
    began = max((n for n, sql in enumerate(before) if sql == "COMMIT"), default=-1) + 1
    after = [sql for other, sql in seen[index + 1 :] if other == connection]
    return before[began:], after


@dataclass
class Bot:
    engine: Engine
    slack: FakeSlack
    clock: Clock
    settings: Settings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = Settings(
            slack_bot_token=TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=self.slack.base_url,
            database_url=str(self.engine.url),
            feedbot_admins=[ADMIN],
            feedbot_secret_key=SECRET_KEY,
            _env_file=None,
        )
        client = WebClient(token=TOKEN, base_url=self.slack.base_url)
        # config_ttl=0: tests change configuration between requests and expect it at once.
        self.deps = Deps(
            settings=self.settings,
            engine=self.engine,
            client=client,
            clock=self.clock,
            config_ttl=0,
        )
        self.sender = OutboxSender(
            self.engine,
            WebClient(token=TOKEN, base_url=self.slack.base_url),
            clock=self.clock,
            identities=self.deps.identities,
            config=self.deps.config_in,
        )
        self.deps.workspace.fetch()  # `feedbot run` learns it at start-up (auth.test)
        self.app = build_app(self.settings, self.engine, deps=self.deps)
        for user, locale in (
            (LEADER, "en-US"),
            (LEADER_2, "en-GB"),
            (ADMIN, "en-US"),
            (ALICE, "en-US"),
            (BOB, "de-DE"),
            (CAROL, "en-US"),
        ):
            self.slack.add_user(user, name=user.lower(), locale=locale)
        self.slack.add_channel(LEADERSHIP, name="leadership")
        self.slack.add_channel(INTAKE, name="field-problems")

    # configuration ------------------------------------------------------------------------

    def configure(self, **values: str) -> None:
        with session_scope(self.engine) as session:
            for key, raw in values.items():
                runtime_config.set_value(session, key=key, raw=raw, actor="test", now=self.clock())

    def bot_config(self) -> runtime_config.RuntimeConfig:
        with Session(self.engine) as session:
            return runtime_config.load_config(session)

    def setup_team(self) -> None:
        self.configure(
            leadership_channel=LEADERSHIP, intake_channels=INTAKE, leaders=f"{LEADER},{LEADER_2}"
        )

    # requests -------------------------------------------------------------------------------

    def dispatch(
        self, body: str, content_type: str, headers: dict[str, str] | None = None
    ) -> BoltResponse:
        signed = sign(body)
        request_headers: dict[str, str | list[str]] = {
            "content-type": content_type,
            "x-slack-request-timestamp": signed["X-Slack-Request-Timestamp"],
            "x-slack-signature": signed["X-Slack-Signature"],
        }
        request_headers.update(headers or {})
        return dispatch(self.app, body=body, headers=request_headers)

    def command(self, user: str, text: str = "", *, channel: str = "CGENERAL1") -> BoltResponse:
        form = payloads.slash_command(
            user=user,
            text=text,
            channel=channel,
            channel_name="general",
            response_url=self.slack.new_response_url(),
        )
        return self.dispatch(urlencode(form), "application/x-www-form-urlencoded")

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> BoltResponse:
        """Deliver one event (built with `tests.slack_payloads`) in its Events API envelope."""
        envelope = payloads.event_callback(event, event_id=event_id)
        headers = {}
        if retry_num is not None:
            headers = {"x-slack-retry-num": str(retry_num), "x-slack-retry-reason": "http_timeout"}
        return self.dispatch(json.dumps(envelope), "application/json", headers)

    def message(
        self,
        user: str,
        text: str,
        *,
        channel: str = INTAKE,
        channel_type: str = "channel",
        ts: str | None = None,
        thread_ts: str | None = None,
        subtype: str | None = None,
        event_id: str | None = None,
        retry_num: int | None = None,
        files: list[dict[str, Any]] | None = None,
        bot_id: str | None = None,
    ) -> tuple[BoltResponse, str]:
        """Someone writes `text` (as Slack sends it: escaped) in `channel`."""
        # The fake holds the message too, as Slack would, so replies can be threaded under it.
        ts = ts or self.slack.add_message(channel, text, user=user, thread_ts=thread_ts)
        event = payloads.message_event(
            user=user,
            text=text,
            channel=channel,
            channel_type=channel_type,
            ts=ts,
            thread_ts=thread_ts,
            subtype=subtype,
            files=files,
        )
        if bot_id:
            event["bot_id"] = bot_id
        return self.event(event, event_id=event_id, retry_num=retry_num), ts

    def interactive(self, payload: dict[str, Any]) -> BoltResponse:
        return self.dispatch(
            urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )

    def press(
        self,
        user: str,
        action_id: str,
        value: str | None = None,
        *,
        message_ts: str = "1.0",
        channel: str = LEADERSHIP,
        block_id: str = "b",
        **element: Any,
    ) -> BoltResponse:
        """Use an element that the test describes itself: a stale or forged press, or one on a
        message the fake does not hold. `element` gives its type and state (`type=…`,
        `selected_user=…`). Prefer `click`, which presses what the bot really sent."""
        kind = element.pop("type", "button")
        described: dict[str, Any] = {"type": kind, "action_id": action_id}
        if value is not None:
            described["value"] = value
        entry = payloads.action(described, block_id=block_id, **element)
        if not channel:  # the Home tab: a view, no channel
            view = self.slack.home_views.get(user) or {"id": "VHOME0001", "type": "home"}
            return self.interactive(
                payloads.block_actions_in_view(user=user, actions=[entry], view=view)
            )
        message = self.slack.message_as_sent(channel, message_ts) or {
            "type": "message",
            "ts": message_ts,
            "text": "card",
        }
        return self.interactive(
            payloads.block_actions_in_message(
                user=user,
                actions=[entry],
                channel=channel,
                channel_name=channel.lower(),
                message=message,
                message_ts=message_ts,
                response_url=self.slack.new_response_url(),
            )
        )

    def click(self, user: str, channel: str, ts: str, action_id: str, **state: Any) -> BoltResponse:
        """Use the element `action_id` on the message at (`channel`, `ts`) as Slack holds it:
        its real value and block id; `state` is the person's choice for selects."""
        message = self.slack.message_as_sent(channel, ts)
        assert message is not None, f"no message {ts} in {channel}"
        found = payloads.find_element(message.get("blocks") or [], action_id)
        assert found is not None, f"the message has no {action_id} element"
        block_id, element = found
        return self.interactive(
            payloads.block_actions_in_message(
                user=user,
                actions=[payloads.action(element, block_id=block_id, **state)],
                channel=channel,
                channel_name=channel.lower(),
                message=message,
                message_ts=ts,
                response_url=self.slack.new_response_url(),
            )
        )

    def click_in_view(self, user: str, view: dict[str, Any], action_id: str) -> BoltResponse:
        """Use an element of a view Slack shows `user` (their Home tab, an open modal)."""
        found = payloads.find_element(view.get("blocks") or [], action_id)
        assert found is not None, f"the view has no {action_id} element"
        block_id, element = found
        return self.interactive(
            payloads.block_actions_in_view(
                user=user,
                actions=[payloads.action(element, block_id=block_id)],
                view=view,
            )
        )

    def press_card(self, user: str, action_id: str, report: Report, **state: Any) -> BoltResponse:
        """Press a button of the report's card, as it stands in the leadership channel."""
        card = self.card(report)
        return self.click(user, LEADERSHIP, card["ts"], action_id, **state)

    def submit(
        self,
        user: str,
        view: dict[str, Any],
        values: dict[str, Any],
        *,
        forged: bool = False,
    ) -> BoltResponse:
        """Submit an opened modal with `values` keyed by block id (each element's state, or
        just the value). Only `forged` submissions may carry what the view could not."""
        state = payloads.view_state(view, values, forged=forged)
        return self.interactive(payloads.view_submission(user=user, view=view, state=state))

    def shortcut(
        self, user: str, message: dict[str, Any], *, channel: str = "CGENERAL1"
    ) -> BoltResponse:
        return self.interactive(
            payloads.message_action(
                user=user,
                message=message,
                channel=channel,
                channel_name=channel.lower(),
                response_url=self.slack.new_response_url(),
            )
        )

    # looking at results -------------------------------------------------------------------

    def drain(self) -> None:
        """Deliver everything the outbox holds that is due now."""
        self.sender.drain()

    def last_view(self) -> dict[str, Any]:
        opened = self.slack.calls_to("views.open")
        assert opened, "no modal was opened"
        return dict(opened[-1].response["view"])

    def reports(self) -> list[Report]:
        with Session(self.engine) as session:
            return list(session.exec(select(Report).order_by(Report.id)))

    def report(self, report_id: int | None = None) -> Report:
        with Session(self.engine) as session:
            if report_id is None:
                found = session.exec(select(Report).order_by(Report.id.desc())).first()  # type: ignore[union-attr]
            else:
                found = session.get(Report, report_id)
            assert found is not None
            return found

    def card(self, report: Report) -> dict[str, Any]:
        """The card's message in the leadership channel, as Slack holds it now."""
        from feedbot.models import OutboxMessage

        with Session(self.engine) as session:
            entry = session.get(OutboxMessage, report.card_message_id)
            assert entry is not None and entry.result_ts, "the card was not delivered"
            ts = entry.result_ts
        return next(m for m in self.slack.messages(LEADERSHIP) if m["ts"] == ts)

    def thread(self, report: Report) -> list[str]:
        card = self.card(report)
        return [
            m["text"] for m in self.slack.messages(LEADERSHIP) if m.get("thread_ts") == card["ts"]
        ]

    def dms(self, user: str) -> list[str]:
        return [m["text"] for m in self.slack.dm_messages(user)]


def process_gone(pid: int) -> bool:
    """Whether a process has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")
