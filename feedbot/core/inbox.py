"""The durable inbox: requests from Slack stored before they are answered, handled after.

A request that changes something is written here in one short transaction and acked at
once; workers in every process take entries and do the work. Taking an entry is a row lock
held for the whole of its handling (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer anyway), and the work commits in that same transaction together with the entry's
`done` mark. So a process that dies at any moment leaves its entry `pending` with nothing of
its work written, and the next worker does it once; there is no claim to expire.

On SQLite that lock is the whole file's, so requests are first written to an arrivals file
of their own and moved in by the worker (`move_arrivals`).

A worker's listeners open their own "transactions" (`Deps.transaction`); while an entry is
handled they become savepoints of the entry's transaction (`REPLAY_SESSION`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, Engine, bindparam, delete, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from feedbot.core.group_commit import MAX_BATCH as GROUP_COMMIT_BATCH
from feedbot.db import arrivals_engine, arrivals_exist
from feedbot.models import ARRIVAL, InboxEntry, InboxStatus

log = logging.getLogger(__name__)

KEEP_FOR = timedelta(days=2)
"""How long a handled entry's key stays, so a retry of it is recognised (Slack's last retry
comes about five minutes after the first attempt)."""
MAX_BACKOFF = timedelta(seconds=30)
"""Longest pause between two tries of an entry that failed on the database or the network:
those are tried for as long as an outage lasts (a failure no retry can mend, such as a bug,
sets the entry aside at once)."""
LATE_AFTER = timedelta(seconds=5)
"""An entry waiting longer than this means the workers do not keep up: it is logged."""

MOVE_AT_MOST = 256
"""Arrivals moved into the inbox in one transaction, at most (`move_arrivals`)."""

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


def store_many(
    connection: Connection | Session, arrivals: Sequence[Arrival], *, in_arrivals_file: bool = False
) -> list[bool]:
    """Keep several requests in the caller's transaction; for each, False if its key was
    seen before (a retry, or an earlier one of `arrivals`): nothing is stored for it.

    This is the whole of an ack's own work, so it is one prepared Core statement (the ORM
    would spend more time building the statement than the database spends running it).
    With `in_arrivals_file`, `connection` is SQLite's arrivals file (`move_arrivals`)."""
    if not arrivals:
        return []
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    rows = _rows(arrivals, in_arrivals_file=in_arrivals_file)
    statement = _store_statement(bind.dialect.name, in_arrivals_file=in_arrivals_file)
    return _answers(rows, set(connection.execute(statement, rows).scalars()))


def store_committed(
    intake: Engine, arrivals: Sequence[Arrival], *, in_arrivals_file: bool
) -> list[bool]:
    """`store_many` in a transaction of its own, straight on a DBAPI connection of `intake`.

    This is what an ack waits for, many hundred times a second under load: through
    SQLAlchemy's `Connection` the write cost an ack about 0.18 ms of interpreter time of its
    0.42 (SQLite), on the DBAPI connection about 0.05 (`docs/performance.md`). The rows are one
    statement (atomic also where `intake` autocommits), its SQL made once per batch size, each
    value converted by its column's own type, so they read back as if SQLAlchemy had written
    them. Every failure of the driver, connecting included, is raised as SQLAlchemy's own
    error (`DBAPIError.instance`, without the parameters: they are sealed reports), with a
    connection the server had closed invalidated, as `Connection.execute` would: the group
    commit tells a database that is away from one bad request by that class."""
    if not arrivals:
        return []
    dialect = intake.dialect
    insert = _raw_insert(dialect, in_arrivals_file=in_arrivals_file)
    rows = _rows(arrivals, in_arrivals_file=in_arrivals_file)
    sql = insert.sql(len(rows))
    parameters = [
        value if convert is None else convert(value)
        for row in rows
        for value, convert in zip(
            (row[name] for name in insert.columns), insert.converters, strict=True
        )
    ]
    driver_error: Any = dialect.loaded_dbapi.Error  # the DBAPI module's base class
    try:
        connection = intake.raw_connection()
    except driver_error as error:  # the pool lets the driver's own error through
        raise DBAPIError.instance(
            None,
            None,
            error,
            driver_error,
            hide_parameters=True,
            connection_invalidated=dialect.is_disconnect(error, None, None),
            dialect=dialect,
        ) from error
    try:
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(sql, parameters)
            stored = {str(found[0]) for found in cursor.fetchall()}
            connection.commit()
        except driver_error as error:
            closed = dialect.is_disconnect(error, connection.dbapi_connection, cursor)
            if closed:
                connection.invalidate(error)
            else:
                with contextlib.suppress(driver_error):
                    connection.rollback()
            raise DBAPIError.instance(
                sql,
                None,
                error,
                driver_error,
                hide_parameters=True,
                connection_invalidated=closed,
                dialect=dialect,
            ) from error
        finally:
            if cursor is not None:
                with contextlib.suppress(driver_error):
                    cursor.close()
    finally:
        connection.close()
    return _answers(rows, stored)


