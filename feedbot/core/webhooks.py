"""Outgoing webhooks: report events for ticket systems, signed, through the durable outbox.

An admin adds a webhook (a URL and the events it wants); every chosen event about a report
queues one outbox entry per webhook in the same transaction as the change, so an event is
sent if and only if the change was stored. Entries go to the conversation `webhook:{id}`,
one lane per report: a receiver gets each report's events in order, one failing receiver
waits alone, and Slack's messages never wait for any receiver (the Slack sender does not
claim webhook entries at all; `feedbot.slack.webhook_sender` delivers them).

A body names nobody: no reporter (named or anonymous), no *me too*, no leader, no customer
contact. Reports in a confidential category are never sent. The body is versioned
(`version`); fields may be added within a version, never removed or changed.

Signatures follow Slack's scheme: HMAC-SHA256 with the webhook's secret over
`v1:{timestamp}:{body}`, sent as `X-Feedbot-Signature: v1=<hex>` with
`X-Feedbot-Request-Timestamp`. A ticket system calling back signs the same way with the
same secret (see `verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from feedbot.core import outbox, reports, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.identity import Identities
from feedbot.db import upsert_insert
from feedbot.errors import InvalidValue, NotFound
from feedbot.models import (
    AuditEntry,
    OutboxMessage,
    OutboxStatus,
    Report,
    Webhook,
    WebhookNonce,
    utcnow,
)

VERSION = 1
METHOD = "webhook.post"
"""Outbox method of a webhook delivery; its payload's `body` is the exact JSON sent."""
CONVERSATION = "webhook:"

PING = "ping"
EVENTS: dict[str, str] = {
    "report.filed": "a report was filed",
    "report.acknowledged": "a leader (or a ticket system) acknowledged it",
    "report.claimed": "a leader took it on",
    "report.assigned": "a leader assigned it to someone",
    "report.replied": "leadership (or a ticket system) answered the reporter",
    "report.resolved": "it was resolved",
    "report.reopened": "it was reopened",
    "report.merged": "it was merged into another report (`report.duplicate_of`)",
    "report.customer_called": "the customer who needed a call back was called",
}
"""Every event a webhook can choose, and what it means."""

_ACTION_EVENTS = {
    "acknowledged": "report.acknowledged",
    "claimed": "report.claimed",
    "assigned": "report.assigned",
    "replied": "report.replied",
    "resolved": "report.resolved",
    "reopened": "report.reopened",
    "merged": "report.merged",
    "merged_by_reporter": "report.merged",
    "customer_called": "report.customer_called",
}

SIGNATURE_HEADER = "X-Feedbot-Signature"
TIMESTAMP_HEADER = "X-Feedbot-Request-Timestamp"
WEBHOOK_HEADER = "X-Feedbot-Webhook-Id"
MAX_REQUEST_AGE = 5 * 60
"""Seconds a signed call stays valid, either way."""
NONCE_KEPT = timedelta(seconds=2 * MAX_REQUEST_AGE)
"""How long an accepted signature is remembered: past that its timestamp is refused anyway."""
MAX_URL = 2000


def event_for(action: str) -> str | None:
    """The webhook event of a triage action (`triage.Outcome.action`), if it has one."""
    return _ACTION_EVENTS.get(action)


def parse_events(raw: str | Iterable[str]) -> list[str]:
    """Event names from `report.filed,report.resolved` (or a list); `InvalidValue` names any
    unknown one. `all` means every event."""
    names = [part.strip() for part in (raw.split(",") if isinstance(raw, str) else raw)]
    names = [name for name in names if name]
    if names == ["all"]:
        return list(EVENTS)
    unknown = [name for name in names if name not in EVENTS]
    if unknown or not names:
        raise InvalidValue(
            f"Unknown event {', '.join(unknown)}; choose from {', '.join(EVENTS)} (or all)."
            if unknown
            else f"Choose at least one event: {', '.join(EVENTS)} (or all).",
            field="events",
        )
    return list(dict.fromkeys(names))


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > MAX_URL:
        raise InvalidValue("Give the receiver's address as an http(s) URL.", field="url")
    return url


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Added:
    webhook: Webhook
    secret: str
    """Shown once, to whoever added it: only its seal is stored."""


