"""The durable inbox: requests from Slack stored before they are answered, handled after.

A request that changes something is written here in one short transaction and acked at
once; workers in every process take entries and do the work. Taking an entry is a row lock
held for the whole of its handling (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer anyway), and the work commits in that same transaction together with the entry's
`done` mark. So a process that dies at any moment leaves its entry `pending` with nothing of
its work written, and the next worker does it once; there is no claim to expire.

A worker's listeners open their own "transactions" (`Deps.transaction`); while an entry is
handled they become savepoints of the entry's transaction (`REPLAY_SESSION`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, update
from sqlmodel import Session, col, select

from feedbot.models import InboxEntry, InboxStatus

KEEP_FOR = timedelta(days=2)
"""How long a handled entry's key stays, so a retry of it is recognised (Slack's last retry
comes about five minutes after the first attempt)."""
MAX_BACKOFF = timedelta(seconds=30)
"""Longest pause between two tries of an entry that failed on the database or the network:
those are tried for as long as an outage lasts (a failure no retry can mend, such as a bug,
sets the entry aside at once)."""
LATE_AFTER = timedelta(seconds=5)
"""An entry waiting longer than this means the workers do not keep up: it is logged."""

REPLAY_SESSION: ContextVar[Session | None] = ContextVar("feedbot_inbox_session", default=None)
"""The transaction of the entry being handled in this thread, if any."""


@dataclass(frozen=True)
class Arrival:
    """A request to keep: its kind, the key that makes a retry of it land once, its body."""

    kind: str
    dedupe_key: str
    body: str
    received_at: datetime


def store(
    connection: Connection | Session, *, kind: str, dedupe_key: str, body: str, now: datetime
) -> bool:
    """Keep one request; False if its key was seen before (a retry): nothing is stored."""
    return store_many(connection, [Arrival(kind, dedupe_key, body, now)]) == [True]


def store_many(connection: Connection | Session, arrivals: Sequence[Arrival]) -> list[bool]:
    """Keep several requests in the caller's transaction; for each, False if its key was
    seen before (a retry, or an earlier one of `arrivals`): nothing is stored for it.

    This is the whole of an ack's own work, so it is one prepared Core statement (the ORM
    would spend more time building the statement than the database spends running it)."""
    if not arrivals:
        return []
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    rows = [
        {
            "kind": arrival.kind[:32],
            "dedupe_key": arrival.dedupe_key[:128],
            "body": arrival.body,
            "status": InboxStatus.PENDING,
            "received_at": arrival.received_at,
            "next_attempt_at": arrival.received_at,
            "attempts": 0,
        }
        for arrival in arrivals
    ]
    stored = set(connection.execute(_store_statement(bind.dialect.name), rows).scalars())
    answers = []
    for row in rows:
        key = row["dedupe_key"]
        answers.append(key in stored)
        stored.discard(key)  # a second arrival with the same key in this batch is a retry
    return answers


@functools.cache
def _store_statement(dialect: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    module: Any = postgresql if dialect == "postgresql" else sqlite
    table: Any = InboxEntry.__table__  # type: ignore[attr-defined]
    return (
        module.insert(table)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.dedupe_key)
    )


def take_next(session: Session, *, now: datetime) -> InboxEntry | None:
    """The oldest due entry, locked for this transaction (other workers skip it), or None.

    One statement picks the entry and counts its attempt: on SQLite the write makes the
    transaction the writer from the start, so the work that follows never finds the database
    taken; on PostgreSQL the row stays locked until the transaction ends. The entry returned
    is not attached to the session (its work changes it only through `finish`)."""
    row = session.execute(
        _take_statement(session.get_bind().dialect.name),
        {"pending": InboxStatus.PENDING, "now": now},
    ).first()
    if row is None:
        return None
    return InboxEntry.model_validate(row._mapping)


@functools.cache
def _take_statement(dialect: str) -> Any:
    table: Any = InboxEntry.__table__  # type: ignore[attr-defined]
    due = (
        select(table.c.id)
        .where(table.c.status == bindparam("pending"), table.c.next_attempt_at <= bindparam("now"))
        .order_by(table.c.id)
        .limit(1)
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (
        update(table)
        .where(table.c.id == due.scalar_subquery())
        .values(attempts=table.c.attempts + 1)
        .returning(*table.c)
    )


def finish(session: Session, entry: InboxEntry, *, now: datetime) -> None:
    """Mark the entry handled, in the transaction that did its work."""
    session.execute(_FINISH, {"entry_id": entry.id, "done": InboxStatus.DONE, "finished_at": now})


_TABLE: Any = InboxEntry.__table__  # type: ignore[attr-defined]
_FINISH = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("entry_id"))
    .values(status=bindparam("done"), body="", handled_at=bindparam("finished_at"), last_error=None)
)


def failed(
    session: Session, entry_id: int, *, error: str, now: datetime, permanent: bool
) -> InboxStatus:
    """Record a failed attempt (its work was rolled back): retried later with a growing
    pause, or set aside once no retry can help. Returns the entry's new status."""
    entry = session.get(InboxEntry, entry_id)
    if entry is None or entry.status != InboxStatus.PENDING:
        return InboxStatus.DONE
    attempts = entry.attempts + 1
    entry.attempts = attempts
    entry.last_error = error[:500]
    entry.status = InboxStatus.FAILED if permanent else InboxStatus.PENDING
    entry.next_attempt_at = now + min(timedelta(seconds=2 ** min(attempts, 10)), MAX_BACKOFF)
    if permanent:
        entry.handled_at = now
    session.add(entry)
    return entry.status


@dataclass(frozen=True)
class Depth:
    """What waits: entries not yet handled, and how long the oldest has waited."""

    pending: int
    oldest_seconds: float
    failed: int


def depth(session: Session, *, now: datetime) -> Depth:
    pending, oldest = session.exec(
        select(func.count(), func.min(InboxEntry.received_at)).where(
            col(InboxEntry.status) == InboxStatus.PENDING
        )
    ).one()
    failures = session.exec(
        select(func.count()).where(col(InboxEntry.status) == InboxStatus.FAILED)
    ).one()
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return Depth(pending=int(pending), oldest_seconds=age, failed=int(failures))


def failures(session: Session, *, limit: int = 20) -> list[InboxEntry]:
    return list(
        session.exec(
            select(InboxEntry)
            .where(col(InboxEntry.status) == InboxStatus.FAILED)
            .order_by(col(InboxEntry.id).desc())
            .limit(limit)
        )
    )


def prune(session: Session, *, now: datetime) -> int:
    """Forget handled entries older than `KEEP_FOR` (failed ones too: they were logged)."""
    result = session.execute(
        delete(InboxEntry).where(
            col(InboxEntry.status) != InboxStatus.PENDING,
            col(InboxEntry.handled_at) < now - KEEP_FOR,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