def _rows(arrivals: Sequence[Arrival], *, in_arrivals_file: bool) -> list[dict[str, Any]]:
    return [
        {
            "kind": arrival.kind[:32],
            "dedupe_key": arrival.dedupe_key[:128],
            "body": arrival.body,
            "received_at": arrival.received_at,
        }
        | (
            {}
            if in_arrivals_file
            else {
                "status": InboxStatus.PENDING,
                "next_attempt_at": arrival.received_at,
                "attempts": 0,
            }
        )
        for arrival in arrivals
    ]


def _answers(rows: list[dict[str, Any]], stored: set[str]) -> list[bool]:
    answers = []
    for row in rows:
        key = row["dedupe_key"]
        answers.append(key in stored)
        stored.discard(key)  # a second arrival with the same key in this batch is a retry
    return answers


@dataclass(frozen=True)
class _RawInsert:
    """`_store_statement` as SQL text for the DBAPI, and how each value is converted."""

    head: str
    """Up to VALUES."""
    tail: str
    """From ON CONFLICT on."""
    row: str
    """One row's placeholders."""
    columns: tuple[str, ...]
    converters: tuple[Callable[[Any], Any] | None, ...]

    @functools.lru_cache(maxsize=GROUP_COMMIT_BATCH)  # noqa: B019 (a few kept for good)
    def sql(self, count: int) -> str:
        """The statement for `count` rows (a batch of the group commit has at most 64)."""
        return f"{self.head} {', '.join([self.row] * count)} {self.tail}"


_RAW_INSERTS: dict[tuple[str, str, str, bool], _RawInsert] = {}


def _raw_insert(dialect: Dialect, *, in_arrivals_file: bool) -> _RawInsert:
    kind = (dialect.name, dialect.driver, dialect.paramstyle, in_arrivals_file)
    known = _RAW_INSERTS.get(kind)
    if known is not None:
        return known
    table: Any = ARRIVAL if in_arrivals_file else InboxEntry.__table__  # type: ignore[attr-defined]
    names: tuple[str, ...] = ("kind", "dedupe_key", "body", "received_at")
    if not in_arrivals_file:
        names += ("status", "next_attempt_at", "attempts")
    placeholder = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if placeholder is None:
        raise NotImplementedError(f"no SQL for the {dialect.paramstyle} parameter style")
    quote = dialect.identifier_preparer.quote
    made = _RawInsert(
        head=f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) VALUES",
        tail=f"ON CONFLICT ({quote('dedupe_key')}) DO NOTHING RETURNING {quote('dedupe_key')}",
        row=f"({', '.join([placeholder] * len(names))})",
        columns=names,
        converters=tuple(
            # The dialect's own form of the type (SQLite's DATETIME text, say), as SQLAlchemy
            # converts it: the type's own `bind_processor` alone leaves that step out.
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        ),
    )
    _RAW_INSERTS[kind] = made
    return made


@functools.cache
def _store_statement(dialect: str, *, in_arrivals_file: bool) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    module: Any = postgresql if dialect == "postgresql" else sqlite
    table: Any = ARRIVAL if in_arrivals_file else InboxEntry.__table__  # type: ignore[attr-defined]
    return (
        module.insert(table)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.dedupe_key)
    )


