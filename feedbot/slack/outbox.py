"""Delivering the outbox to Slack.

One `OutboxSender` per process drains the shared queue (see `feedbot.core.outbox` for the
ordering and claim rules). Every post carries Slack message metadata naming its outbox entry;
when an attempt's outcome is unknown (the process died mid-call, or the connection broke after
sending), the sender looks for that metadata in the conversation before posting again, so a
message is never posted twice.

The background loop (`start()`) claims due entries and hands them to a few sending threads, so
one slow call or a wait for one channel never holds up the others; order within a conversation
still holds, because the queue lets only one entry per conversation be claimed at a time. It
also paces posts: Slack accepts about one message per second per channel, so the next post to a
channel waits out that second instead of provoking a 429. Pacing is per process; a 429 from
posts of another replica is still honoured through `Retry-After`. `deliver_due()` and `drain()`
stay one serial, unpaced pass, for tests and the CLI.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from http.client import HTTPException
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine
from sqlmodel import Session

from feedbot.core import outbox, webhooks
from feedbot.core.config import RuntimeConfig
from feedbot.core.group_commit import GroupCommit
from feedbot.core.identity import SEALED, SEALED_TO, SEALED_USER, Identities
from feedbot.core.outbox import Claim, SentMark
from feedbot.logs import without_database_details
from feedbot.metrics import FAILED, RETRY, SENT, count_delivery
from feedbot.models import OutboxMessage, OutboxStatus, utcnow
from feedbot.slack import delivery, files, homes, web_api
from feedbot.slack.access import ACCESS_ERRORS, SlackAccess

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=5)
RENEWED_FOR_CALL = 0.5
"""Seconds after which a lease set by the claim, or renewed as delivery began, is renewed
again before the call: a dead sender's claim is taken over a while after its last renewal
(`feedbot.core.liveness`), which must be when its call began, give or take this."""

LOOK_AGAIN_MARGIN = timedelta(seconds=2)
"""After a dead sender's call can no longer land, how much later its post is looked for
once more: Slack's history may show a message a moment after it was posted, and the
moment the call began is known give or take a lease renewal's wait for SQLite's writer."""

MAX_ATTEMPTS = 5
"""Tries of a call Slack answers with an error we do not know (not a 5xx, not a network
failure, which are retried for as long as an outage lasts) before giving up on it: one bad
message must not block its conversation for ever."""

SENDING_THREADS = 8
"""Calls to Slack in flight at once from the background loop (each to another conversation)."""
POST_INTERVAL = 1.0
"""Seconds between two posts to one conversation: Slack's limit for `chat.postMessage`."""
AHEAD_PER_CONVERSATION = 2
"""Entries of one conversation the background loop holds at once (the one going out, and
the next): what arrives meanwhile competes for the turn after, by its turn, not by arrival."""
MAX_HELD = 200
"""Most entries the background loop holds claimed (waiting for their channel or a thread)."""
LOOK_LIMIT = 50
"""Most entries one look claims."""
LOOK_GAP = 0.02
"""Seconds at least between two looks for due entries, unless a look read all it could take
(`LOOK_LIMIT`, or as many as the loop has room for): then more may be due, and the next
follows at once. Every commit that queues something and every call that ends wakes the
loop, hundreds of times a second under load, and each look reads the queue: wake-ups that
come within this are answered by one look, and a look that took fewer than it could is not
followed by one that finds nothing. An entry waits this much longer at most."""


class DeliveryDeferred(Exception):
    """The entry cannot go yet (it waits for another entry); try again shortly."""


class SlackAsksToWait(Exception):
    """Slack answered a method this entry calls with 429 less than its `Retry-After` ago."""

    def __init__(self, method: str, until: datetime) -> None:
        super().__init__(f"{method} is rate limited until {until:%H:%M:%S}")
        self.until = until


class NothingToSend(Exception):
    """The entry's message is drawn when it is sent, and what it showed no longer exists."""


class ParentUndelivered(Exception):
    """The entry refers to a message that was never delivered, so it cannot be delivered."""


