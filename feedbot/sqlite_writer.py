"""SQLite's one writer, taken in turns: requests Slack is waiting for first, nobody starved.

SQLite lets one connection write at a time. Left to itself, a connection that finds the
database taken sleeps in growing steps (its busy handler) and tries again, and it only wins
when it happens to try in the short gap between two other transactions. Under load the inbox
worker writes almost all the time, so the outbox sender, whose `mark_sent` makes a receipt
count as delivered, lost that race until its busy timeout ran out ("database is locked").

Every connection `feedbot.db.make_engine` opens to a SQLite file is a `TurnTakingConnection`:
the statement that starts a write transaction first waits for its turn among all threads of
the process writing to the same file, and `commit`, `rollback` or `close` hand the turn to
the next one. Turns asked for inside `urgent()` (storing a request in the inbox, which Slack
waits for) go first; the others go in the order they were asked for, and one that has waited
`FAIR_AFTER` goes before the urgent ones, so a steady stream of requests delays the work
behind them but never stops it. A thread that already holds the turn (with another
connection) goes on. Waiting is bounded by the busy timeout: after that the statement goes
ahead and SQLite decides, as before, so a thread holding the turn while it waits for another
can delay but never hang. Other processes (the CLI during a run) still meet the busy handler.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

FAIR_AFTER = 0.5
"""Seconds a turn waits at most for urgent ones asked for after it."""

_STARTS_A_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
"""The statements before which Python's `sqlite3` begins a transaction by itself."""

_urgency = threading.local()


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Write turns this thread asks for meanwhile go before the others."""
    before = getattr(_urgency, "on", False)
    _urgency.on = True
    try:
        yield
    finally:
        _urgency.on = before


@dataclass(eq=False)
class _Waiter:
    thread: int
    since: float
    handed: threading.Event = field(default_factory=threading.Event)


class WriteTurns:
    """The turns of one database file. The thread holding the turn may take it again."""

    def __init__(self, fair_after: float = FAIR_AFTER) -> None:
        self.fair_after = fair_after
        self._lock = threading.Lock()
        self._holder: int | None = None
        self._depth = 0
        self._urgent: deque[_Waiter] = deque()
        self._others: deque[_Waiter] = deque()

    def acquire(self, timeout: float, *, urgent: bool = False) -> bool:
        """Wait for this thread's turn; False when `timeout` passed first (nothing held)."""
        me = threading.get_ident()
        with self._lock:
            if self._holder == me:
                self._depth += 1
                return True
            if self._holder is None and not self._urgent and not self._others:
                self._holder, self._depth = me, 1
                return True
            waiter = _Waiter(me, time.monotonic())
            (self._urgent if urgent else self._others).append(waiter)
        if waiter.handed.wait(timeout):
            return True
        with self._lock:
            if waiter.handed.is_set():  # handed over just as the wait ran out
                return True
            (self._urgent if urgent else self._others).remove(waiter)
            return False

    def release(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth:
                return
            waiter = self._next()
            if waiter is None:
                self._holder = None
                return
            self._holder, self._depth = waiter.thread, 1
            waiter.handed.set()

    def _next(self) -> _Waiter | None:
        starved = bool(self._others) and (
            time.monotonic() - self._others[0].since >= self.fair_after
        )
        if self._urgent and not starved:
            return self._urgent.popleft()
        if self._others:
            return self._others.popleft()
        return None


_TURNS: dict[str, WriteTurns] = {}
_TURNS_LOCK = threading.Lock()


def turns_for(database: str) -> WriteTurns:
    """The turns of one database file, shared by every engine of this process opening it."""
    if database != ":memory:" and not database.startswith("file:"):
        database = os.path.realpath(database)
    with _TURNS_LOCK:
        return _TURNS.setdefault(database, WriteTurns())


class TurnTakingConnection(sqlite3.Connection):
    """A `sqlite3` connection whose write transactions wait for their turn (see above)."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.turns = turns_for(os.fsdecode(database))
        self.turn_timeout = float(kwargs.get("timeout", 5.0))
        """Seconds to wait for a turn; `feedbot.db` sets it to SQLite's busy timeout."""
        self._holding = False

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or TurnTakingCursor)

    def take_turn(self, statement: str) -> None:
        # Also in a transaction a savepoint began: it holds no write lock until it writes.
        if self._holding or not _STARTS_A_WRITE.match(statement):
            return
        self._holding = self.turns.acquire(self.turn_timeout, urgent=getattr(_urgency, "on", False))

    @property
    def writing(self) -> bool:
        """Whether the open transaction has written, so holds the file's write lock: nobody
        else commits anything until it ends."""
        return self._holding and self.in_transaction

    def give_turn_back(self) -> None:
        if self._holding and not self.in_transaction:
            self._holding = False
            self.turns.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.give_turn_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.give_turn_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._holding:
                self._holding = False
                self.turns.release()


class TurnTakingCursor(sqlite3.Cursor):
    connection: TurnTakingConnection

    def execute(self, sql: str, parameters: Any = (), /) -> TurnTakingCursor:
        self.connection.take_turn(sql)
        try:
            super().execute(sql, parameters)
        finally:
            self.connection.give_turn_back()  # nothing began (or it failed to begin)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> TurnTakingCursor:
        self.connection.take_turn(sql)
        try:
            super().executemany(sql, seq_of_parameters)
        finally:
            self.connection.give_turn_back()
        return self
