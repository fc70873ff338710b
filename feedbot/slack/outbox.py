"""Delivering the outbox to Slack.

One `OutboxSender` per process drains the shared queue (see `feedbot.core.outbox` for the
ordering and claim rules). Every post carries Slack message metadata naming its outbox entry;
when an attempt's outcome is unknown (the process died mid-call, or the connection broke after
sending), the sender looks for that metadata in the conversation before posting again, so a
message is never posted twice.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine
from sqlmodel import Session

from feedbot.core import outbox
from feedbot.models import OutboxMessage, OutboxStatus, utcnow

log = logging.getLogger(__name__)

METADATA_EVENT = "feedbot_outbox"
MAX_BACKOFF = timedelta(minutes=5)
RECHECK_PAGES = 20
"""How many pages (of 200 messages) of a conversation to search for an earlier attempt."""

UNCERTAIN_ERRORS = frozenset({"fatal_error", "internal_error", "request_timeout"})
"""Answers after which Slack may have posted the message anyway (its docs say so for
`fatal_error`); a 5xx counts too. The retry of a post then checks before posting again."""

PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_arguments",
        "invalid_metadata_format",
        "user_not_found",
        "users_not_found",
        "cannot_dm_bot",
        "user_disabled",
        "account_inactive",
        "cant_update_message",
        "edit_window_closed",
        "message_not_found",
        "thread_not_found",
        "restricted_action",
        "missing_scope",
        "not_allowed_token_type",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "team_access_not_granted",
    }
)


class DeliveryDeferred(Exception):
    """The entry cannot go yet (it waits for another entry); try again shortly."""


class ParentUndelivered(Exception):
    """The entry refers to a message that was never delivered, so it cannot be delivered."""


class OutboxSender:
    """Drains the outbox. `deliver_due()` is one pass (tests call it); `start()` loops it."""

    def __init__(
        self,
        engine: Engine,
        client: WebClient,
        *,
        clock: Callable[[], datetime] = utcnow,
        poll_interval: float = 1.0,
    ) -> None:
        self.engine = engine
        # A copy without slack_sdk's retry handlers: its default one re-sends a request after
        # a reset connection, which can post a message twice, and a rate-limit handler would
        # sleep here while other conversations wait. The outbox retries by itself.
        self.client = copy.copy(client)
        self.client.retry_handlers = []
        self.clock = clock
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dm_channels: dict[str, str] = {}

    def wake(self) -> None:
        """Deliver soon: called after a transaction queued something."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.deliver_due()
            except Exception:
                log.exception("outbox pass failed; retrying")
                delivered = 0
            if not delivered:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    def deliver_due(self, *, limit: int = 20) -> int:
        """Claim and attempt up to `limit` due entries; returns how many were attempted."""
        with Session(self.engine, expire_on_commit=False) as session:
            claims = outbox.claim_due(session, now=self.clock(), limit=limit)
        for claim in claims:
            self._deliver(claim.entry, recheck=claim.recheck)
        return len(claims)

    def drain(self, *, max_passes: int = 1000) -> None:
        """Deliver until nothing is due right now (tests and the CLI)."""
        for _ in range(max_passes):
            if not self.deliver_due():
                return

    def _deliver(self, entry: OutboxMessage, *, recheck: bool) -> None:
        assert entry.id is not None
        context = f"outbox #{entry.id} {entry.method} to {entry.conversation} ({entry.purpose})"
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                payload = self._prepare(session, entry)
                # Only a post is worth the search: an update or a second ephemeral is harmless.
                found = (
                    self._find_posted(entry, payload)
                    if recheck and entry.method == "chat.postMessage"
                    else None
                )
                ts: str | None
                if found is not None:
                    log.info("%s: already posted before a restart, not sending again", context)
                    channel, ts = found[0], found[1]
                else:
                    response = self.client.api_call(entry.method, json=payload)
                    channel = str(response.get("channel") or payload["channel"])
                    ts = response.get("ts") or response.get("message_ts")
                outbox.mark_sent(session, entry.id, channel=channel, ts=ts, now=self.clock())
            except DeliveryDeferred as exc:
                outbox.mark_retry(
                    session,
                    entry.id,
                    error=str(exc),
                    at=self.clock() + timedelta(seconds=1),
                    uncertain=entry.uncertain,
                )
            except ParentUndelivered as exc:
                log.error("%s: %s; giving up", context, exc)
                outbox.mark_failed(session, entry.id, error=str(exc), now=self.clock())
            except SlackApiError as exc:
                self._settle_api_error(session, entry, exc, context)
            except Exception as exc:  # network: the request may or may not have arrived
                delay = self._backoff(entry.attempts)
                log.warning("%s: %s; retrying in %ss", context, type(exc).__name__, delay.seconds)
                outbox.mark_retry(
                    session,
                    entry.id,
                    error=f"{type(exc).__name__}: {exc}",
                    at=self.clock() + delay,
                    uncertain=entry.method == "chat.postMessage",
                )
            session.commit()

    def _settle_api_error(
        self, session: Session, entry: OutboxMessage, exc: SlackApiError, context: str
    ) -> None:
        assert entry.id is not None
        status = exc.response.status_code
        error = str(exc.response.get("error") or f"HTTP {status}")
        if status == 429 or error == "ratelimited":
            retry_after = _retry_after(exc.response.headers)
            log.info("%s: rate limited, waiting %ss", context, retry_after)
            outbox.mark_retry(
                session,
                entry.id,
                error=error,
                at=self.clock() + timedelta(seconds=retry_after),
                uncertain=entry.uncertain,
            )
        elif error in PERMANENT_ERRORS or 400 <= status < 500:
            log.error("%s: Slack refused it permanently (%s); giving up", context, error)
            outbox.mark_failed(session, entry.id, error=error, now=self.clock())
        else:
            delay = self._backoff(entry.attempts)
            log.warning("%s: Slack answered %s; retrying in %ss", context, error, delay.seconds)
            maybe_posted = entry.method == "chat.postMessage" and (
                status >= 500 or error in UNCERTAIN_ERRORS
            )
            outbox.mark_retry(
                session,
                entry.id,
                error=error,
                at=self.clock() + delay,
                uncertain=entry.uncertain or maybe_posted,
            )

    @staticmethod
    def _backoff(attempts: int) -> timedelta:
        seconds = min(2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
        return timedelta(seconds=seconds * random.uniform(0.8, 1.2))

    def _prepare(self, session: Session, entry: OutboxMessage) -> dict[str, Any]:
        """The call's arguments, with the channel and the `ts` of referenced entries filled in."""
        payload: dict[str, Any] = json.loads(entry.payload)
        if entry.method == "views.publish":  # addressed by user_id; its conversation is "home:U…"
            return payload
        payload["channel"] = self._channel_for(entry.conversation)
        if entry.thread_of_id is not None:
            parent = self._settled_parent(session, entry.thread_of_id)
            payload["thread_ts"] = parent.result_ts
            payload["channel"] = parent.result_channel or payload["channel"]
        if entry.update_of_id is not None:
            parent = self._settled_parent(session, entry.update_of_id)
            payload["ts"] = parent.result_ts
            payload["channel"] = parent.result_channel or payload["channel"]
        if entry.method == "chat.postMessage":
            payload["metadata"] = {
                "event_type": METADATA_EVENT,
                "event_payload": {"outbox_id": entry.id},
            }
        return payload

    @staticmethod
    def _settled_parent(session: Session, parent_id: int) -> OutboxMessage:
        parent = session.get(OutboxMessage, parent_id)
        if parent is None or parent.status in (OutboxStatus.FAILED, OutboxStatus.SUPERSEDED):
            raise ParentUndelivered(f"outbox #{parent_id} was never delivered")
        if parent.status != OutboxStatus.SENT or not parent.result_ts:
            raise DeliveryDeferred(f"waiting for outbox #{parent_id}")
        return parent

    def _channel_for(self, conversation: str) -> str:
        """User IDs stand for the bot's DM with that user."""
        if conversation[:1] not in {"U", "W"}:
            return conversation
        if conversation not in self._dm_channels:
            response = self.client.conversations_open(users=conversation)
            self._dm_channels[conversation] = response["channel"]["id"]
        return self._dm_channels[conversation]

    def _find_posted(self, entry: OutboxMessage, payload: dict[str, Any]) -> tuple[str, str] | None:
        """The (channel, ts) of an earlier attempt of `entry` that Slack did accept, if any.

        Pages through the conversation (or thread) since the entry was queued: the retry may
        come long after the first attempt, behind more than one page of newer messages.
        """
        channel = payload["channel"]
        oldest = f"{(entry.created_at - timedelta(minutes=1)).timestamp():.6f}"
        cursor: str | None = None
        for _ in range(RECHECK_PAGES):
            if "thread_ts" in payload:
                response = self.client.conversations_replies(
                    channel=channel,
                    ts=payload["thread_ts"],
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            else:
                response = self.client.conversations_history(
                    channel=channel,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            messages: list[dict[str, Any]] = response.get("messages") or []
            for message in messages:
                metadata = message.get("metadata") or {}
                if (
                    metadata.get("event_type") == METADATA_EVENT
                    and (metadata.get("event_payload") or {}).get("outbox_id") == entry.id
                ):
                    return channel, str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        log.warning("outbox #%s: searched %s pages without finding it", entry.id, RECHECK_PAGES)
        return None


def _retry_after(headers: dict[str, Any]) -> float:
    """Seconds from a `Retry-After` header in any letter case; 1 if absent or unreadable."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(float(raw), 1.0)
            except (TypeError, ValueError):
                return 1.0
    return 1.0