class OutboxSender:
    """Drains the outbox. `deliver_due()` is one serial pass (tests call it); `start()` runs the
    background loop with `threads` sending threads and `post_interval` pacing per conversation.
    """

    def __init__(
        self,
        engine: Engine,
        client: WebClient,
        *,
        clock: Callable[[], datetime] = utcnow,
        poll_interval: float = 1.0,
        threads: int = SENDING_THREADS,
        post_interval: float = POST_INTERVAL,
        access: SlackAccess | None = None,
        identities: Identities | None = None,
        owner: str | None = None,
        config: Callable[[Session], RuntimeConfig] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        """The runtime configuration as a session sees it: the roles a Home is drawn for."""
        self.owner = owner
        """This process's name on its claims (`feedbot.core.liveness`), if it has one."""
        # A copy without slack_sdk's retry handlers: its default one re-sends a request after
        # a reset connection, which can post a message twice, and a rate-limit handler would
        # sleep here while other conversations wait. The outbox retries by itself.
        self.client = copy.copy(client)
        self.client.retry_handlers = []
        self.access = access
        self.identities = identities
        if access is not None:
            access.add_client(self.client)
        self.clock = clock
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dm_channels: dict[str, str] = {}
        self.threads = max(threads, 1)
        self.post_interval = post_interval
        self._ready: queue.SimpleQueue[tuple[Claim, float] | None] = queue.SimpleQueue()
        """Claims to send now, each with when (monotonic) its lease was set."""
        self._workers: list[threading.Thread] = []
        self._held = 0
        self._held_in: Counter[str] = Counter()
        """Claims held per conversation: a conversation with enough waits for the next pass."""
        self._held_lock = threading.Lock()
        self._last_post: dict[str, float] = {}
        self._next_slot: dict[str, float] = {}
        """Conversation -> the earliest moment a post held now may take there."""
        """Conversation -> `time.monotonic()` of this process's last accepted post there."""
        self._sent: GroupCommit[SentMark, None] = GroupCommit(self._record_sent)
        """Sending threads whose calls ended meanwhile record them in one transaction."""
        self._waits: dict[str, datetime] = {}
        """Web API method -> until when Slack asked for no more of its calls (a 429's
        `Retry-After`). Slack counts each method apart: one method's wait holds back only
        the entries that call it, instead of each of them spending a call on a 429."""
        self._waits_lock = threading.Lock()

    def wake(self) -> None:
        """Deliver soon: called after a transaction queued something."""
        self._wake.set()

    def start(self) -> None:
        self._workers = [
            threading.Thread(target=self._send, name=f"outbox-send-{n}", daemon=True)
            for n in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; calls in flight finish, and claims not yet sent are put back."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0))

    def _run(self) -> None:
        """Claim due entries and pass each to the sending threads once its channel is free."""
        # (when it may go, tie-break, claim, when its lease was set)
        waiting: list[tuple[float, int, Claim, float]] = []
        order = itertools.count()
        while not self._stop.is_set():
            claims: list[Claim] = []
            full = False  # the look read all it could take: more may be due
            room = MAX_HELD - self._held
            wanted = min(room, LOOK_LIMIT)
            if room > 0 and not self._paused():
                with self._held_lock:
                    busy = {c for c, n in self._held_in.items() if n >= AHEAD_PER_CONVERSATION}
                asked = time.monotonic()  # the leases run from about now
                try:
                    with Session(self.engine, expire_on_commit=False) as session:
                        found = outbox.claim_due(
                            session,
                            now=self.clock(),
                            limit=wanted,
                            per_conversation=AHEAD_PER_CONVERSATION,
                            skip=busy,
                            except_methods=self._not_now(),
                            owner=self.owner,
                        )
                    claims, full = found, found.read >= wanted
                except Exception:
                    log.exception("outbox pass failed; retrying")
            with self._held_lock:
                self._held += len(claims)
                for claim in claims:
                    self._held_in[claim.entry.conversation] += 1
            for claim in claims:
                heapq.heappush(waiting, (self._may_go_at(claim.entry), next(order), claim, asked))
            now = time.monotonic()
            while waiting and waiting[0][0] <= now:
                _, _, claim, leased = heapq.heappop(waiting)
                self._ready.put((claim, leased))
            if full:
                continue  # more may be due at once
            timeout = self.poll_interval
            if waiting:
                timeout = min(timeout, waiting[0][0] - now)
            looked = now
            self._wake.wait(timeout)
            self._wake.clear()
            self._stop.wait(looked + LOOK_GAP - time.monotonic())
        for _, _, claim, _ in waiting:
            self._release(claim)
        for _ in self._workers:
            self._ready.put(None)

    def _may_go_at(self, entry: OutboxMessage) -> float:
        """When `entry` may be sent (monotonic): a post waits out its channel's interval, and
        the posts of several lanes of one channel, held at once, each get a slot of their own."""
        if entry.method != "chat.postMessage" or self.post_interval <= 0:
            return 0.0
        last = self._last_post.get(entry.conversation)
        slot = max(
            time.monotonic(),
            last + self.post_interval if last is not None else 0.0,
            self._next_slot.get(entry.conversation, 0.0),
        )
        self._next_slot[entry.conversation] = slot + self.post_interval
        return slot

    def _keep_pace(self, conversation: str) -> bool:
        """Wait out the channel's interval since its last post actually went (a slot was
        planned when the post was claimed; the one before may have gone out late). True if
        it waited."""
        last = self._last_post.get(conversation)
        if last is not None and self.post_interval > 0:
            wait = last + self.post_interval - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
                return True
        return False

    def _send(self) -> None:
        """A sending thread: delivers claims until `_run` hands it None."""
        while (ready := self._ready.get()) is not None:
            claim, leased = ready
            try:
                if self._stop.is_set():
                    self._release(claim)
                else:
                    self._deliver(claim.entry, recheck=claim.recheck, paced=True, leased=leased)
            except Exception:
                # Outside the delivery's own handling: the database refused the lease's
                # renewal or the outcome's write. Retried after the usual pause rather than
                # when the lease runs out, a minute later; Slack may have taken the call.
                log.exception("outbox #%s: delivery failed; putting it back", claim.entry.id)
                self._release(
                    claim,
                    why="the database failed around the delivery",
                    after=self._backoff(claim.entry.attempts),
                    uncertain=True,
                )
            finally:
                with self._held_lock:
                    self._held -= 1
                    self._held_in[claim.entry.conversation] -= 1
                    if self._held_in[claim.entry.conversation] <= 0:
                        del self._held_in[claim.entry.conversation]
                self._wake.set()  # its conversation's next entry may be due now

    def _release(
        self,
        claim: Claim,
        *,
        why: str = "not sent: the sender stopped",
        after: timedelta = timedelta(0),
        uncertain: bool | None = None,
    ) -> None:
        """Put back a claim: by default one never attempted (the sender is stopping). A
        claim that may have reached Slack is put back `uncertain`, to be looked for first.
        One whose outcome was recorded meanwhile (sent, given up) stays as it is."""
        assert claim.entry.id is not None
        try:
            with Session(self.engine) as session:
                outbox.mark_retry(
                    session,
                    claim.entry.id,
                    error=why,
                    at=self.clock() + after,
                    uncertain=claim.entry.uncertain if uncertain is None else uncertain,
                    attempt=claim.entry.attempts,
                    still_claimed=True,
                )
                session.commit()
        except Exception:  # its lease runs out and another sender takes it, with a recheck
            log.warning("outbox #%s: could not put it back", claim.entry.id, exc_info=True)

    def _record_sent(self, marks: Sequence[SentMark]) -> list[None]:
        """Mark entries sent, those of every sending thread that waits, in one transaction:
        on SQLite each transaction waits for the one writer, which the inbox's worker holds
        for a whole report, so the calls that end meanwhile are recorded together."""
        with Session(self.engine) as session:
            outbox.mark_sent_together(session, marks)
            session.commit()
        return [None] * len(marks)

    def _paused(self) -> bool:
        """Slack refuses this process's token: claim nothing, keep everything queued."""
        return self.access is not None and self.access.paused()

    def _wait_for(self, method: str, seconds: float) -> None:
        """Slack answered `method` with 429: call it again `seconds` from now, not before."""
        until = self.clock() + timedelta(seconds=seconds)
        with self._waits_lock:
            self._waits[method] = max(self._waits.get(method, until), until)

    def _waiting(self, methods: Sequence[str]) -> tuple[str, datetime] | None:
        """The first of `methods` Slack still asks to wait for, and until when."""
        now = self.clock()
        with self._waits_lock:
            for method in methods:
                until = self._waits.get(method)
                if until is not None and until > now:
                    return method, until
        return None

    def _not_now(self) -> set[str]:
        """Outbox methods not to claim: webhooks (they have a sender of their own) and those
        that would call a method Slack asks to wait for."""
        now = self.clock()
        with self._waits_lock:
            for method in [method for method, until in self._waits.items() if until <= now]:
                del self._waits[method]
            waiting = set(self._waits)
        if not waiting:
            return {webhooks.METHOD}
        held = {
            method
            for method in (web_api.FILE_UPLOAD, files.COPY_FILE, web_api.REMOVE_COPIES)
            if waiting.intersection(web_api.methods_called(method))
        }
        return {webhooks.METHOD, *waiting, *held}

    def _hold_if_waiting(self, methods: Sequence[str]) -> None:
        found = self._waiting(methods)
        if found is not None:
            raise SlackAsksToWait(*found)

    def deliver_due(self, *, limit: int = 20) -> int:
        """Claim and attempt up to `limit` due entries; returns how many were attempted."""
        if self._paused():
            return 0
        with Session(self.engine, expire_on_commit=False) as session:
            claims = outbox.claim_due(
                session, now=self.clock(), limit=limit, except_methods=self._not_now()
            )
        for claim in claims:
            self._deliver(claim.entry, recheck=claim.recheck)
        return len(claims)

    def drain(self, *, max_passes: int = 1000) -> None:
        """Deliver until nothing is due right now (tests and the CLI)."""
        for _ in range(max_passes):
            if not self.deliver_due():
                return

    def _deliver(
        self,
        entry: OutboxMessage,
        *,
        recheck: bool,
        paced: bool = False,
        leased: float | None = None,
    ) -> None:
        """Send one claimed entry. `leased` is when (monotonic) its claim set its lease: a
        lease that new is not renewed again as delivery begins (one write less per message,
        and SQLite has one writer), unless the call comes later than `RENEWED_FOR_CALL`."""
        assert entry.id is not None
        context = f"outbox #{entry.id} {entry.method} to {entry.conversation} ({entry.purpose})"
        outcome: str | None = None
        # A call Slack took: recorded once this session ends, with other threads' calls.
        sent: SentMark | None = None
        with Session(self.engine, expire_on_commit=False) as session:
            fresh = leased is not None and time.monotonic() - leased <= RENEWED_FOR_CALL
            # Timed from before the write: the lease holds the time asked for, and waiting
            # for SQLite's write turn comes after it.
            renewed = leased if fresh and leased is not None else time.monotonic()
            if not fresh and not outbox.renew_lease(session, entry, now=self.clock()):
                log.info("%s: its lease ran out and another sender took it; not sending", context)
                return
            try:
                # Claimed before Slack asked to wait (or by a serial pass): put back unsent.
                self._hold_if_waiting(web_api.methods_called(entry.method))
                payload = self._prepare(session, entry)
                post = entry.method == "chat.postMessage"
                # Only a post is worth the search: an update or a second ephemeral is harmless.
                rechecking = recheck and post
                if rechecking:
                    self._hold_if_waiting(web_api.RECHECK_METHODS)
                found = web_api.find_posted(self.client, entry, payload) if rechecking else None
                channel: str | None
                ts: str | None
                if found is not None:
                    log.info("%s: already posted before a restart, not sending again", context)
                    channel, ts = found[0], found[1]
                else:
                    waited = rechecking
                    if paced and post:
                        waited = self._keep_pace(entry.conversation) or waited
                        if self._stop.is_set():  # woken from the pause: put back, not sent
                            outbox.mark_retry(
                                session,
                                entry.id,
                                error="not sent: the sender stopped",
                                at=self.clock(),
                                uncertain=entry.uncertain,
                                attempt=entry.attempts,
                                still_claimed=True,
                            )
                            session.commit()
                            return
                    # A claim taken over ends a while after its last renewal (see
                    # `feedbot.core.liveness`): renewed again after a search, a pause or a slow
                    # preparation (opening a DM), it still covers the call itself.
                    waited = waited or time.monotonic() - renewed > RENEWED_FOR_CALL
                    if waited and not outbox.renew_lease(session, entry, now=self.clock()):
                        log.info("%s: another sender took it meanwhile; not sending", context)
                        return
                    response = self._call(entry, payload, context)
                    if post:
                        self._last_post[entry.conversation] = time.monotonic()
                    # views.publish answers without a channel, and is addressed without one.
                    channel = response.get("channel") or payload.get("channel")
                    ts = response.get("ts") or response.get("message_ts")
                if post:
                    self._look_again_for_copies(session, entry)
                if entry.conversation.startswith(SEALED):
                    channel = None  # a DM's channel names its person
                mark = SentMark(entry.id, entry.attempts, channel, ts, self.clock())
                if entry.method == files.COPY_FILE and found is None:
                    # The copy's own records commit with its mark.
                    outbox.mark_sent_together(session, [mark])
                    files.after_copy(session, entry, response, now=self.clock())
                else:
                    sent = mark
                outcome = SENT
            except DeliveryDeferred as exc:
                outbox.mark_retry(
                    session,
                    entry.id,
                    attempt=entry.attempts,
                    error=str(exc),
                    at=self.clock() + timedelta(seconds=1),
                    uncertain=entry.uncertain,
                )
            except SlackAsksToWait as exc:
                log.info("%s: not sent now: %s", context, exc)
                outbox.mark_retry(
                    session,
                    entry.id,
                    attempt=entry.attempts,
                    error=str(exc),
                    at=exc.until,
                    uncertain=entry.uncertain,
                )
            except NothingToSend as exc:
                log.info("%s: %s; not sending", context, exc)
                outbox.mark_superseded(
                    session, entry.id, why=str(exc), now=self.clock(), attempt=entry.attempts
                )
            except ParentUndelivered as exc:
                log.error("%s: %s; giving up", context, exc)
                outcome = self._give_up(session, entry, error=str(exc))
            except SlackApiError as exc:
                outcome = self._settle_api_error(session, entry, exc, context)
            except Exception as exc:  # the request may or may not have arrived
                delay = self._backoff(entry.attempts)
                if isinstance(exc, OSError | HTTPException):  # timeouts, resets, refusals
                    log.warning("%s: %s; retrying in %ss", context, exc, delay.seconds)
                else:  # a bug, not the network: show where, but keep the entry queued
                    log.exception("%s: unexpected failure; retrying in %ss", context, delay.seconds)
                outbox.mark_retry(
                    session,
                    entry.id,
                    attempt=entry.attempts,
                    error=without_database_details(f"{type(exc).__name__}: {exc}", exc),
                    at=self.clock() + delay,
                    uncertain=entry.method == "chat.postMessage",
                )
                outcome = RETRY
            session.commit()
        if sent is not None:
            # Raised, the database failed: `_send` puts the entry back, uncertain.
            self._sent.submit(sent)
        if outcome is not None and entry.method != web_api.REMOVE_COPIES:  # not a delivery
            count_delivery(outcome)

    def _look_again_for_copies(self, session: Session, entry: OutboxMessage) -> None:
        """A dead sender's post, taken over before its call could time out: that call may
        still land after this one went out (or after it was found). Once it no longer can,
        every copy but the one recorded is deleted (`web_api.REMOVE_COPIES`); queued with
        this commit. Also after that moment: the post sent again may itself have timed out
        and landed, and the retry's recheck then found two."""
        if entry.may_land_until is None:
            return
        stored = json.loads(entry.payload)
        thread = (
            session.get(OutboxMessage, entry.thread_of_id)
            if entry.thread_of_id is not None
            else None
        )
        outbox.enqueue(
            session,
            conversation=entry.conversation,
            lane=f"copies of {entry.id}",
            method=web_api.REMOVE_COPIES,
            payload={
                "copies_of": entry.id,
                "since": entry.created_at.timestamp(),
                # Where it went: a thread given as such (a reply under someone's message), a
                # person by their seal.
                **{key: stored[key] for key in ("thread_ts", SEALED_TO) if key in stored},
            },
            purpose="copies",
            thread_of=thread,
            due=max(entry.may_land_until, self.clock()) + LOOK_AGAIN_MARGIN,
            now=self.clock(),
        )

    def _call(self, entry: OutboxMessage, payload: dict[str, Any], context: str) -> Any:
        """Slack's answer to one entry's call. An answer to a command goes to its
        `response_url` while Slack takes it (5 posts within 30 minutes of the command); one
        that waited longer (every replica was down, say), or that the URL refuses, comes
        by DM instead: the person still hears what became of what they sent."""
        if entry.method != web_api.RESPONSE_URL:
            return web_api.call_api(self.client, entry.method, payload)
        if self.clock() - entry.created_at < web_api.RESPONSE_URL_LIFETIME:
            try:
                return web_api.call_api(self.client, entry.method, payload)
            except SlackApiError as exc:
                status = exc.response.status_code
                refused = 400 <= status < 500 and status != 429
                # What Slack answers past its limit is not documented: a 4xx, or these words.
                said = str(exc.response.get("error") or "")
                if not (refused or "expired_url" in said or "used_url" in said):
                    raise
                log.info("%s: the response_url refused it (%s); by DM instead", context, status)
        else:
            log.info("%s: its response_url has expired; by DM instead", context)
        user = entry.conversation.removeprefix(web_api.ANSWER_PREFIX)
        if user[:1] not in {"U", "W"}:
            raise ParentUndelivered("the answer's response_url expired, and it names nobody")
        dm = web_api.as_message(payload) | {"channel": self._channel_for(user)}
        return self.client.chat_postMessage(**dm)

    def _settle_api_error(
        self, session: Session, entry: OutboxMessage, exc: SlackApiError, context: str
    ) -> str:
        """Settle a call Slack answered with an error; returns the outcome (`RETRY`...)."""
        assert entry.id is not None
        status = exc.response.status_code
        error = str(exc.response.get("error") or f"HTTP {status}")
        if error == "missing_scope" and exc.response.get("needed"):
            # What an admin must grant: reinstalling with the current manifest does it.
            error = f"missing_scope ({exc.response.get('needed')}; reinstall the app)"
        if error in ACCESS_ERRORS:
            log.warning("%s: Slack refused the bot token (%s); kept for later", context, error)
            outbox.mark_retry(
                session,
                entry.id,
                attempt=entry.attempts,
                error=error,
                at=self.clock(),
                uncertain=entry.uncertain,
            )
            if self.access is not None:
                session.commit()
                self.access.revoked(f"Slack answered {error}")
            return RETRY
        if status == 429 or error == "ratelimited":
            retry_after = web_api.retry_after(exc.response.headers)
            limited = web_api.limited_method(self.client, exc)
            log.info("%s: %s rate limited, waiting %ss", context, limited or "", retry_after)
            # A post's limit is its channel's (Slack's special tier), which the entry's own
            # retry and the pacing cover; other methods are limited for the whole workspace.
            if limited is not None and limited != "chat.postMessage":
                self._wait_for(limited, retry_after)
            outbox.mark_retry(
                session,
                entry.id,
                attempt=entry.attempts,
                error=error,
                at=self.clock() + timedelta(seconds=retry_after),
                uncertain=entry.uncertain,
            )
            return RETRY
        if (
            error.split(" ")[0] in web_api.PERMANENT_ERRORS
            or 400 <= status < 500
            or (
                status < 500
                and error not in web_api.UNCERTAIN_ERRORS
                and entry.attempts >= MAX_ATTEMPTS
            )
        ):
            log.error("%s: Slack refused it permanently (%s); giving up", context, error)
            return self._give_up(session, entry, error=error)
        delay = self._backoff(entry.attempts)
        log.warning("%s: Slack answered %s; retrying in %ss", context, error, delay.seconds)
        maybe_posted = entry.method == "chat.postMessage" and (
            status >= 500 or error in web_api.UNCERTAIN_ERRORS
        )
        outbox.mark_retry(
            session,
            entry.id,
            attempt=entry.attempts,
            error=error,
            at=self.clock() + delay,
            uncertain=entry.uncertain or maybe_posted,
        )
        return RETRY

    def _give_up(self, session: Session, entry: OutboxMessage, *, error: str) -> str:
        assert entry.id is not None
        outbox.mark_failed(session, entry.id, error=error, now=self.clock(), attempt=entry.attempts)
        if entry.method == files.COPY_FILE:
            files.copy_given_up(session, entry, error=error, now=self.clock())
        return FAILED

    @staticmethod
    def _backoff(attempts: int) -> timedelta:
        seconds = min(2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
        return timedelta(seconds=seconds * random.uniform(0.8, 1.2))

    def _prepare(self, session: Session, entry: OutboxMessage) -> dict[str, Any]:
        """The call's arguments, with the channel and the `ts` of referenced entries filled in,
        and people known only by a seal opened (see `feedbot.core.identity`).

        The messages it refers to are checked first: a message drawn when it is sent (an
        incident card's update, a Home tab) is drawn only once it can go."""
        thread = edited = None
        if entry.thread_of_id is not None:
            thread = self._settled_parent(session, entry.thread_of_id)
        if entry.update_of_id is not None:
            edited = self._settled_parent(session, entry.update_of_id)
        stored = json.loads(entry.payload)
        if entry.method == web_api.REMOVE_COPIES:
            stored["kept"] = self._recorded_post(session, int(stored["copies_of"]))
        user = self._open(stored[SEALED_USER]) if SEALED_USER in stored else None
        if homes.HOME in stored and user is not None and self.identities is not None:
            drawn: dict[str, Any] | None = homes.draw_home(
                session,
                stored[homes.HOME],
                user_id=user,
                identities=self.identities,
                config=self.config(session) if self.config is not None else None,
                now=self.clock(),
            )
        else:
            drawn = delivery.render_at_send(session, stored)
        if drawn is None:
            raise NothingToSend("what it showed no longer exists")
        payload = outbox.sendable(drawn)
        if user is not None:
            payload["user_id" if entry.method == "views.publish" else "user"] = user
        if entry.method in {"views.publish", web_api.RESPONSE_URL}:  # addressed without a channel
            return payload
        if SEALED_TO in stored:
            payload["channel"] = self._channel_for(self._open(stored[SEALED_TO]))
        else:
            payload["channel"] = self._channel_for(entry.conversation)
        if thread is not None:
            payload["thread_ts"] = thread.result_ts
            payload["channel"] = thread.result_channel or payload["channel"]
        if edited is not None:
            payload["ts"] = edited.result_ts
            payload["channel"] = edited.result_channel or payload["channel"]
        if entry.method == "chat.postMessage":
            payload["metadata"] = {
                "event_type": web_api.METADATA_EVENT,
                "event_payload": {"outbox_id": entry.id},
            }
        return payload

    def _open(self, sealed: str) -> str:
        """The Slack id in a seal; a seal no key here opens is never deliverable."""
        user = self.identities.open(sealed) if self.identities else None
        if user is None:
            raise ParentUndelivered(
                "its recipient is sealed with a FEEDBOT_SECRET_KEY this process does not have"
            )
        return user

    @staticmethod
    def _recorded_post(session: Session, entry_id: int) -> str:
        """The `ts` of the post entry `entry_id` recorded: the copy to keep, which its edits
        and thread replies refer to, whichever attempt made it."""
        entry = session.get(OutboxMessage, entry_id)
        if entry is None or entry.status in (OutboxStatus.FAILED, OutboxStatus.SUPERSEDED):
            raise NothingToSend(f"outbox #{entry_id} is not in Slack as it recorded")
        if entry.status != OutboxStatus.SENT or not entry.result_ts:
            raise DeliveryDeferred(f"waiting for outbox #{entry_id} to be recorded")
        return entry.result_ts

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
            self._hold_if_waiting(("conversations.open",))
            response = self.client.conversations_open(users=conversation)
            self._dm_channels[conversation] = response["channel"]["id"]
        return self._dm_channels[conversation]
