"""Building the Bolt app: one place that wires settings, database and every feature.

Requests are processed before the response goes back (`process_before_response=True`): a
listener's database work is part of the answer, so if it fails Slack gets a 5xx and retries
instead of the report being lost. Listeners therefore do only fast work (database, one
`views.open`); everything sent to Slack afterwards goes through the outbox.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from threading import Lock
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlmodel import Session

from feedbot.core.config import RuntimeConfig, load_config
from feedbot.core.events import claim_event, release_event
from feedbot.core.identity import Identities
from feedbot.db import session_scope
from feedbot.logs import log_context
from feedbot.metrics import SLACK_REQUEST_SECONDS, SLACK_REQUESTS
from feedbot.models import Report, utcnow
from feedbot.settings import Settings
from feedbot.slack.access import SlackAccess
from feedbot.slack.client import make_interactive_client
from feedbot.slack.directory import ChannelDirectory, GroupDirectory, PeopleDirectory
from feedbot.slack.i18n import language_of, t
from feedbot.slack.manifest import BOT_EVENTS
from feedbot.slack.workspace import Workspace

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    SQLAlchemyTimeoutError,
    OSError,
)
"""Failures worth a retry by Slack: the database or the network, not the request itself."""

UNVERIFIED = "unverified"
"""The one metrics label for every request refused before its signature was verified."""

EVENT_KINDS = frozenset(f"event:{event.split('.')[0]}" for event in BOT_EVENTS)
"""The events feedbot subscribes to (`message.channels` and the like are all `message`)."""
PAYLOAD_KINDS = frozenset(
    {
        "block_actions",
        "view_submission",
        "view_closed",
        "shortcut",
        "message_action",
        "url_verification",
    }
)
REQUEST_KINDS = EVENT_KINDS | PAYLOAD_KINDS | {"event:other", "command", "other", "unreadable"}
"""Every value `request_kind` gives, and so every `kind` label in the metrics (with
UNVERIFIED): a fixed set, however many made-up types arrive."""

CONFIG_TTL = 2.0
"""Seconds a process trusts its copy of the runtime configuration: changes apply this fast."""
LOOKUP_BUDGET = 0.5
"""Seconds a request may wait for Slack to tell a person's language or timezone; a slower
answer is used from the next request on (Slack wants its answer within 3 s)."""


class ConfigCache:
    """The runtime configuration, re-read from the database at most every `CONFIG_TTL` s."""

    def __init__(self, engine: Engine, settings: Settings, ttl: float = CONFIG_TTL) -> None:
        self.engine = engine
        self.settings = settings
        self.ttl = ttl
        self._value: RuntimeConfig | None = None
        self._loaded_at = 0.0
        self._lock = Lock()

    def get(self) -> RuntimeConfig:
        """The configuration. While one thread re-reads it, the others keep the previous copy
        instead of queueing behind it: a request holding SQLite's write lock must never wait
        for a reader that waits for a connection that request's neighbours hold."""
        value = self._value
        if value is not None and time.monotonic() - self._loaded_at <= self.ttl:
            return value
        if not self._lock.acquire(blocking=value is None):
            assert value is not None
            return value
        try:
            with Session(self.engine) as session:
                fresh = load_config(
                    session,
                    bootstrap_admins=tuple(self.settings.feedbot_admins),
                    default_timezone=self.settings.feedbot_timezone,
                )
            self._value, self._loaded_at = fresh, time.monotonic()
            return fresh
        finally:
            self._lock.release()

    def cached(self) -> RuntimeConfig | None:
        return self._value

    def invalidate(self) -> None:
        self._loaded_at = 0.0


