"""Delivering webhook events from the outbox to their receivers.

Its own loop and threads, apart from the Slack sender: a receiver that hangs or fails holds
up only its own events (see `feedbot.core.webhooks`). Network failures, 408, 429 and 5xx are
retried with exponential backoff (a 429's or 503's `Retry-After` is honoured) for up to a
day; any other answer, or a day of failures, gives the event up. A receiver that keeps
failing is told to the admins by direct message, once per failing streak, and shown by
`feedbot outbox`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlmodel import Session

from feedbot.core import outbox, webhooks
from feedbot.core.outbox import CALL_TIMEOUT
from feedbot.db import session_scope
from feedbot.metrics import FAILED, RETRY, SENT, count_delivery
from feedbot.models import OutboxMessage, Webhook
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.i18n import t
from feedbot.slack.text import escape
from feedbot.slack.views.notices import build_plain

log = logging.getLogger(__name__)

TIMEOUT = CALL_TIMEOUT.total_seconds()
"""Seconds a receiver has to answer one POST (a dead process's claim is taken over once
its POST can no longer land: `feedbot.core.liveness`)."""
MAX_BACKOFF = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(days=1)
"""An event a receiver has not taken for this long is given up (and shows as failed)."""
ALERT_AFTER = 5
"""Failed attempts in a row of one event before the admins are told its receiver fails."""
THREADS = 4
HOOK_LOOK_GAP = 0.1
"""Seconds at least between two looks after a look that found nothing. Every commit wakes
this loop, though few queue a webhook event: a ticket system does not notice a tenth of a
second, and the working process looked fifty times a second for nothing under load."""


class WebhookSender:
    """`deliver_due()` is one serial pass (tests, the CLI); `start()` runs the loop."""

    def __init__(
        self,
        deps: Deps,
        *,
        poll_interval: float = 1.0,
        timeout: float = TIMEOUT,
        owner: str | None = None,
    ) -> None:
        self.deps = deps
        self.owner = owner
        """This process's name on its claims (`feedbot.core.liveness`): when the process
        dies, another takes its events over within seconds instead of after their lease."""
        self.engine = deps.engine
        self.clock = deps.clock
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._looked_everywhere = float("-inf")
        """When (`time.monotonic`) a look last read every webhook conversation (`_claim`)."""

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        with ThreadPoolExecutor(THREADS, thread_name_prefix="webhook-send") as pool:
            while not self._stop.is_set():
                claims = []
                try:
                    with session_scope(self.engine) as session:
                        claims = self._claim(session, limit=THREADS * 4, per_conversation=1)
                except Exception:
                    log.exception("webhook pass failed; retrying")
                for future in [pool.submit(self._guarded, c.entry) for c in claims]:
                    future.result()
                if not claims:
                    looked = time.monotonic()
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
                    self._stop.wait(looked + HOOK_LOOK_GAP - time.monotonic())

    def _claim(
        self,
        session: Session,
        *,
        limit: int,
        per_conversation: int | None = None,
        everywhere: bool = False,
    ) -> list[outbox.Claim]:
        """Webhook entries due now. This sender is woken by every commit, when Slack's
        backlog may be thousands of entries long, so a look reads the webhooks' own
        conversations only, and with no webhook nothing more. Once per `poll_interval` a
        look reads every webhook entry: an event queued for a webhook removed meanwhile
        (by a report that read the webhooks just before) is then found, and given up."""
        receivers: list[str] | None = None
        now = time.monotonic()
        if not everywhere and now - self._looked_everywhere < self.poll_interval:
            receivers = [webhooks.conversation_of(w) for w in webhooks.all_webhooks(session)]
        else:
            self._looked_everywhere = now
        return outbox.claim_due(
            session,
            now=self.clock(),
            limit=limit,
            per_conversation=per_conversation,
            only=receivers,
            method=webhooks.METHOD,
            owner=self.owner,
        )

    def _guarded(self, entry: OutboxMessage) -> None:
        try:
            self.deliver(entry)
        except Exception:  # its lease runs out and it is tried again
            log.exception("webhook delivery of outbox #%s failed", entry.id)

    def deliver_due(self, *, limit: int = 20) -> int:
        with Session(self.engine, expire_on_commit=False) as session:
            claims = self._claim(session, limit=limit, everywhere=True)
        for claim in claims:
            self.deliver(claim.entry)
        return len(claims)

    def drain(self, *, max_passes: int = 100) -> None:
        for _ in range(max_passes):
            if not self.deliver_due():
                return

    def deliver(self, entry: OutboxMessage) -> None:
        """One attempt of one claimed event, settled in the outbox."""
        assert entry.id is not None
        with Session(self.engine, expire_on_commit=False) as session:
            if not outbox.renew_lease(session, entry, now=self.clock()):
                return
            webhook_id = webhooks.webhook_id_of(entry.conversation)
            webhook = session.get(Webhook, webhook_id) if webhook_id is not None else None
            secret = (
                webhooks.secret_of(webhook, self.deps.identities) if webhook is not None else None
            )
            if webhook is None or secret is None:
                why = (
                    "the webhook was removed"
                    if webhook is None
                    else "its secret is sealed with another FEEDBOT_SECRET_KEY"
                )
                outbox.mark_failed(
                    session, entry.id, error=why, now=self.clock(), attempt=entry.attempts
                )
                session.commit()
                count_delivery(FAILED)
                return
            body = str(json.loads(entry.payload)["body"]).encode()
            headers = webhooks.signed_headers(secret, body, timestamp=int(time.time()))
            headers[webhooks.WEBHOOK_HEADER] = str(webhook.id)
            headers["X-Feedbot-Event"] = entry.purpose
            attempt = webhooks.post(webhook.url, body, headers, timeout=self.timeout)
            now = self.clock()
            context = f"webhook {webhook.id} ({entry.purpose}, outbox #{entry.id})"
            if attempt.ok:
                outbox.mark_sent(
                    session, entry.id, channel=None, ts=None, now=now, attempt=entry.attempts
                )
                outcome = SENT
                if webhook.failing_since is not None:
                    log.info("%s: the receiver answers again", context)
                webhook.failing_since = None
                webhook.alerted_at = None
            elif attempt.retry and now - entry.created_at < GIVE_UP_AFTER:
                delay = self._backoff(entry.attempts, attempt.retry_after)
                log.warning(
                    "%s: %s; retrying in %ss", context, attempt.error, int(delay.total_seconds())
                )
                outbox.mark_retry(
                    session,
                    entry.id,
                    error=attempt.error,
                    at=now + delay,
                    uncertain=False,
                    attempt=entry.attempts,
                )
                outcome = RETRY
                webhook.failing_since = webhook.failing_since or now
                if entry.attempts >= ALERT_AFTER:
                    self._alert(session, webhook, attempt.error)
            else:
                log.error("%s: %s; giving up on this event", context, attempt.error)
                outbox.mark_failed(
                    session, entry.id, error=attempt.error, now=now, attempt=entry.attempts
                )
                outcome = FAILED
                webhook.failing_since = webhook.failing_since or now
                self._alert(session, webhook, attempt.error)
            session.add(webhook)
            session.commit()
        count_delivery(outcome)
        self.deps.on_commit()

    @staticmethod
    def _backoff(attempts: int, retry_after: float | None) -> timedelta:
        seconds = min(2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
        seconds *= random.uniform(0.8, 1.2)
        if retry_after is not None:
            seconds = max(min(retry_after, MAX_BACKOFF.total_seconds()), 1.0)
        return timedelta(seconds=seconds)

    def _alert(self, session: Session, webhook: Webhook, error: str) -> None:
        """Tell the admins, once per failing streak, by direct message."""
        if webhook.alerted_at is not None:
            return
        webhook.alerted_at = self.clock()
        config = self.deps.config()
        for admin in dict.fromkeys([*config.admins, *config.bootstrap_admins]):
            text = t(
                self.deps.locale_for(admin, budget=None),
                "webhook.failing",
                id=webhook.id,
                url=escape(webhook.url),
                error=escape(error),
            )
            delivery.dm(
                session,
                user=admin,
                message=build_plain(text),
                now=self.clock(),
                purpose="webhook_failing",
            )
