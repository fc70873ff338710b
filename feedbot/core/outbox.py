"""The durable outbox: messages the bot owes Slack, stored with the change that caused them.

This module is the queue's state machine (enqueue, claim, settle); `feedbot.slack.outbox`
delivers. Order is kept per conversation and lane: only the oldest unfinished entry of a
lane can be claimed, so a reply never overtakes the card it belongs to, while one report's
messages never wait for another's. Claims are conditional
updates, so any number of processes can drain one queue without sending an entry twice.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, func, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from feedbot.models import OutboxMessage, OutboxStatus

LEASE = timedelta(seconds=60)
"""How long a claimed entry belongs to one sender before another may take it over."""
CALL_TIMEOUT = timedelta(seconds=10)
"""How long a sender waits for the answer to one call (Slack's, or a webhook receiver's):
a call of a sender that died lands within this after it began, or never."""
POST_TAKEN_OVER_AFTER = timedelta(seconds=3)
"""How long after its call began a dead sender's post is taken over (`feedbot.core.liveness`):
rechecked, and posted again if Slack does not show it. Slack answers nearly every call
within this; a post it takes longer over may still land, and is deleted as a copy once
`CALL_TIMEOUT` has passed (`feedbot.slack.web_api.REMOVE_COPIES`)."""

UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.SENDING)

ON_FAILURE = "_on_failure"
"""Payload key of the message to queue if Slack refuses an entry for good (see `enqueue`).
Keys starting with `_` are feedbot's own and never sent to Slack."""


class Entry(Protocol):
    """What a later entry needs of an earlier one it threads under or edits: a stored
    `OutboxMessage`, or what `enqueue` returns."""

    @property
    def id(self) -> int | None: ...

    @property
    def conversation(self) -> str: ...

    @property
    def lane(self) -> str | None: ...


@dataclass(frozen=True)
class Queued:
    """An entry just queued: what threads, edits and the caller's own records refer to."""

    id: int
    conversation: str
    lane: str | None


def enqueue(
    session: Session,
    *,
    conversation: str,
    method: str,
    payload: dict[str, Any],
    purpose: str = "",
    thread_of: Entry | None = None,
    update_of: Entry | None = None,
    replace_pending: bool = False,
    lane: str | None = None,
    turn: datetime | None = None,
    on_failure: dict[str, Any] | None = None,
    on_failure_thread_of: Entry | None = None,
    on_failure_conversation: str | None = None,
    due: datetime | None = None,
    now: datetime,
) -> Queued:
    """Queue one Web API call, due `now` or at `due`. The caller's transaction makes it
    durable.

    An edit (`update_of`) replaces edits of the same message still waiting: only the newest
    state of a message is worth sending. `replace_pending` does the same for whole calls of
    this method to this conversation and lane (a Home tab is re-published in full each time;
    one person's repeated answers about one thing are worth one message). `turn` places it
    among entries due at the same time (see `fair_turn`).
    `on_failure` is a message (`chat.postMessage` arguments; `{error}` in its text becomes
    Slack's answer) posted if Slack refuses this call for good, under `on_failure_thread_of`
    (in its conversation, else in `on_failure_conversation`, else in this one): where people
    look, not only in a log.

    Written as one plain insert, not an ORM object: nothing in the transaction reads the
    entry back as an object, and object and flush cost three to six times the statement
    (filing queues one to three per report). Pending ORM changes are not flushed first;
    none refers to it.
    """
    if lane is None:  # an edit or a reply keeps to the lane of what it belongs to
        parent = update_of or thread_of
        lane = parent.lane if parent is not None else None
    if on_failure is not None:
        payload = payload | {
            ON_FAILURE: {
                "payload": on_failure,
                "thread_of_id": on_failure_thread_of.id if on_failure_thread_of else None,
                "conversation": on_failure_thread_of.conversation
                if on_failure_thread_of
                else on_failure_conversation,
            }
        }
    if replace_pending:
        session.flush()
        session.execute(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.conversation) == conversation,
                _same_lane(lane),
                col(OutboxMessage.status) == OutboxStatus.PENDING,
                col(OutboxMessage.method) == method,
            )
            .values(status=OutboxStatus.SUPERSEDED)
        )
    if update_of is not None:
        session.flush()
        session.execute(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.update_of_id) == update_of.id,
                col(OutboxMessage.status) == OutboxStatus.PENDING,
                col(OutboxMessage.method) == method,
            )
            .values(status=OutboxStatus.SUPERSEDED)
        )
    entry_id = session.execute(
        _INSERT_ENTRY,
        {
            "conversation": conversation,
            "lane": lane,
            "method": method,
            "payload": json.dumps(payload, ensure_ascii=False),
            "purpose": purpose,
            "thread_of_id": thread_of.id if thread_of else None,
            "update_of_id": update_of.id if update_of else None,
            "created_at": now,
            "next_attempt_at": due or now,
            "turn": turn,
        },
    ).scalar_one()
    return Queued(entry_id, conversation, lane)


