"""Answer Slack first: requests that change something are stored, acked, and handled after.

`Inbox.middleware` runs first among Bolt's global middleware, so after Bolt has verified the
signature (HTTP) or the request arrived over the socket. A request that changes something is
written to the inbox (`feedbot.core.inbox`; on SQLite to its arrivals file, which a worker
moves into the inbox) in one short transaction and answered at once:
an event with 200, a button with its ack, a slash command with a short receipt. A form
submission is first checked by its listener inside the request, since Slack shows errors in
the form only from the answer (`response_action: errors`); one that passes is handed here
(`features.common.deferred`), stored and answered. What Slack needs inside the request stays
there and writes nothing: opening a modal with its `trigger_id` (they expire in 3 s),
`/feedback help` and `/feedback mine`. The one exception is the webhooks form, whose answer
is the new webhook's secret, made by the write itself and shown once in the updated form.

A form refused when its work is done (a report closed meanwhile, a rate limit reached by a
report filed at the same moment) can no longer be refused in the form: its sender hears why
by DM, with what they entered.

Workers (`Inbox.start`, in every process) replay each entry through the same Bolt app as a
Socket Mode request marked `REPLAYED`: signatures are not checked again, this middleware lets
it through, and the listener's `ack` goes nowhere, except that a slash command's answer is
posted to its `response_url` through the outbox, and a form refused by its listener is
explained to its sender by DM. The listener's transactions become
savepoints of the entry's own transaction, which also marks the entry done: its work and that
mark commit together or not at all, so a process killed at any moment leaves nothing half
done and nothing done twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from feedbot import sqlite_writer
from feedbot.core import inbox as core
from feedbot.core import outbox
from feedbot.core.group_commit import GroupCommit
from feedbot.core.liveness import TAKEOVER_EVERY, Liveness
from feedbot.db import TRANSIENT_ERRORS, arrivals_engine, intake_engine, session_scope
from feedbot.logs import log_context, without_database_details
from feedbot.models import InboxStatus
from feedbot.slack import delivery, web_api
from feedbot.slack.deps import Deps
from feedbot.slack.ids import DEFER_SUBMISSION, REPLAYED, Action
from feedbot.slack.views.notices import build_form_refused
from feedbot.slack.web_api import RESPONSE_URL

log = logging.getLogger(__name__)

FAILURE = "feedbot_failure"
"""Context key where the error handler leaves a replayed request's failure."""

POLL_INTERVAL = 1.0
"""Seconds between looks at the inbox when nothing woke the worker (another replica's
requests, retries that came due)."""
DEPTH_EVERY = 5.0
"""Seconds between checks of how long the oldest request has waited."""
PRUNE_EVERY = 3600.0
YIELD_LIMIT = 0.05
"""Seconds a worker waits at most for requests being answered before it takes the next
entry: acks go first, but a steady stream of them must not stop the work altogether."""
SWITCH_INTERVAL = 0.001
"""Seconds a thread runs before the interpreter offers another thread its turn."""
MOVE_GAP = 0.05
"""Seconds at least between two moves of SQLite's arrivals into the inbox while entries
moved before are still waiting there. A move is three short transactions; made before every
entry under load (one or two arrivals each), moving took a sixth of the worker's time. What
arrived is newer than every entry moved before it, so it waits behind them anyway; once they
are taken, or nothing is due, it is moved at once."""

IN_REQUEST_WORDS = frozenset({"", "help", "mine", "admin"})
"""`/feedback` subcommands answered inside the request: a modal to open, or reading only."""
IN_REQUEST_EVENTS = frozenset({"app_uninstalled", "tokens_revoked"})
"""Events handled inside the request: rare, quick, and written by `SlackAccess` in a
transaction of its own, which on SQLite would wait for the worker's."""


def _modal_actions() -> frozenset[str]:
    from feedbot.slack.features.triage import FORM_BUTTONS

    return frozenset(
        {
            Action.OPEN_FORM,
            Action.ADD_DETAILS,
            Action.EDIT_SETTINGS,
            Action.REPORTER_REPLY,
            Action.FOLLOW_UP,
            Action.INCIDENT_REPLY,
            Action.INCIDENT_RESOLVE,
            Action.INCIDENT_MERGE,
            Action.EDIT_WEBHOOKS,
            *FORM_BUTTONS,
        }
    )


