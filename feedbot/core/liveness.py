"""Which feedbot processes are alive, so a dead one's claims are taken over within seconds.

The outbox lends an entry (a Slack call or a webhook event) to a sender for a minute
(`feedbot.core.outbox.LEASE`), in case the sender dies mid-call. That minute is needed only
when nobody can tell whether the sender is alive. Here each process can:

- On PostgreSQL every process holds a session-level advisory lock of its own (key
  `NAMESPACE`, its number) on a dedicated connection. PostgreSQL frees it when the process
  or its connection dies, so `pg_locks` lists exactly the live processes.
- On SQLite one process makes claims on a database file: the inbox workers' process of the
  one `feedbot run` that holds the lock file (`feedbot.election.SingleProcessLock`), or that
  `feedbot run` itself when it works its inbox in threads. Every claim not made by this
  process is a dead one's.

A dead process's claim ends when the call it began can no longer land (`CALL_TIMEOUT`):
sent again before that, an edit or an answer Slack was still taking would go out twice, or
an older edit land over a newer one. A post ends sooner (`POST_TAKEN_OVER_AFTER`): it is
rechecked before it is posted again, and a copy that lands after that is deleted once the
dead call could no longer land. Claims made without an owner (the CLI's serial `drain`)
are left to their lease.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime

from sqlalchemy import Connection, Engine, create_engine, select, text, update
from sqlalchemy.pool import NullPool
from sqlmodel import Session, col

from feedbot.core.outbox import CALL_TIMEOUT, LEASE, POST_TAKEN_OVER_AFTER
from feedbot.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

NAMESPACE = 0x6662  # "fb": first key of the two-key advisory locks, one per process
TAKEOVER_EVERY = 2.0
"""Seconds between two looks for a dead process's claims."""


class Liveness:
    """This process's identity (`owner`, stored with each claim) and the live processes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"
        self.number = random.randint(1, 2**31 - 1)
        self.owner = f"{self.number}"
        self._lock_engine: Engine | None = None
        self._connection: Connection | None = None
        self._guard = threading.Lock()

    def start(self) -> None:
        """Hold this process's lock (PostgreSQL); returns once it is held or failed once."""
        if self.postgresql:
            self._lock_engine = create_engine(
                self.engine.url.render_as_string(hide_password=False),
                poolclass=NullPool,
                connect_args={"connect_timeout": 5},
            )
            self._hold()

    def _hold(self) -> bool:
        with self._guard:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT 1"))
                    self._connection.commit()
                    return True
                except Exception:
                    log.warning("lost the connection that shows this process is alive")
                    self._close()
            assert self._lock_engine is not None
            try:
                self._connection = self._lock_engine.connect()
                self._connection.execute(
                    text("SELECT pg_advisory_lock(:ns, :n)"), {"ns": NAMESPACE, "n": self.number}
                )
                self._connection.commit()
                return True
            except Exception as exc:
                log.warning("cannot show this process is alive: %s", type(exc).__name__)
                self._close()
                return False

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                log.debug("closing the liveness connection failed", exc_info=True)
            self._connection = None

    def stop(self) -> None:
        with self._guard:
            self._close()
        if self._lock_engine is not None:
            self._lock_engine.dispose()

    def alive(self, session: Session) -> set[str]:
        """The owners of live processes (this one included)."""
        if not self.postgresql:
            return {self.owner}
        self._hold()
        rows = session.execute(
            text(
                "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :ns AND objsubid = 2"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"ns": NAMESPACE},
        ).all()
        return {str(row[0]) for row in rows} | {self.owner}

    def take_over(self, session: Session, *, now: datetime) -> int:
        """End the outbox claims of dead processes, so they are sent again (and rechecked
        first, as any taken-over claim is) without waiting out their lease. Returns how many.

        Not at once, though: a call the dead process began may still land. A claim ends
        `CALL_TIMEOUT` after its call began, which is when its lease was last renewed,
        `LEASE` before it runs out; a post's ends `POST_TAKEN_OVER_AFTER` after it, when
        Slack has shown nearly every post it took (see the module's docstring)."""
        alive = self.alive(session)
        claims = session.execute(
            select(
                col(OutboxMessage.id),
                col(OutboxMessage.lease_until),
                col(OutboxMessage.claimed_by),
                col(OutboxMessage.attempts),
                col(OutboxMessage.method),
            ).where(
                col(OutboxMessage.status) == OutboxStatus.SENDING,
                col(OutboxMessage.claimed_by).is_not(None),
                col(OutboxMessage.claimed_by).not_in(sorted(alive)),
                col(OutboxMessage.lease_until) >= now,
            )
        ).all()
        taken = 0
        for entry_id, lease_until, owner, attempts, method in claims:
            began = lease_until - LEASE
            post = method == "chat.postMessage"
            # Only the dead process's claim: another replica may have taken it meanwhile.
            result = session.execute(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.id) == entry_id,
                    col(OutboxMessage.status) == OutboxStatus.SENDING,
                    col(OutboxMessage.claimed_by) == owner,
                    col(OutboxMessage.attempts) == attempts,
                )
                .values(
                    lease_until=began + (POST_TAKEN_OVER_AFTER if post else CALL_TIMEOUT),
                    may_land_until=began + CALL_TIMEOUT if post else None,
                    claimed_by=None,
                )
                .execution_options(synchronize_session=False)
            )
            taken += int(result.rowcount)  # type: ignore[attr-defined]
        if taken:
            log.warning("took over %s outbox messages from a process that died", taken)
        return taken