_OUTBOX_TABLE: Any = OutboxMessage.__table__  # type: ignore[attr-defined]
_INSERT_ENTRY = (
    insert(_OUTBOX_TABLE)
    .values(status=OutboxStatus.PENDING, attempts=0, uncertain=False)
    .returning(_OUTBOX_TABLE.c.id)
)


def waiting_edit(
    session: Session, *, of_id: int, method: str, purpose: str
) -> OutboxMessage | None:
    """An edit of entry `of_id` for `purpose` still waiting for its first try, locked until this
    transaction ends: a sender leaves it until then (`claim_due` skips locked entries), and
    then sees what this transaction wrote. For edits drawn when they are sent, this one edit
    then shows whatever changes came since. (One waiting after a failure is not counted on:
    it may be given up.) The lock is exclusive and taken as the transaction commits
    (`delivery.refresh_group_card`), so the reports of a burst hold it in turn for moments
    each: a shared one, held all along, let no sender claim the edit while a steady stream
    of reports came in."""
    return session.exec(
        _WAITING_EDIT, params={"of_id": of_id, "method": method, "purpose": purpose}
    ).first()


_WAITING_EDIT = (
    select(OutboxMessage)
    .where(
        col(OutboxMessage.update_of_id) == bindparam("of_id"),
        col(OutboxMessage.status) == OutboxStatus.PENDING,
        col(OutboxMessage.method) == bindparam("method"),
        col(OutboxMessage.purpose) == bindparam("purpose"),
        col(OutboxMessage.attempts) == 0,
    )
    .limit(1)
    .with_for_update()
)
"""Built once: every member of a burst asks, and building a statement costs more than
running it."""


def waiting_calls(
    session: Session, *, conversations: Collection[str], method: str
) -> dict[str, OutboxMessage]:
    """Per conversation of `conversations` (no lane), a call of `method` still waiting for
    its first try, locked until this transaction ends, as `waiting_edit` locks an edit: for
    whole calls drawn when they are sent (Home tabs), which then show whatever changed
    since they were queued. One statement for all, locking in the conversations' order."""
    rows = session.exec(
        _WAITING_CALLS, params={"conversations": sorted(conversations), "method": method}
    ).all()
    return {row.conversation: row for row in reversed(rows)}  # the first of each wins


def due_by(session: Session, entry_id: int, *, at: datetime) -> None:
    """Entry `entry_id`, waiting, is due at `at` at the latest (a later turn is brought
    forward)."""
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id) == entry_id,
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            col(OutboxMessage.next_attempt_at) > at,
        )
        .values(next_attempt_at=at)
    )


_WAITING_CALLS = (
    select(OutboxMessage)
    .where(
        col(OutboxMessage.status) == OutboxStatus.PENDING,
        col(OutboxMessage.conversation).in_(bindparam("conversations", expanding=True)),
        col(OutboxMessage.lane).is_(None),
        col(OutboxMessage.method) == bindparam("method"),
        col(OutboxMessage.attempts) == 0,
    )
    .order_by(col(OutboxMessage.conversation), col(OutboxMessage.id))
    .with_for_update()
)


def _same_lane(lane: str | None) -> Any:
    return col(OutboxMessage.lane).is_(None) if lane is None else col(OutboxMessage.lane) == lane


def fair_turn(
    session: Session, *, conversation: str, earlier: Any, now: datetime, spacing: timedelta
) -> datetime:
    """The turn of a new entry in `conversation`, so one sender of many cannot delay
    everyone else: `spacing` after now for each of that sender's entries still waiting there
    (`earlier` selects them). A colleague's entry, queued just after, goes between them
    instead of after all of them; with nobody else waiting, they all go at full pace."""
    waiting = session.exec(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            col(OutboxMessage.conversation) == conversation,
            col(OutboxMessage.status).in_(UNFINISHED),
            earlier,
        )
    ).one()
    return now + spacing * int(waiting)


