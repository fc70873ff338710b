"""Building the Bolt app: one place that wires settings, database and every feature.

Requests are processed before the response goes back (`process_before_response=True`): a
listener's database work is part of the answer, so if it fails Slack gets a 5xx and retries
instead of the report being lost. Listeners therefore do only fast work (database, one
`views.open`); everything sent to Slack afterwards goes through the outbox.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine

from feedbot.core.events import claim_event, release_event
from feedbot.db import TRANSIENT_ERRORS, session_scope
from feedbot.logs import log_context
from feedbot.metrics import SLACK_REQUEST_SECONDS, SLACK_REQUESTS
from feedbot.models import utcnow
from feedbot.settings import Settings
from feedbot.slack import delivery
from feedbot.slack.client import make_interactive_client
from feedbot.slack.deps import CONFIG_TTL, Deps
from feedbot.slack.i18n import t
from feedbot.slack.ids import REPLAYED, Action, Callback
from feedbot.slack.inbox import FAILURE, Inbox
from feedbot.slack.manifest import BOT_EVENTS
from feedbot.slack.views.notices import build_plain

log = logging.getLogger(__name__)


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
    inbox: Inbox | None = None,
) -> App:
    """The Bolt app with every feature registered. Nothing here talks to Slack yet.

    Pass `deps` to share them with the scheduler's jobs; otherwise they are built here.
    With an `inbox`, requests that change something are stored and acked at once, and
    handled by its workers (`feedbot.slack.inbox`); without one, inside the request."""
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
        webhooks,
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
    if inbox is not None:
        inbox.attach(app)
        app.answering = inbox.answering_request
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
        webhooks,
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

    answering: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    """Wraps the answer to each request (the inbox counts them, to let them go first)."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        started = time.perf_counter()
        with self.answering(), log_context(request="slack"):
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
    """Answer 200 to an event some process already took; see `feedbot.core.events`. An event
    replayed from the inbox was deduplicated when it was stored."""

    def middleware(
        body: dict[str, Any], context: BoltContext, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        if context.get(REPLAYED) is not None:
            return next()
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            with session_scope(deps.engine) as session:
                first = claim_event(session, event_id=event_id[:64], now=deps.clock())
            if not first:
                log.info("event %s already handled; ignoring this delivery", event_id)
                return BoltResponse(status=200, body="")
        return next()

    return middleware


FORM_METHODS = ("views.open", "views.push")


def _form_refused_as_busy(error: Exception) -> bool:
    """Slack refused to open a form for its rate limit (a workspace opens about 100 views a
    minute): in an outage, when everyone reports at once."""
    if not isinstance(error, SlackApiError) or error.response.get("error") != "ratelimited":
        return False
    return str(error.response.api_url or "").endswith(FORM_METHODS)


def _asked_for_report_form(body: dict[str, Any]) -> bool:
    """Whether the request asked for the report form: `/feedback`, the message shortcut or
    the Home's button. Only then does the answer suggest reporting without it."""
    if body.get("command"):
        from feedbot.slack.features.common import SUBCOMMANDS_ELSEWHERE, first_word

        return first_word(body) not in SUBCOMMANDS_ELSEWHERE  # not `/feedback admin`
    if body.get("callback_id") == Callback.REPORT_SHORTCUT:
        return True
    return any(a.get("action_id") == Action.OPEN_FORM for a in body.get("actions") or [])


def _tell_form_not_opened(deps: Deps, body: dict[str, Any]) -> None:
    """Tell the person who asked for a form that Slack did not open it, instead of leaving
    them with nothing: by DM, queued (Slack's limits are kept there too), and sealed, as any
    message about what someone did may concern a report they filed anonymously (the form
    may have been a reply to leadership about one)."""
    user = body.get("user_id") or (body.get("user") or {}).get("id")
    if not isinstance(user, str) or not user:
        return
    key = "error.form_busy" if _asked_for_report_form(body) else "error.form_busy_other"
    try:
        text = t(deps.locale_for(user), key)
        with deps.transaction() as session:
            delivery.dm(
                session,
                user=user,
                message=build_plain(text),
                now=deps.clock(),
                purpose="form_busy",
                sealed_by=deps.identities,
                about="form_busy",
                latest_only=True,
            )
    except Exception:
        log.exception("could not tell someone that their form did not open")


def _handle_error(deps: Deps) -> Callable[..., None]:
    """Unexpected failures, logged with context.

    A failure that may pass (the database or Slack unreachable) keeps Bolt's 500, so Slack
    retries the request; the event's claim is released so that retry is handled. Anything
    else is a request feedbot cannot handle however often it comes (a malformed payload, a
    bug): it is answered 200, so Slack does not send the same poison again.
    """

    def handler(
        error: Exception, body: dict[str, Any], request: BoltRequest, response: BoltResponse | None
    ) -> None:
        if request.context.get(REPLAYED) is not None:
            # The inbox worker rolls the work back and retries or sets the entry aside.
            request.context[FAILURE] = error
            return
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        kind = body.get("type") or body.get("command") or "request"
        if _form_refused_as_busy(error):
            log.warning("%s: Slack is rate limiting forms; telling whoever asked", kind)
            _tell_form_not_opened(deps, body)
            if response is not None:
                response.status, response.body = 200, ""
            return
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
