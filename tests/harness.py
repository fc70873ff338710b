"""Driving the real feedbot app the way Slack does: signed requests with real payload shapes.

`Bot` builds the app against the fake Slack, dispatches signed requests through
`App.dispatch` (or over HTTP, see `tests/test_http.py`) and delivers the outbox on demand, so
a test reads top to bottom: a person does something, then we look at what Slack received.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from slack_bolt import BoltResponse
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from feedbot.core import config as runtime_config
from feedbot.db import session_scope
from feedbot.models import Report
from feedbot.settings import Settings
from feedbot.slack.app import build_app, dispatch
from feedbot.slack.outbox import OutboxSender
from tests.fakeslack import FakeSlack

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
TOKEN = "xoxb-test-token"
TEAM = {"id": "T0TEAM", "domain": "frontline"}
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


_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):08d}"


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
            _env_file=None,
        )
        client = WebClient(token=TOKEN, base_url=self.slack.base_url)
        self.sender = OutboxSender(
            self.engine, WebClient(token=TOKEN, base_url=self.slack.base_url), clock=self.clock
        )
        # config_ttl=0: tests change configuration between requests and expect it at once.
        self.app = build_app(
            self.settings, self.engine, client=client, clock=self.clock, config_ttl=0
        )
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
                runtime_config.set_value(session, key=key, raw=raw, actor="test")

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
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM["id"],
            "team_domain": TEAM["domain"],
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/feedback",
            "text": text,
            "api_app_id": "A0FEEDBOT",
            "is_enterprise_install": "false",
            "response_url": self.slack.new_response_url(),
            "trigger_id": next_id("1337."),
        }
        return self.dispatch(urlencode(form), "application/x-www-form-urlencoded")

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> BoltResponse:
        envelope = {
            "token": "legacy-verification-token",
            "team_id": TEAM["id"],
            "api_app_id": "A0FEEDBOT",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or next_id("Ev"),
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
        **extra: Any,
    ) -> tuple[BoltResponse, str]:
        # The fake holds the message too, as Slack would, so replies can be threaded under it.
        ts = ts or self.slack.add_message(channel, text, user=user, thread_ts=thread_ts)
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": channel_type,
            "team": TEAM["id"],
            "client_msg_id": next_id("cm-"),
            **extra,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        if subtype:
            event["subtype"] = subtype
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
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "type": "button",
            "action_ts": str(time.time()),
        }
        if value is not None:
            action["value"] = value
        action.update(element)
        return self.interactive(
            {
                "type": "block_actions",
                "user": {
                    "id": user,
                    "username": user.lower(),
                    "name": user.lower(),
                    "team_id": TEAM["id"],
                },
                "api_app_id": "A0FEEDBOT",
                "token": "legacy-verification-token",
                "container": {
                    "type": "message",
                    "message_ts": message_ts,
                    "channel_id": channel,
                    "is_ephemeral": False,
                },
                "trigger_id": next_id("2448."),
                "team": TEAM,
                "channel": {"id": channel, "name": "leadership"},
                "message": {"type": "message", "ts": message_ts, "text": "card"},
                "response_url": self.slack.new_response_url(),
                "actions": [action],
            }
        )

    def press_card(self, user: str, action_id: str, report: Report) -> BoltResponse:
        return self.press(user, action_id, str(report.id), block_id=f"triage-{report.id}")

    def submit(
        self, user: str, view: dict[str, Any], values: dict[str, dict[str, Any]]
    ) -> BoltResponse:
        """Submit an opened modal with `values` keyed by block id (the element's state)."""
        submitted = dict(view)
        submitted["state"] = {
            "values": {block: {"value": state} for block, state in values.items()}
        }
        return self.interactive(
            {
                "type": "view_submission",
                "team": TEAM,
                "user": {
                    "id": user,
                    "username": user.lower(),
                    "name": user.lower(),
                    "team_id": TEAM["id"],
                },
                "api_app_id": "A0FEEDBOT",
                "token": "legacy-verification-token",
                "trigger_id": next_id("3559."),
                "view": submitted,
                "response_urls": [],
                "is_enterprise_install": False,
            }
        )

    def shortcut(
        self, user: str, message: dict[str, Any], *, channel: str = "CGENERAL1"
    ) -> BoltResponse:
        return self.interactive(
            {
                "type": "message_action",
                "token": "legacy-verification-token",
                "action_ts": str(time.time()),
                "team": TEAM,
                "user": {
                    "id": user,
                    "name": user.lower(),
                    "username": user.lower(),
                    "team_id": TEAM["id"],
                },
                "channel": {"id": channel, "name": "general"},
                "callback_id": "report_to_leadership",
                "trigger_id": next_id("4660."),
                "message_ts": message["ts"],
                "message": message,
                "response_url": self.slack.new_response_url(),
            }
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