@dataclass(frozen=True)
class Claim:
    """An entry this sender now owns. `recheck` means an earlier attempt may have landed."""

    entry: OutboxMessage
    recheck: bool


class Claims(list[Claim]):
    """The claims of one look, in due order; `read` is how many due entries the look read
    (some may have been claimed by another sender first): a look that read its limit may
    have left more due."""

    read: int = 0


def claim_due(
    session: Session,
    *,
    now: datetime,
    limit: int = 20,
    per_conversation: int | None = None,
    skip: Collection[str] = (),
    only: Collection[str] | None = None,
    method: str | None = None,
    except_methods: Collection[str] = (),
    owner: str | None = None,
) -> Claims:
    """Take up to `limit` deliverable entries: the head of each lane, if due, in turn order.

    `per_conversation` caps how many heads of one conversation are taken at once, and `skip`
    names conversations to take none from now (the sender holds enough there already): an
    entry that arrives a moment later with an earlier turn then still goes before the rest.
    `only` names the conversations to take from, if not all. `method` takes only entries of
    one method, `except_methods` none of these: webhooks have a sender of their own, so a slow
    receiver never holds up Slack's messages, and a method Slack has asked to wait for is
    left queued until the wait is over.

    A sender looks for work after every commit that queued some, a hundred times a second
    under load, while a paced channel may hold thousands of cards (each its own lane), so
    what it reads must not grow with them: the conversations it does not want (`skip`,
    `only`) are left out before the lanes are numbered. The statement is built once per
    shape.

    A head that is `sending` with an expired lease belonged to a sender that died; it is taken
    over and flagged for a recheck, since Slack may have accepted it already. `owner` names
    the claiming process (see `feedbot.core.liveness`), so its claims end when it dies.
    """
    if only is not None and not only:
        return Claims()
    statement = _claim_statement(
        skipping=bool(skip),
        only=only is not None,
        method=method is not None,
        except_methods=bool(except_methods),
        ranked=per_conversation is not None,
    )
    parameters: dict[str, Any] = {
        "unfinished": list(UNFINISHED),
        "pending": OutboxStatus.PENDING,
        "sending": OutboxStatus.SENDING,
        "now": now,
        "limit": limit,
    }
    if skip:
        parameters["skip"] = list(skip)
    if only is not None:
        parameters["only"] = list(only)
    if method is not None:
        parameters["method"] = method
    if except_methods:
        parameters["except_methods"] = list(except_methods)
    if per_conversation is not None:
        parameters["per_conversation"] = per_conversation
    candidates = session.exec(statement, params=parameters).all()
    claims = []
    # Rows are locked in id order whatever the due order: two senders whose candidate lists
    # were read at different moments then never wait on each other's locks (a deadlock on
    # PostgreSQL). Delivery still follows the due order below.
    for entry in sorted(candidates, key=lambda candidate: candidate.id or 0):
        took_over = entry.status == OutboxStatus.SENDING
        claimed = {
            "status": OutboxStatus.SENDING,
            "lease_until": now + LEASE,
            "attempts": entry.attempts + 1,
            "uncertain": entry.uncertain or took_over,
            "claimed_by": owner,
        }
        row = session.execute(
            _CLAIM_ONE,
            {"entry_id": entry.id, "was": entry.status, "attempt": entry.attempts} | claimed,
        ).first()
        if row is not None:
            # The row as claimed: a transaction that committed since it was read (the
            # erasure of a person's messages, say) shows, as a refresh would show it.
            for name, value in row._mapping.items():
                set_committed_value(entry, name, value)
            claims.append(Claim(entry=entry, recheck=entry.uncertain))
    session.commit()
    due_order = {entry.id: position for position, entry in enumerate(candidates)}
    taken = Claims(sorted(claims, key=lambda claim: due_order[claim.entry.id]))
    taken.read = len(candidates)
    return taken


