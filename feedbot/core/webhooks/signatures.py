"""Signatures in Slack's scheme, made for outgoing calls and checked on incoming ones."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col

from feedbot.core.identity import Identities
from feedbot.core.webhooks.receivers import secret_of
from feedbot.db import upsert_insert
from feedbot.models import (
    Webhook,
    WebhookNonce,
)

SIGNATURE_HEADER = "X-Feedbot-Signature"


TIMESTAMP_HEADER = "X-Feedbot-Request-Timestamp"


WEBHOOK_HEADER = "X-Feedbot-Webhook-Id"


MAX_REQUEST_AGE = 5 * 60
"""Seconds a signed call stays valid, either way."""


NONCE_KEPT = timedelta(seconds=2 * MAX_REQUEST_AGE)
"""How long an accepted signature is remembered: past that its timestamp is refused anyway."""


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