@dataclass
class Deps:
    """What listeners need, handed to each feature's `register`."""

    settings: Settings
    engine: Engine
    client: WebClient
    clock: Callable[[], datetime] = utcnow
    on_commit: Callable[[], None] = lambda: None
    config_ttl: float = CONFIG_TTL
    config_cache: ConfigCache = field(init=False)
    people: PeopleDirectory = field(init=False)
    groups: GroupDirectory = field(init=False)
    channels: ChannelDirectory = field(init=False)
    access: SlackAccess = field(init=False)
    _identities: Identities | None = field(init=False, default=None)
    workspace: Workspace = field(init=False)
    report_watchers: list[Callable[[Session, Report], None]] = field(default_factory=list)
    """Called inside the transaction whenever a report changed (the Home tab registers one)."""

    def __post_init__(self) -> None:
        self.config_cache = ConfigCache(self.engine, self.settings, ttl=self.config_ttl)
        self.people = PeopleDirectory(self.client, self.engine, self.clock)
        self.groups = GroupDirectory(self.client)
        self.channels = ChannelDirectory(self.client)
        self.access = SlackAccess(self.engine, [self.client], clock=self.clock)
        self.workspace = Workspace(self.client)

    @property
    def identities(self) -> Identities:
        """What seals anonymous people's ids (`ConfigurationError` without a secret key)."""
        if self._identities is None:
            self._identities = self.settings.identities()
        return self._identities

    def settings_language(self) -> str:
        """The default language, without the database (for when the database is the problem)."""
        cached = self.config_cache.cached()
        return cached.language if cached is not None else "en"

    def config(self) -> RuntimeConfig:
        """The runtime configuration, with the leaders' user group resolved to its members."""
        config = self.config_cache.get()
        if config.leaders_usergroup:
            members = self.groups.members(config.leaders_usergroup)
            config = replace(config, group_leaders=members)
        return config

    def report_changed(self, session: Session, report: Report) -> None:
        for watcher in self.report_watchers:
            watcher(session, report)

    def locale_for(self, user_id: str | None, *, budget: float | None = LOOKUP_BUDGET) -> str:
        """The language to address `user_id` in: their Slack locale, else the default. Waits
        at most `budget` seconds for Slack (None: as long as it takes, for jobs)."""
        default = self.config().language
        if not user_id:
            return default
        locale = self.people.profile(user_id, budget=budget).locale
        return language_of(locale) if locale else default

    def timezone_for(
        self, user_id: str | None, *, budget: float | None = LOOKUP_BUDGET
    ) -> ZoneInfo:
        """Where `user_id` is: their Slack timezone, else the workspace's."""
        config = self.config()
        name = self.people.profile(user_id, budget=budget).timezone if user_id else None
        try:
            return ZoneInfo(name) if name else config.zone
        except (ZoneInfoNotFoundError, ValueError):
            return config.zone

    @property
    def channel_locale(self) -> str:
        """Leadership channels read the workspace's default language."""
        return self.config().language

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work; the outbox sender is woken once it has committed."""
        with session_scope(self.engine) as session:
            yield session
        self.on_commit()


def build_app(
    settings: Settings,
    engine: Engine,
    *,
    client: WebClient | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_commit: Callable[[], None] = lambda: None,
    token_verification_enabled: bool = True,
    config_ttl: float = CONFIG_TTL,
    deps: Deps | None = None,
) -> App:
    """The Bolt app with every feature registered. Nothing here talks to Slack yet.

    Pass `deps` to share them with the scheduler's jobs; otherwise they are built here."""
    from feedbot.slack.features import (
        admin,
        conversation,
        digest,
        home,
        incidents,
        install,
        intake,
        reminders,
        report,
        triage,
    )

    if deps is None:
        deps = Deps(
            settings=settings,
            engine=engine,
            client=client or make_interactive_client(settings),
            clock=clock,
            on_commit=on_commit,
            config_ttl=config_ttl,
        )
    app = FeedbotApp(
        client=deps.client,
        signing_secret=settings.slack_signing_secret.get_secret_value() or "unset",
        process_before_response=True,
        token_verification_enabled=token_verification_enabled,
        name="feedbot",
    )
    logging.getLogger("slack_bolt.RequestVerification").addFilter(_WITHOUT_BODY)
    app.middleware(_deduplicate_events(deps))
    app.error(_handle_error(deps))
    for feature in (
        report,
        intake,
        conversation,
        triage,
        incidents,
        digest,
        reminders,
        admin,
        home,
        install,
    ):
        feature.register(app, deps)
    return app