@functools.cache
def _claim_statement(
    *, skipping: bool, only: bool, method: bool, except_methods: bool, ranked: bool
) -> Any:
    """`claim_due`'s query for one combination of its filters, with its values as bound
    parameters.

    A lane's head is found by numbering the lane's unfinished entries (a window), not by
    joining the entries to their lanes' smallest ids: with statistics that say almost nothing
    is unfinished, as they do when a burst begins, PostgreSQL planned that join as a loop over
    both sides, 0.3 s per look with 2,000 cards waiting."""
    entries = _OUTBOX_TABLE.c
    wanted: list[Any] = [entries.status.in_(bindparam("unfinished", expanding=True))]
    if skipping:
        wanted.append(entries.conversation.not_in(bindparam("skip", expanding=True)))
    if only:
        wanted.append(entries.conversation.in_(bindparam("only", expanding=True)))
    lanes = (
        sa_select(
            entries.id,
            entries.conversation,
            entries.status,
            entries.method,
            entries.next_attempt_at,
            entries.lease_until,
            func.coalesce(entries.turn, entries.next_attempt_at).label("turn"),
            func.row_number()
            .over(
                partition_by=(entries.conversation, func.coalesce(entries.lane, "")),
                order_by=entries.id,
            )
            .label("in_lane"),
        )
        .where(*wanted)
        .subquery()
    )
    lane = lanes.c
    heads = sa_select(lane.id, lane.conversation, lane.turn).where(
        lane.in_lane == 1,
        or_(
            and_(lane.status == bindparam("pending"), lane.next_attempt_at <= bindparam("now")),
            and_(lane.status == bindparam("sending"), lane.lease_until < bindparam("now")),
        ),
    )
    if method:
        heads = heads.where(lane.method == bindparam("method"))
    if except_methods:
        heads = heads.where(lane.method.not_in(bindparam("except_methods", expanding=True)))
    if ranked:
        placed = heads.add_columns(
            func.row_number()
            .over(partition_by=lane.conversation, order_by=(lane.turn, lane.id))
            .label("place")
        ).subquery()
        chosen = (
            sa_select(placed.c.id, placed.c.turn)
            .where(placed.c.place <= bindparam("per_conversation"))
            .subquery()
        )
    else:
        chosen = heads.subquery()
    return (
        select(OutboxMessage)
        .join(chosen, col(OutboxMessage.id) == chosen.c.id)
        .order_by(chosen.c.turn, chosen.c.id)
        .limit(bindparam("limit"))
    )


_CLAIM_ONE = (
    update(_OUTBOX_TABLE)
    .where(
        # An entry another transaction has locked is left for the next look, not waited
        # for (PostgreSQL; SQLite has one writer): reports lock the waiting rows they count
        # on as they commit (the group card's update, the Homes), several in turn, and a
        # sender holding one of them while it waited for another would deadlock.
        _OUTBOX_TABLE.c.id
        == sa_select(_OUTBOX_TABLE.c.id)
        .where(_OUTBOX_TABLE.c.id == bindparam("entry_id"))
        .with_for_update(skip_locked=True)
        .scalar_subquery(),
        _OUTBOX_TABLE.c.status == bindparam("was"),
        _OUTBOX_TABLE.c.attempts == bindparam("attempt"),
    )
    .values(
        status=bindparam("status"),
        lease_until=bindparam("lease_until"),
        attempts=bindparam("attempts"),
        uncertain=bindparam("uncertain"),
        claimed_by=bindparam("claimed_by"),
    )
    .returning(*_OUTBOX_TABLE.c)
)