def add(
    session: Session,
    *,
    url: str,
    events: str | Iterable[str],
    identities: Identities,
    actor: str | None,
    now: datetime,
) -> Added:
    secret = new_secret()
    webhook = Webhook(
        url=check_url(url),
        events=",".join(parse_events(events)),
        secret_sealed=identities.seal(secret),
        created_at=now,
        created_by=actor,
    )
    session.add(webhook)
    session.flush()
    _audit(
        session,
        actor=actor,
        now=now,
        old=None,
        new=f"{webhook.id}: {webhook.url} [{webhook.events}]",
    )
    return Added(webhook, secret)


def _audit(
    session: Session, *, actor: str | None, now: datetime, old: str | None, new: str | None
) -> None:
    """Adding and removing webhooks is in the audit log, like every settings change."""
    session.add(AuditEntry(at=now, actor=actor, key="webhooks", old_value=old, new_value=new))


def all_webhooks(session: Session) -> list[Webhook]:
    return list(session.exec(select(Webhook).order_by(col(Webhook.id))))


def get(session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id) if 0 < webhook_id < 2**31 else None
    if webhook is None:
        raise NotFound(f"There is no webhook {webhook_id}.", code="no_such_webhook")
    return webhook


def remove(session: Session, *, webhook_id: int, actor: str | None, now: datetime) -> Webhook:
    """Delete a webhook; events still waiting for it are given up (they show as failed)."""
    webhook = get(session, webhook_id)
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.conversation) == conversation_of(webhook),
            col(OutboxMessage.status).in_(outbox.UNFINISHED),
        )
        .values(
            status=OutboxStatus.FAILED,
            last_error="the webhook was removed",
            lease_until=None,
            sent_at=now,
        )
    )
    _audit(
        session,
        actor=actor,
        now=now,
        old=f"{webhook.id}: {webhook.url} [{webhook.events}]",
        new=None,
    )
    session.delete(webhook)
    session.flush()
    return webhook


def secret_of(webhook: Webhook, identities: Identities) -> str | None:
    """The secret; None when it was sealed with another `FEEDBOT_SECRET_KEY`."""
    return identities.open(webhook.secret_sealed)


def conversation_of(webhook: Webhook) -> str:
    return f"{CONVERSATION}{webhook.id}"


def webhook_id_of(conversation: str) -> int | None:
    raw = conversation.removeprefix(CONVERSATION)
    return int(raw) if conversation.startswith(CONVERSATION) and raw.isdigit() else None


def subscribed(webhook: Webhook, event: str) -> bool:
    return event == PING or event in webhook.events.split(",")


# --------------------------------------------------------------------------- bodies


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def report_fields(session: Session, report: Report) -> dict[str, Any]:
    """What a receiver learns of a report: the problem, never the people.

    No reporter (named or anonymous), owner, leader, *me too* or customer contact: a ticket
    system's data goes to more people, and for longer, than feedbot's own."""
    duplicate_of = session.get(Report, report.duplicate_of_id) if report.duplicate_of_id else None
    return {
        "reference": report.reference,
        "category": report.category,
        "urgency": str(report.urgency),
        "location": report.location,
        "status": str(report.status),
        "text": report.text,
        "customers_affected": report.customers_affected,
        "callback_requested": report.callback_requested,
        "me_too_count": report.me_too_count,
        "created_at": _when(report.created_at),
        "acknowledged_at": _when(report.acknowledged_at),
        "resolved_at": _when(report.resolved_at),
        "resolution_note": report.resolution_note,
        "duplicate_of": duplicate_of.reference if duplicate_of is not None else None,
    }