RECEIPTS = {
    "en": {
        "report": "Thanks, your report is being filed. Its reference follows in a moment.",
        "digest": "Preparing the digest preview; it follows in a moment.",
    },
    "de": {
        "report": "Danke, deine Meldung wird erfasst. Die Nummer folgt gleich.",
        "digest": "Die Vorschau des Digests wird erstellt und folgt gleich.",
    },
}


def _key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


def _view_key(body: dict[str, Any]) -> str:
    """A form submission's key: Slack gives each state of a view its own hash."""
    view: dict[str, Any] = body["view"] if isinstance(body.get("view"), dict) else {}
    if view.get("id") and view.get("hash"):
        return f"view:{view['id']}:{view['hash']}"
    return "view:" + _key(json.dumps(body, sort_keys=True))


def classify(body: dict[str, Any], modal_actions: frozenset[str]) -> tuple[str, str] | None:
    """(kind, dedupe key) of a request that goes through the inbox; None if it is answered
    inside the request."""
    kind = body.get("type")
    if kind == "event_callback":
        event: dict[str, Any] = body["event"] if isinstance(body.get("event"), dict) else {}
        if event.get("type") in IN_REQUEST_EVENTS:
            return None
        event_id = body.get("event_id")
        key = f"event:{event_id}" if isinstance(event_id, str) and event_id else None
        return f"event:{event.get('type')}"[:32], key or "event:" + _key(json.dumps(body))
    if body.get("command"):
        word = str(body.get("text") or "").strip().split(" ", 1)[0].lower()
        if word in IN_REQUEST_WORDS:
            return None
        trigger = body.get("trigger_id") or _key(json.dumps(body, sort_keys=True))
        return "command", f"command:{body.get('command')}:{trigger}"
    if kind == "block_actions":
        actions = body.get("actions") or []
        ids = {a.get("action_id") for a in actions if isinstance(a, dict)}
        view: dict[str, Any] = body["view"] if isinstance(body.get("view"), dict) else {}
        if ids & modal_actions or view.get("type") == "modal" or not ids:
            return None
        trigger = body.get("trigger_id")
        stamp = [a.get("action_ts") for a in actions if isinstance(a, dict)]
        user = (body.get("user") or {}).get("id")
        return "block_actions", f"action:{trigger or _key(user, stamp, sorted(map(str, ids)))}"
    return None


class WorkersElsewhere(Protocol):
    """The inbox's workers in another process (`feedbot.worker_process.WorkerProcess`)."""

    def wake(self) -> None: ...


