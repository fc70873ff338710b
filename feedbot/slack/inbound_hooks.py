"""`POST /hooks/reports/{reference}`: a ticket system comments on or resolves a report.

Served in HTTP mode only, next to Slack's requests. The call is signed like feedbot's own
webhook deliveries, with the secret of the webhook named in `X-Feedbot-Webhook-Id` (see
`feedbot.core.webhooks.verify`); unsigned, stale, mis-signed and replayed calls are refused
before the body is even parsed. A comment reaches the card's thread and the reporter as a
leader's reply; a resolution resolves the report as a leader would. Every answer is JSON:
`{"ok": true, ...}` or `{"ok": false, "error": code, "message": text}`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from feedbot.core import reports, triage, webhooks
from feedbot.core.config import RuntimeConfig
from feedbot.core.webhooks import Refused
from feedbot.errors import Conflict, FeedbotError
from feedbot.models import Webhook
from feedbot.slack import delivery, flows, homes
from feedbot.slack.deps import Deps
from feedbot.slack.text import escape, shorten

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from sqlmodel import Session

log = logging.getLogger(__name__)

PATH = "/hooks/reports/"
MAX_BODY_BYTES = 64 * 1024
"""A comment is at most 3,000 characters; anything far larger is not a comment."""
ACTIONS = ("comment", "resolve")


class InboundHooks:
    """The WSGI handler of `PATH`; `feedbot.slack.server` routes to it in HTTP mode."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, answer = self._handle(environ)
        except Refused as exc:
            sender = environ.get("REMOTE_ADDR") or "an unknown address"
            if exc.status == 401:
                log.info("refused a webhook call from %s: %s", sender, exc.code)
            status, answer = exc.status, {"ok": False, "error": exc.code, "message": str(exc)}
        body = json.dumps(answer).encode()
        phrase = HTTPStatus(status).phrase
        start_response(
            f"{status} {phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _handle(self, environ: WSGIEnvironment) -> tuple[int, dict[str, Any]]:
        if environ.get("REQUEST_METHOD") != "POST":
            raise Refused(405, "method_not_allowed", "Use POST.")
        reference = str(environ.get("PATH_INFO", ""))[len(PATH) :]
        raw = _read_body(environ)
        now = self.deps.clock()
        try:
            with self.deps.transaction() as session:
                webhook = webhooks.verify(
                    session,
                    webhook_id=str(environ.get("HTTP_X_FEEDBOT_WEBHOOK_ID") or ""),
                    timestamp=str(environ.get("HTTP_X_FEEDBOT_REQUEST_TIMESTAMP") or ""),
                    signature_header=str(environ.get("HTTP_X_FEEDBOT_SIGNATURE") or ""),
                    body=raw,
                    identities=self.deps.identities,
                    now=now,
                    wall_clock=time.time(),
                )
                action, text, author, named = _parse(raw)
                report = webhooks.find_report(session, reference)
                if named is not None and named.upper() != report.reference:
                    raise Refused(
                        400, "wrong_reference", "The body's `reference` is not the URL's report."
                    )
                try:
                    handle_call(
                        session,
                        self.deps,
                        webhook=webhook,
                        report=report,
                        action=action,
                        text=text,
                        author=author,
                    )
                except Conflict as exc:
                    raise Refused(409, exc.code or "conflict", str(exc)) from None
                except FeedbotError as exc:
                    raise Refused(400, exc.code or "invalid", str(exc)) from None
                answer = {"ok": True, "reference": report.reference, "status": str(report.status)}
        except IntegrityError:  # the same call, at the same moment, on another replica
            raise Refused(409, "replayed", "This call was received already.") from None
        return 200, answer


def _read_body(environ: WSGIEnvironment) -> bytes:
    declared = str(environ.get("CONTENT_LENGTH") or "")
    if declared and not (declared.isascii() and declared.isdigit()):
        raise Refused(400, "bad_request", "Content-Length is not a number.")
    if declared and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, "too_large", f"The body is over {MAX_BODY_BYTES} bytes.")
    stream = environ.get("wsgi.input")
    wanted = int(declared) if declared else MAX_BODY_BYTES + 1
    raw = bytes(stream.read(wanted)) if stream is not None and wanted else b""
    if len(raw) > MAX_BODY_BYTES:
        raise Refused(413, "too_large", f"The body is over {MAX_BODY_BYTES} bytes.")
    return raw


def _parse(raw: bytes) -> tuple[str, str, str, str | None]:
    """`action`, `text`, `author` and `reference` (optional: it binds a signed body to its
    report) from a verified body; `Refused` (400) saying what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "invalid_json", "The body is not JSON (UTF-8).") from None
    if not isinstance(data, dict):
        raise Refused(400, "invalid_json", "The body must be a JSON object.")
    action, text, author = data.get("action"), data.get("text"), data.get("author", "")
    if action not in ACTIONS:
        raise Refused(400, "invalid_action", f"`action` must be one of {', '.join(ACTIONS)}.")
    if not isinstance(text, str) or not text.strip():
        raise Refused(400, "missing_text", "`text` must be a non-empty string.")
    if len(text) > webhooks.MAX_COMMENT:
        raise Refused(400, "text_too_long", f"Keep `text` under {webhooks.MAX_COMMENT} characters.")
    if not isinstance(author, str):
        raise Refused(400, "invalid_author", "`author` must be a string.")
    reference = data.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise Refused(400, "wrong_reference", "`reference` must be a string like FB-1042.")
    return str(action), text, " ".join(author.split())[: webhooks.MAX_AUTHOR], reference


def handle_call(
    session: Session,
    deps: Deps,
    *,
    webhook: Webhook,
    report: Any,
    action: str,
    text: str,
    author: str,
) -> triage.Outcome:
    """The comment or resolution, and everything that follows it, as after a leader's."""
    config = deps.config()
    now = deps.clock()
    if action == "comment":
        outcome = webhooks.comment(
            session,
            webhook=webhook,
            report=report,
            text=text,
            config=config,
            now=now,
            identities=deps.identities,
        )
    else:
        outcome = webhooks.resolve(
            session,
            webhook=webhook,
            report=report,
            note=text,
            config=config,
            now=now,
            identities=deps.identities,
        )
    hook_triaged(session, deps, outcome=outcome, webhook=webhook, author=author, config=config)
    return outcome


def hook_triaged(
    session: Session,
    deps: Deps,
    *,
    outcome: triage.Outcome,
    webhook: Webhook,
    author: str,
    config: RuntimeConfig,
) -> None:
    """`flows.report_triaged`, with a thread line that says it came from the ticket system
    (and who there), and no event back to the webhook that made the change."""
    now = deps.clock()
    report = outcome.report
    delivery.refresh_card(session, report=report, config=config, now=now)
    said = next((n.text for n in outcome.notices if n.text), None) or report.resolution_note
    detail = shorten(reports.clean_text(said or ""), 1500)
    who = escape(author) if author else f"Webhook {webhook.id}"
    delivery.thread_line(
        session,
        report=report,
        config=config,
        action=f"hook_{outcome.action}",
        actor=who,
        detail=detail,
        now=now,
    )
    delivery.notify(
        session,
        notices=outcome.notices,
        locale_for=deps.locale_for,
        now=now,
        identities=deps.identities,
    )
    flows.reminders_follow(session, deps, outcome=outcome, config=config, now=now)
    webhooks.emit_outcome(session, outcome=outcome, config=config, now=now, exclude=webhook.id)
    homes.report_changed(session, deps, report)