def build_body(
    *,
    event: str,
    report: dict[str, Any] | None,
    now: datetime,
    comment: str | None = None,
    delivery_id: str | None = None,
) -> str:
    """The JSON sent, as text (the signature covers exactly these bytes)."""
    body: dict[str, Any] = {
        "version": VERSION,
        "event": event,
        "id": delivery_id or uuid.uuid4().hex,
        "occurred_at": _when(now),
    }
    if report is not None:
        body["report"] = report
    if comment is not None:
        body["comment"] = {"text": comment}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def emit(
    session: Session,
    *,
    event: str,
    report: Report,
    config: RuntimeConfig,
    now: datetime,
    comment: str | None = None,
    exclude: int | None = None,
) -> list[OutboxMessage]:
    """Queue `event` about `report` for every webhook that chose it, in the caller's
    transaction. `comment` is an answer to the reporter (for `report.replied`); `exclude`
    the webhook that caused the change (it knows already)."""
    if event not in EVENTS or config.is_confidential(report.category):
        return []
    receivers = [w for w in all_webhooks(session) if subscribed(w, event) and w.id != exclude]
    if not receivers:
        return []
    session.flush()
    body = build_body(event=event, report=report_fields(session, report), now=now, comment=comment)
    return [
        outbox.enqueue(
            session,
            conversation=conversation_of(webhook),
            method=METHOD,
            payload={"body": body},
            purpose=event,
            lane=f"report:{report.id}",
            now=now,
        )
        for webhook in receivers
    ]


# --------------------------------------------------------------------------- signatures


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `v1:{timestamp}:{body}` with `secret`."""
    message = b"v1:" + timestamp.encode() + b":" + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, str(timestamp), body),
    }


class Refused(Exception):
    """An inbound call feedbot will not act on; `code` is its JSON error, `status` the HTTP one."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def verify(
    session: Session,
    *,
    webhook_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    identities: Identities,
    now: datetime,
    wall_clock: float,
) -> Webhook:
    """The webhook that signed this call, or `Refused`: unsigned, unknown webhook, a timestamp
    more than 5 minutes off `wall_clock`, a signature that does not match, or one already
    accepted (a replay). The signature is remembered in the caller's transaction, so a call
    whose action fails may be sent again."""
    if not webhook_id or not timestamp or not signature_header:
        raise Refused(
            401,
            "not_signed",
            f"Sign the call ({WEBHOOK_HEADER}, {TIMESTAMP_HEADER}, {SIGNATURE_HEADER}).",
        )
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Refused(401, "bad_timestamp", f"{TIMESTAMP_HEADER} must be Unix seconds.")
    if abs(wall_clock - int(timestamp)) > MAX_REQUEST_AGE:
        raise Refused(401, "stale", "The timestamp is more than 5 minutes off; sign it afresh.")
    mismatch = Refused(401, "bad_signature", "The signature does not match.")
    webhook = (
        session.get(Webhook, int(webhook_id))
        if webhook_id.isascii() and webhook_id.isdigit() and int(webhook_id) < 2**31
        else None
    )
    secret = secret_of(webhook, identities) if webhook is not None else None
    if webhook is None or secret is None:
        raise mismatch
    if not hmac.compare_digest(signature(secret, timestamp, body), signature_header.strip()):
        raise mismatch
    session.execute(delete(WebhookNonce).where(col(WebhookNonce.received_at) < now - NONCE_KEPT))
    digest = signature_header.strip().removeprefix("v1=")
    # RETURNING, not rowcount: psycopg reports -1 rows for an INSERT that did nothing.
    inserted = session.execute(
        upsert_insert(session, WebhookNonce)
        .values(signature=digest, webhook_id=webhook.id, received_at=now)
        .on_conflict_do_nothing(index_elements=["signature"])
        .returning(col(WebhookNonce.signature))
    ).first()
    if inserted is None:
        raise Refused(409, "replayed", "This call was received already.")
    return webhook


# --------------------------------------------------------------------------- calling back


MAX_COMMENT = triage.MAX_NOTE
MAX_AUTHOR = 80


def actor_of(webhook: Webhook) -> str:
    """How a ticket system appears on a report's timeline (never a Slack user id)."""
    return f"webhook:{webhook.id}"


def is_actor(actor: str) -> bool:
    """Whether a report's `resolved_by` (and the like) is a ticket system, not a person."""
    return actor.startswith("webhook:")


def _as_leader(config: RuntimeConfig, actor: str) -> RuntimeConfig:
    """The configuration in which `actor` may triage: a signed call from a webhook's receiver
    acts for leadership, with the webhook's secret as its credential."""
    return replace(config, group_leaders=config.group_leaders | {actor})