class Inbox:
    """The intake middleware and the workers of one process. `threads` workers drain the
    inbox, one by default: a worker shares the interpreter with the requests being answered
    in its process, and a second busy worker took so much of it on PostgreSQL that acks went
    past Slack's 3 s (`docs/performance.md`). More work in parallel comes from more replicas.
    (SQLite has one writer anyway.) With `elsewhere`, this process only stores and answers,
    and tells the workers of that other process what it stored."""

    def __init__(
        self,
        deps: Deps,
        *,
        liveness: Liveness | None = None,
        threads: int | None = None,
        poll_interval: float = POLL_INTERVAL,
        elsewhere: WorkersElsewhere | None = None,
        watch_depth: bool = True,
        depth_every: float = DEPTH_EVERY,
    ) -> None:
        """`watch_depth`: log when requests wait too long (`check_depth`); the process that
        answers them does, also while its workers' process is down."""
        self.deps = deps
        self.engine = deps.engine
        self.liveness = liveness
        self.elsewhere = elsewhere
        self.threads = threads if threads is not None else (0 if elsewhere else 1)
        self.poll_interval = poll_interval
        self.watch_depth = watch_depth
        self.depth_every = depth_every
        self.app: App | None = None
        self._modal_actions = _modal_actions()
        self._wake = threading.Event()
        self._arrived = threading.Event()
        """Requests were stored in the arrivals file since the last move."""
        self._moved_at = float("-inf")
        """When (`time.monotonic`) the arrivals were last moved: never, so the first look
        moves what a stopped bot left."""
        self._moving = threading.Lock()
        """One move at a time (`drain` may run beside the workers)."""
        self._moved_waiting = 0
        """Entries moved into the inbox that this process has not taken yet, about: it only
        decides whether the next move can wait (`MOVE_GAP`)."""
        self._move_failed = False
        """The last move failed: the next one does not wait."""
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._answering = 0
        """Requests being answered right now: the workers let them go first."""
        self._answering_lock = threading.Lock()
        self._arrivals: GroupCommit[core.Arrival, bool] = GroupCommit(
            self._write, alone=lambda error: not isinstance(error, TRANSIENT_ERRORS)
        )

    @property
    def arrivals(self) -> Engine | None:
        """On SQLite, where requests are stored before a worker moves them into the inbox
        (`core.move_arrivals`); None on PostgreSQL."""
        return arrivals_engine(self.engine)

    @property
    def intake(self) -> Engine:
        """What requests are stored with (`feedbot.db.intake_engine`), looked up each time:
        it is closed with the engine, and made again if that is used again."""
        return intake_engine(self.engine)

    # ------------------------------------------------------------------------ the request

    def attach(self, app: App) -> None:
        """Put the middleware first on `app` (before `build_app` adds its own). `build_app`
        also wraps every answer in `answering_request`, so the workers let requests go
        first."""
        self.app = app
        app.middleware(self.middleware)

    @contextlib.contextmanager
    def answering_request(self) -> Iterator[None]:
        with self._answering_lock:
            self._answering += 1
        try:
            yield
        finally:
            with self._answering_lock:
                self._answering -= 1

    def middleware(
        self, body: dict[str, Any], context: BoltContext, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        if context.get(REPLAYED) is not None:
            return next()
        if body.get("type") == "view_submission":
            # Its listener checks the form first (errors go back inside the request), then
            # hands it over with `features.common.deferred`, which calls this.
            context[DEFER_SUBMISSION] = lambda: self._store(
                "view_submission", _view_key(body), body
            )
            return next()
        found = classify(body, self._modal_actions)
        if found is None:
            return next()
        kind, key = found
        self._store(kind, key, body)
        if kind == "command":
            return self._command_receipt(body)
        return BoltResponse(status=200, body="")

    def _store(self, kind: str, key: str, body: dict[str, Any]) -> None:
        sealed = self.deps.identities.seal(json.dumps(body))
        arrival = core.Arrival(kind, key, sealed, self.deps.clock())
        if self._arrivals.submit(arrival):
            self.wake()
            if self.elsewhere is not None:
                self.elsewhere.wake()
        else:
            log.info("%s already received (%s); not storing it again", kind, key)

    def _write(self, arrivals: Sequence[core.Arrival]) -> list[bool]:
        """One statement for the requests waiting together (`GroupCommit`), into the
        arrivals file on SQLite; on PostgreSQL it may take `feedbot.db.STORE_TIMEOUT_MS` at
        most, since every ack of this process waits for it. A connection the server had
        closed (a restart) is not pinged before use: the write is made again on a new one."""
        try:
            return self._write_once(arrivals)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            log.info("the database had closed a connection; storing on a new one")
            return self._write_once(arrivals)

    def _write_once(self, batch: Sequence[core.Arrival]) -> list[bool]:
        arrivals = self.arrivals
        intake = arrivals if arrivals is not None else self.intake
        with sqlite_writer.urgent():
            return core.store_committed(intake, batch, in_arrivals_file=arrivals is not None)

    def _command_receipt(self, body: dict[str, Any]) -> BoltResponse:
        word = str(body.get("text") or "").strip().split(" ", 1)[0].lower()
        texts = RECEIPTS.get(self.deps.settings_language(), RECEIPTS["en"])
        text = texts["digest"] if word == "digest" else texts["report"]
        return BoltResponse(
            status=200,
            body=json.dumps({"response_type": "ephemeral", "text": text}),
            headers={"content-type": "application/json;charset=utf-8"},
        )

    # ------------------------------------------------------------------------- the workers

    def wake(self) -> None:
        """Requests were stored (in this process or the one that answers for it)."""
        self._arrived.set()
        self._wake.set()

    def start(self) -> None:
        # A worker holds the interpreter for whole slices of its work; with shorter slices a
        # request that arrives meanwhile gets its turn sooner (Slack is waiting for it).
        if self.threads:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._stop.clear()
        self._workers = [
            threading.Thread(target=self._run, name=f"inbox-{n}", daemon=True)
            for n in range(self.threads)
        ]
        self._workers.append(
            threading.Thread(target=self._look_after, name="inbox-housekeeping", daemon=True)
        )
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking entries; the one being handled finishes (or rolls back with the
        process: it stays in the inbox either way)."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0))

    def drain(self, max_entries: int = 10_000) -> int:
        """Handle everything due now, in this thread (tests and the CLI)."""
        handled = 0
        while handled < max_entries and self.handle_one():
            handled += 1
        return handled

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.handle_one():
                    pass
            except Exception:
                log.exception("inbox worker failed; retrying")
                self._stop.wait(1.0)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _look_after(self) -> None:
        """Housekeeping on a thread of its own, so that it goes on while the workers are
        busy with a backlog (when a dead process's claims and a late request matter most)."""
        last_takeover = last_depth = last_prune = 0.0
        while True:
            now = time.monotonic()
            if self.liveness is not None and now - last_takeover >= TAKEOVER_EVERY:
                last_takeover = now
                self._take_over()
            if self.watch_depth and now - last_depth >= self.depth_every:
                last_depth = now
                self.check_depth()
            if self.threads and now - last_prune >= PRUNE_EVERY:
                last_prune = now
                self._prune()
            if self._stop.wait(min(TAKEOVER_EVERY, self.depth_every)):
                return

    def _take_over(self) -> None:
        if self.liveness is None:
            return
        try:
            with session_scope(self.engine) as session:
                taken = self.liveness.take_over(session, now=self.deps.clock())
            if taken:
                self.deps.on_commit()
        except Exception as exc:
            log.warning("could not look for a dead process's claims: %s", type(exc).__name__)

    def check_depth(self) -> core.Depth | None:
        """Log when the oldest waiting request is older than `core.LATE_AFTER`."""
        try:
            with session_scope(self.engine) as session:
                depth = core.depth(session, now=self.deps.clock())
        except Exception as exc:
            log.warning("could not read the inbox depth: %s", type(exc).__name__)
            return None
        if depth.oldest_seconds > core.LATE_AFTER.total_seconds():
            log.warning(
                "inbox falling behind: %s requests waiting, the oldest for %.1f s",
                depth.pending,
                depth.oldest_seconds,
            )
        return depth

    def _prune(self) -> None:
        try:
            with session_scope(self.engine) as session:
                core.prune(session, now=self.deps.clock())
        except Exception as exc:
            log.warning("could not prune the inbox: %s", type(exc).__name__)

    def _let_requests_go_first(self) -> None:
        """Wait (up to `YIELD_LIMIT`) while requests are being answered: acks come first."""
        deadline = time.monotonic() + YIELD_LIMIT
        while self._answering and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.001)

    def handle_one(self) -> bool:
        """Take one due entry and handle it; False when none is due."""
        assert self.app is not None, "attach the inbox to an app first"
        self._let_requests_go_first()
        self.move_arrivals(gather=True)
        if self._take_and_handle():
            return True
        # Nothing due: what arrived since the last move goes in now, not after `MOVE_GAP`.
        return self.move_arrivals() > 0 and self._take_and_handle()

    def _take_and_handle(self) -> bool:
        with Session(self.engine, expire_on_commit=False) as session:
            entry = core.take_next(session, now=self.deps.clock())
            if entry is None:
                session.commit()  # nothing was written; see `feedbot.db.session_scope`
                self._moved_waiting = 0
                return False
            self._moved_waiting = max(self._moved_waiting - 1, 0)
            with log_context(request=f"inbox-{entry.id}"):
                self._handle(session, entry)
        self.deps.on_commit()
        return True

    def move_arrivals(self, *, gather: bool = False) -> int:
        """On SQLite, move what has arrived into the inbox: when woken for it, or after
        `poll_interval` (a wake-up may have been dropped); with `gather`, not within
        `MOVE_GAP` of the last move while entries it moved still wait. How many it moved."""
        arrivals = self.arrivals
        if arrivals is None:
            return 0
        with self._moving:
            now = time.monotonic()
            gathering = gather and self._moved_waiting and not self._move_failed
            if gathering and now - self._moved_at < MOVE_GAP:
                return 0
            if not self._arrived.is_set() and now - self._moved_at < self.poll_interval:
                return 0
            self._arrived.clear()
            self._moved_at = now
            moved = 0
            try:
                while True:
                    batch = core.move_arrivals(arrivals, self.engine)
                    moved += batch
                    if batch < core.MOVE_AT_MOST:
                        break
            except Exception:
                self._arrived.set()  # the next try moves them
                self._move_failed = True  # and no entry is taken before it
                raise
            finally:
                self._moved_waiting += moved
            self._move_failed = False
            return moved

    def _handle(self, session: Session, entry: core.Taken) -> None:
        assert self.app is not None
        # Bodies are sealed: a pending request may be an anonymous report. (Entries stored
        # before they were are plain JSON; a seal never starts with a brace.)
        plain = entry.body.startswith("{")
        opened = entry.body if plain else self.deps.identities.open(entry.body)
        if opened is None:
            error: Exception | None = ValueError("sealed with another secret key")
            body: dict[str, Any] = {}
            response = BoltResponse(status=500, body="")
        else:
            body = json.loads(opened)
            error, response = self._dispatch(session, entry.id, body)
        if error is None and response.status >= 500:
            error = RuntimeError(f"answered {response.status}")
        if error is None:
            try:
                if entry.kind == "command" and response.status == 200:
                    self._answer(session, body, response)
                if entry.kind == "view_submission":
                    self._tell_if_refused(session, body, response)
                core.finish(session, entry, now=self.deps.clock())
                session.commit()
                return
            except Exception as exc:
                error = exc
        session.rollback()
        permanent = not isinstance(error, TRANSIENT_ERRORS)
        with session_scope(self.engine) as retry:
            status = core.failed(
                retry,
                entry.id,
                error=without_database_details(f"{type(error).__name__}: {error}", error),
                now=self.deps.clock(),
                permanent=permanent,
            )
        level = logging.ERROR if status == InboxStatus.FAILED else logging.WARNING
        log.log(
            level,
            "inbox entry %s (%s) failed: %s; %s",
            entry.id,
            entry.kind,
            type(error).__name__,
            "set aside" if status == InboxStatus.FAILED else "retrying",
        )

    def _dispatch(
        self, session: Session, entry_id: int, body: dict[str, Any]
    ) -> tuple[Exception | None, BoltResponse]:
        """Replay a request through the app, its transactions nested in `session`'s."""
        assert self.app is not None
        request = BoltRequest(body=body, mode="socket_mode", context={REPLAYED: entry_id})
        token = core.REPLAY_SESSION.set(session)
        try:
            response = App.dispatch(self.app, request)
        except Exception as exc:
            return exc, BoltResponse(status=500, body="")
        finally:
            core.REPLAY_SESSION.reset(token)
        failure = request.context.get(FAILURE)
        return (failure if isinstance(failure, Exception) else None), response

    def _answer(self, session: Session, body: dict[str, Any], response: BoltResponse) -> None:
        """A slash command's answer (what its listener acked with) goes to its
        `response_url`, in the entry's transaction."""
        url = body.get("response_url")
        raw = response.body
        if not url or not raw:
            return
        try:
            message = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except ValueError:
            message = {"text": str(raw)}
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return
        message = {"response_type": "ephemeral", **message, "replace_original": True}
        outbox.enqueue(
            session,
            conversation=web_api.answer_conversation(str(body.get("user_id"))),
            method=RESPONSE_URL,
            payload=message | {"response_url": url},
            purpose="command_answer",
            now=self.deps.clock(),
        )

    def _tell_if_refused(
        self, session: Session, body: dict[str, Any], response: BoltResponse
    ) -> None:
        """A form that passed its checks in the request but was refused when its work was done
        (its listener answered with `response_action: errors`, which Slack no longer hears):
        its sender hears why by DM, with what they entered. Sealed: the form may have been an
        anonymous report."""
        try:
            answer = json.loads(response.body) if isinstance(response.body, str) else {}
        except ValueError:
            return
        if not isinstance(answer, dict) or answer.get("response_action") != "errors":
            return
        user = str((body.get("user") or {}).get("id") or "")
        if not user:
            return
        errors = [str(text) for text in (answer.get("errors") or {}).values()]
        view = body.get("view") or {}
        message = build_form_refused(
            errors, _typed(view.get("state") or {}), locale=self.deps.locale_for(user)
        )
        delivery.dm(
            session,
            user=user,
            message=message,
            now=self.deps.clock(),
            purpose="form_refused",
            sealed_by=self.deps.identities,
            about=f"form:{view.get('id')}",
        )
        log.info("a replayed %s form was refused: %s", view.get("callback_id"), errors)


def _typed(state: dict[str, Any]) -> list[str]:
    """The text a person typed into a form's inputs."""
    typed: list[str] = []
    for block in (state.get("values") or {}).values():
        for element in (block or {}).values():
            value = element.get("value") if isinstance(element, dict) else None
            if isinstance(value, str) and value.strip():
                typed.append(value)
    return typed
