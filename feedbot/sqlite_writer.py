"""SQLite's one writer, taken in turns: first come, first served.

SQLite lets one connection write at a time. Left to itself, a connection that finds the
database taken sleeps in growing steps (its busy handler) and tries again, and it only wins
when it happens to try in the short gap between two other transactions. Under load the inbox
worker writes almost all the time, so the outbox sender, whose `mark_sent` makes a receipt
count as delivered, lost that race until its busy timeout ran out ("database is locked").

Every connection `feedbot.db.make_engine` opens to a SQLite file is a `TurnTakingConnection`:
the statement that starts a write transaction first waits for its turn, in the order the
turns were asked for, among all threads of the process writing to the same file; `commit`,
`rollback` or `close` give the turn to the next. A thread that already holds the turn (with
another connection) goes on, as SQLite itself would make it wait for nobody else. Waiting is
bounded by the busy timeout: after that the statement goes ahead and SQLite decides, as
before, so a thread holding the turn while it waits for another can delay but never hang.
Other processes (the CLI during a run) still meet the busy handler.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

_STARTS_A_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
"""The statements before which Python's `sqlite3` begins a transaction by itself."""


class WriteTurns:
    """A first-come, first-served lock that the thread holding it may take again."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._holder: int | None = None
        self._depth = 0
        self._skipped: set[int] = set()
        """Tickets whose threads stopped waiting (timed out) before their turn came."""

    def acquire(self, timeout: float) -> bool:
        """Wait for this thread's turn; False when `timeout` passed first (nothing held)."""
        me = threading.get_ident()
        with self._changed:
            if self._holder == me:
                self._depth += 1
                return True
            ticket = self._next_ticket
            self._next_ticket += 1
            if not self._changed.wait_for(lambda: self._serving == ticket, timeout):
                # Give up the ticket without holding up those behind it.
                self._skipped.add(ticket)
                self._advance()
                return False
            self._holder = me
            self._depth = 1
            return True

    def release(self) -> None:
        with self._changed:
            self._depth -= 1
            if self._depth:
                return
            self._holder = None
            self._serving += 1
            self._advance()

    def _advance(self) -> None:
        """Pass over tickets whose threads stopped waiting, then wake the next one."""
        while self._holder is None and self._serving in self._skipped:
            self._skipped.discard(self._serving)
            self._serving += 1
        self._changed.notify_all()


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

    turns: WriteTurns
    turn_timeout: float

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
        self._holding = self.turns.acquire(self.turn_timeout)

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