def comment(
    session: Session,
    *,
    webhook: Webhook,
    report: Report,
    text: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> triage.Outcome:
    """A ticket system's answer to the reporter, as a leader's reply."""
    actor = actor_of(webhook)
    return triage.reply(
        session,
        report=report,
        actor=actor,
        text=text,
        config=_as_leader(config, actor),
        now=now,
        identities=identities,
    )


def resolve(
    session: Session,
    *,
    webhook: Webhook,
    report: Report,
    note: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> triage.Outcome:
    """A ticket system resolving the report, as a leader would (the solution is not offered
    to colleagues: nobody in leadership chose to share it)."""
    actor = actor_of(webhook)
    return triage.resolve(
        session,
        report=report,
        actor=actor,
        note=note,
        config=_as_leader(config, actor),
        now=now,
        identities=identities,
        share=False,
    )


def find_report(session: Session, reference: str) -> Report:
    try:
        report = reports.find_report(session, reports.parse_reference(reference))
    except InvalidValue:
        report = None
    if report is None:
        raise Refused(404, "no_such_report", f"There is no report {reference[:20]}.")
    return report


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Attempt:
    """What one POST to a receiver came to."""

    ok: bool
    status: int | None
    error: str
    retry: bool
    """Worth trying again (network, 408, 429, 5xx); otherwise the receiver refused for good."""
    retry_after: float | None = None


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Attempt:
    """One POST; redirects are not followed (a receiver that moved must be updated)."""
    if urlsplit(url).scheme not in ("https", "http"):
        return Attempt(False, None, "not an http(s) URL", retry=False)
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (checked)
    for name, value in {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "feedbot-webhooks/1",
        **headers,
    }.items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(1024)
            return Attempt(True, response.status, "", retry=False)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry = status in (408, 429) or status >= 500
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed: update the webhook's URL)"
        return Attempt(False, status, error, retry, _retry_after(exc.headers.get("Retry-After")))
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Attempt(False, None, f"{type(exc).__name__}: {reason}"[:300], retry=True)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def _retry_after(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max((when - utcnow()).total_seconds(), 0.0)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Health:
    webhook: Webhook
    waiting: int
    failed: int
    last_error: str | None


def health(session: Session) -> list[Health]:
    """Each webhook with how many events wait for it, how many it never took, and its last
    error: what `feedbot outbox` and the admins' settings show."""
    rows = session.exec(
        select(OutboxMessage.conversation, OutboxMessage.status, func.count())
        .where(col(OutboxMessage.method) == METHOD)
        .group_by(col(OutboxMessage.conversation), col(OutboxMessage.status))
    ).all()
    counts: dict[tuple[str, str], int] = {(c, str(s)): n for c, s, n in rows}
    result = []
    for webhook in all_webhooks(session):
        conversation = conversation_of(webhook)
        last = session.exec(
            select(OutboxMessage.last_error)
            .where(
                col(OutboxMessage.conversation) == conversation,
                col(OutboxMessage.last_error).is_not(None),
            )
            .order_by(col(OutboxMessage.id).desc())
            .limit(1)
        ).first()
        waiting = sum(counts.get((conversation, str(s)), 0) for s in outbox.UNFINISHED)
        failed = counts.get((conversation, str(OutboxStatus.FAILED)), 0)
        result.append(Health(webhook, waiting, failed, last))
    return result


def describe(item: Health) -> str:
    """One line about a webhook's state, for people."""
    webhook = item.webhook
    state = "ok"
    if webhook.failing_since is not None:
        state = f"FAILING since {webhook.failing_since:%Y-%m-%d %H:%M} UTC"
        if item.last_error:
            state += f" ({item.last_error})"
    return (
        f"webhook {webhook.id} {webhook.url} [{webhook.events}]: {state}; "
        f"{item.waiting} waiting, {item.failed} given up"
    )


def emit_outcome(
    session: Session,
    *,
    outcome: triage.Outcome,
    config: RuntimeConfig,
    now: datetime,
    exclude: int | None = None,
) -> list[OutboxMessage]:
    """The event of a triage action, if it has one (an answer to the reporter carries its
    text as `comment`)."""
    event = event_for(outcome.action)
    if event is None:
        return []
    comment = next(
        (n.text for n in outcome.notices if n.kind == triage.NoticeKind.REPLIED and n.text),
        None,
    )
    return emit(
        session,
        event=event,
        report=outcome.report,
        config=config,
        now=now,
        comment=comment if event == "report.replied" else None,
        exclude=exclude,
    )