def move_arrivals(arrivals: Engine, inbox: Engine, *, at_most: int = MOVE_AT_MOST) -> int:
    """Move requests from SQLite's arrivals file into the inbox; how many there were.

    Why a file of their own: SQLite lets one connection at a time write to a file, and a
    worker holds the main file's write lock for the whole of an entry's work (the work and
    the entry's done mark commit together). An ack storing its request in that file waited
    for the work, 20 to 40 ms per report under load against well under one for its own
    insert; in a file of their own, requests being stored meet only each other and these
    moves (`feedbot.db.arrivals_engine`).

    SQLite in WAL mode does not commit two files together, so the arrivals are inserted into
    the inbox in one transaction and deleted from their file in the next. A process killed
    between the two leaves them to be moved again, and the inbox's unique key keeps each
    once, as it keeps a Slack retry of a request moved already. A worker moves before it
    takes an entry, and a move that failed stops it there: no entry is handled while its
    request may still wait here."""
    with arrivals.connect() as connection:
        rows = connection.execute(_ARRIVED, {"at_most": at_most}).all()
    if not rows:
        return 0
    with inbox.begin() as connection:
        landed = store_many(
            connection, [Arrival(r.kind, r.dedupe_key, r.body, r.received_at) for r in rows]
        )
    with arrivals.begin() as connection:
        # By key, not id: SQLite gives a deleted row's id to the next one, and a request
        # stored since must stay even if two movers were to meet.
        connection.execute(_MOVED, {"keys": [row.dedupe_key for row in rows]})
    for row, new in zip(rows, landed, strict=True):
        if not new:
            log.info("%s already received (%s); not storing it again", row.kind, row.dedupe_key)
    return len(rows)


_ARRIVED = sa_select(ARRIVAL).order_by(ARRIVAL.c.id).limit(bindparam("at_most"))
_MOVED = delete(ARRIVAL).where(ARRIVAL.c.dedupe_key.in_(bindparam("keys", expanding=True)))


class Taken(NamedTuple):
    """An entry taken to be handled: what its handling needs of it. (A model object of the
    whole row cost as much as the statement that took it.)"""

    id: int
    kind: str
    body: str


def take_next(session: Session, *, now: datetime) -> Taken | None:
    """The entry due the longest (the first to arrive, unless a retry put it back later),
    locked for this transaction (other workers skip it), or None.

    One statement picks the entry and counts its attempt: on SQLite the write makes the
    transaction the writer from the start, so the work that follows never finds the database
    taken; on PostgreSQL the row stays locked until the transaction ends. Its work changes
    the entry only through `finish`."""
    row = session.execute(
        _take_statement(session.get_bind().dialect.name),
        {"pending": InboxStatus.PENDING, "now": now},
    ).first()
    if row is None:
        return None
    return Taken(*row)


@functools.cache
def _take_statement(dialect: str) -> Any:
    table: Any = InboxEntry.__table__  # type: ignore[attr-defined]
    # Read in the due index's own order, the first due entry is its first row. In id order,
    # PostgreSQL walked the primary key from the oldest entry kept and read every handled
    # one first (they are kept two days: 1.6 ms per take at 20,000), and SQLite sorted
    # every waiting one (40,000 steps with 6,000 waiting).
    due = (
        select(table.c.id)
        .where(table.c.status == bindparam("pending"), table.c.next_attempt_at <= bindparam("now"))
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(1)
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (
        update(table)
        .where(table.c.id == due.scalar_subquery())
        .values(attempts=table.c.attempts + 1)
        .returning(table.c.id, table.c.kind, table.c.body)
    )


def finish(session: Session, entry: Taken, *, now: datetime) -> None:
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
    """What waits in the inbox, and on SQLite in its arrivals file too."""
    pending, oldest = session.exec(
        select(func.count(), func.min(InboxEntry.received_at)).where(
            col(InboxEntry.status) == InboxStatus.PENDING
        )
    ).one()
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    # A look made before the bot ever ran must not create the file (as another user).
    arrivals = arrivals_engine(engine) if arrivals_exist(engine) else None
    if arrivals is not None:
        with arrivals.connect() as connection:
            arrived, first = connection.execute(_WAITING).one()
        pending += arrived
        oldest = first if oldest is None or (first is not None and first < oldest) else oldest
    failures = session.exec(
        select(func.count()).where(col(InboxEntry.status) == InboxStatus.FAILED)
    ).one()
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return Depth(pending=int(pending), oldest_seconds=age, failed=int(failures))


_WAITING = sa_select(func.count(), func.min(ARRIVAL.c.received_at))


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