def renew_lease(session: Session, entry: OutboxMessage, *, now: datetime) -> bool:
    """Extend this sender's claim just before calling Slack. False when the claim was lost (its
    lease ran out while it waited and another sender took it over): then it must not be sent.

    `attempts` is the ownership token: each claim increments it, so only the latest claimer
    matches."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id) == entry.id,
            col(OutboxMessage.status) == OutboxStatus.SENDING,
            col(OutboxMessage.attempts) == entry.attempts,
        )
        .values(lease_until=now + LEASE)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _owned(entry_id: int, attempt: int | None) -> list[Any]:
    """The row, and (given the claim's attempt number) only while that claim still owns it."""
    conditions: list[Any] = [col(OutboxMessage.id) == entry_id]
    if attempt is not None:
        conditions.append(col(OutboxMessage.attempts) == attempt)
    return conditions


def mark_sent(
    session: Session,
    entry_id: int,
    *,
    channel: str | None,
    ts: str | None,
    now: datetime,
    attempt: int,
) -> None:
    """Record that Slack (or a webhook's receiver) took the entry, unless the claim `attempt`
    no longer owns it. Written past the session's objects (`mark_sent_together`)."""
    mark_sent_together(session, [SentMark(entry_id, attempt, channel, ts, now)])


@dataclass(frozen=True)
class SentMark:
    """An entry Slack took, as its claim records it: where it landed, and when."""

    entry_id: int
    attempt: int
    """The claim's attempt number: only the claim that still owns the entry records it."""
    channel: str | None
    ts: str | None
    sent_at: datetime


def mark_sent_together(session: Session, marks: Sequence[SentMark]) -> None:
    """`mark_sent` for several entries, in one statement executed with many rows: the
    sending threads' outcomes that wait together for SQLite's one writer are written in
    one transaction (`feedbot.slack.outbox`). In id order, as `claim_due` locks rows.

    The statement goes to the session's connection, past its objects: nothing pending is
    flushed first, and an `OutboxMessage` loaded in the session keeps what it showed."""
    if not marks:
        return
    session.connection().execute(
        _MARK_SENT,
        [
            {
                "entry_id": mark.entry_id,
                "attempt": mark.attempt,
                "result_channel_of": mark.channel,
                "result_ts_of": mark.ts,
                "sent_at_of": mark.sent_at,
            }
            for mark in sorted(marks, key=lambda mark: mark.entry_id)
        ],
    )


_MARK_SENT = (
    update(_OUTBOX_TABLE)
    .where(
        _OUTBOX_TABLE.c.id == bindparam("entry_id"),
        _OUTBOX_TABLE.c.attempts == bindparam("attempt"),
    )
    .values(
        status=OutboxStatus.SENT,
        sent_at=bindparam("sent_at_of"),
        result_channel=bindparam("result_channel_of"),
        result_ts=bindparam("result_ts_of"),
        lease_until=None,
        last_error=None,
        uncertain=False,
    )
)


def mark_retry(
    session: Session,
    entry_id: int,
    *,
    error: str,
    at: datetime,
    uncertain: bool,
    attempt: int | None = None,
    still_claimed: bool = False,
) -> None:
    """Put an entry back in line; its conversation waits for it (order is kept).
    `still_claimed`: only if it is still being sent, not once its outcome was recorded (a
    failure after that must not send it again)."""
    conditions = _owned(entry_id, attempt)
    if still_claimed:
        conditions.append(col(OutboxMessage.status) == OutboxStatus.SENDING)
    session.execute(
        update(OutboxMessage)
        .where(*conditions)
        .values(
            status=OutboxStatus.PENDING,
            next_attempt_at=at,
            lease_until=None,
            last_error=error[:500],
            uncertain=uncertain,
        )
    )


def mark_superseded(
    session: Session, entry_id: int, *, why: str, now: datetime, attempt: int | None = None
) -> None:
    """Drop an entry with nothing left to send (what it showed is gone): not a failure, and
    nobody is told."""
    session.execute(
        update(OutboxMessage)
        .where(*_owned(entry_id, attempt))
        .values(status=OutboxStatus.SUPERSEDED, lease_until=None, last_error=why[:500], sent_at=now)
    )


def mark_failed(
    session: Session, entry_id: int, *, error: str, now: datetime, attempt: int | None = None
) -> None:
    """Give up on an entry Slack will never accept; the rest of its conversation goes on, and
    its failure notice (if it has one, see `enqueue`) is queued."""
    result = session.execute(
        update(OutboxMessage)
        .where(*_owned(entry_id, attempt))
        .values(status=OutboxStatus.FAILED, lease_until=None, last_error=error[:500], sent_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return
    entry = session.get(OutboxMessage, entry_id)
    notice = json.loads(entry.payload).get(ON_FAILURE) if entry is not None else None
    if entry is None or not isinstance(notice, dict):
        return
    message = dict(notice.get("payload") or {})
    message["text"] = str(message.get("text") or "").replace("{error}", error[:200])
    for block in message.get("blocks") or []:
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            text["text"] = text["text"].replace("{error}", error[:200])
    parent = notice.get("thread_of_id")
    enqueue(
        session,
        conversation=str(notice.get("conversation") or entry.conversation),
        method="chat.postMessage",
        payload=message,
        purpose=f"{entry.purpose}_failed"[:64],
        thread_of=session.get(OutboxMessage, parent) if parent else None,
        now=now,
    )


def sendable(payload: dict[str, Any]) -> dict[str, Any]:
    """The arguments for Slack: the payload without feedbot's own keys."""
    return {key: value for key, value in payload.items() if not key.startswith("_")}


def backlog(session: Session) -> dict[str, int]:
    """Entries by status, for health output and the CLI."""
    rows = session.exec(
        select(OutboxMessage.status, func.count()).group_by(col(OutboxMessage.status))
    ).all()
    return {str(status): count for status, count in rows}


def failures(session: Session, *, limit: int = 20) -> list[OutboxMessage]:
    return list(
        session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.status) == OutboxStatus.FAILED)
            .order_by(col(OutboxMessage.id).desc())
            .limit(limit)
        )
    )