def dispatch(
    app: App, *, body: str, headers: dict[str, Any], query: str | None = None
) -> BoltResponse:
    """Hand one HTTP request to Bolt, answering 400 for a payload neither Bolt nor feedbot can
    read (Bolt reads ids out of a payload before checking its signature, and builds listener
    arguments before any listener runs) instead of crashing into a 500. Failures of the
    database or network stay 500, so Slack retries those."""
    try:
        request = BoltRequest(body=body, query=query, headers=headers)
    except Exception as exc:
        log.warning("unreadable request (%s bytes) refused: %s", len(body), type(exc).__name__)
        SLACK_REQUESTS.labels("unreadable", "4xx").inc()
        return BoltResponse(status=400, body="")
    return app.dispatch(request)


class FeedbotApp(App):
    """Bolt's App, answering every request it is handed (over HTTP or Socket Mode) with a
    request id on its log lines, metrics, and no 500 for a request that cannot succeed."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        started = time.perf_counter()
        with log_context(request="slack"):
            try:
                response = super().dispatch(req)
            except TRANSIENT_ERRORS:
                log.exception("request failed on the database or network; Slack will retry it")
                response = BoltResponse(status=500, body="")
            except Exception:
                log.exception("malformed request refused")
                response = BoltResponse(status=400, body="")
        # Labelled by what the body says only once Bolt has verified its signature.
        kind = UNVERIFIED if response.status == 401 else request_kind(req.body)
        SLACK_REQUESTS.labels(kind, f"{response.status // 100}xx").inc()
        SLACK_REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)
        return response


def request_kind(body: dict[str, Any]) -> str:
    """The request's kind for metrics: one of REQUEST_KINDS, whatever the body holds."""
    if not isinstance(body, dict):
        return "other"
    kind = body.get("type")
    if kind == "event_callback":
        event = body.get("event")
        name = f"event:{event.get('type')}" if isinstance(event, dict) else ""
        return name if name in EVENT_KINDS else "event:other"
    if body.get("command"):
        return "command"
    return kind if isinstance(kind, str) and kind in PAYLOAD_KINDS else "other"


class _WithoutBody(logging.Filter):
    """Bolt logs the whole body of a request whose signature it refuses: anyone could fill the
    log with it, or forge log lines through newlines. Keep the line, drop the request."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg  # Bolt formats the line itself, body included
        if isinstance(message, str) and message.startswith("Invalid request signature detected"):
            record.msg, record.args = (
                "Invalid request signature detected (request not logged)",
                None,
            )
        return True


_WITHOUT_BODY = _WithoutBody()


def _deduplicate_events(deps: Deps) -> Callable[..., BoltResponse | None]:
    """Answer 200 to an event some process already took; see `feedbot.core.events`."""

    def middleware(body: dict[str, Any], next: Callable[[], BoltResponse]) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            with session_scope(deps.engine) as session:
                first = claim_event(session, event_id=event_id[:64], now=deps.clock())
            if not first:
                log.info("event %s already handled; ignoring this delivery", event_id)
                return BoltResponse(status=200, body="")
        return next()

    return middleware


def _handle_error(deps: Deps) -> Callable[..., None]:
    """Unexpected failures, logged with context.

    A failure that may pass (the database or Slack unreachable) keeps Bolt's 500, so Slack
    retries the request; the event's claim is released so that retry is handled. Anything
    else is a request feedbot cannot handle however often it comes (a malformed payload, a
    bug): it is answered 200, so Slack does not send the same poison again.
    """

    def handler(error: Exception, body: dict[str, Any], response: BoltResponse | None) -> None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        kind = body.get("type") or body.get("command") or "request"
        transient = isinstance(error, TRANSIENT_ERRORS)
        log.error(
            "failed to handle %s (event %s)%s",
            kind,
            event_id,
            "; Slack will retry" if transient else "",
            exc_info=error,
        )
        if not transient:
            if response is not None:
                response.status, response.body = 200, ""
            return
        if body.get("command") and response is not None:
            # Slack does not retry a command; tell the person instead of Slack's bare failure.
            language = deps.settings_language()
            response.status = 200
            response.body = json.dumps(
                {"response_type": "ephemeral", "text": t(language, "error.generic")}
            )
            response.headers["content-type"] = ["application/json;charset=utf-8"]
            return
        if isinstance(event_id, str):
            try:
                with session_scope(deps.engine) as session:
                    release_event(session, event_id=event_id[:64])
            except Exception:
                log.exception("could not release event %s for a retry", event_id)

    return handler
