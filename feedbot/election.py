"""Which process runs the scheduled jobs: the *job runner*.

(Not to be confused with the leaders who triage reports; this word is for processes.)
APScheduler's own FAQ: several schedulers must never share work. With PostgreSQL, any number
of feedbot processes may run; they elect one job runner with a session-level advisory
lock, held on a dedicated connection (a pooled connection returned to the pool would keep
the lock without anyone knowing). When the job runner dies, PostgreSQL ends its session and frees
the lock, and another process takes it within one `interval`. With SQLite there is one
process per database file, enforced by a file lock: a second `feedbot run` is refused.
Every job is idempotent per period anyway, so a brief overlap during a failover is harmless.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from feedbot.errors import ConfigurationError

log = logging.getLogger(__name__)

LOCK_KEY = 0x6665_6564_626F_74  # "feedbot"
"""The advisory lock's key: one per database, whatever the number of processes."""


class JobRunnerElection:
    """Calls `on_elected` when this process becomes the job runner and `on_deposed` when it
    stops being one (its lock connection broke). Checks every `interval` seconds."""

    def __init__(
        self,
        url: str,
        *,
        on_elected: Callable[[], None],
        on_deposed: Callable[[], None],
        interval: float = 5.0,
    ) -> None:
        self._engine: Engine = create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": 5}
        )
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self.interval = interval
        self._connection: Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs_jobs = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="job-runner-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)
        self._release()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("job runner election check failed")
            self._stop.wait(self.interval)

    def check(self) -> bool:
        """One round: keep the lock if held and alive, else try to take it."""
        if self.runs_jobs:
            if self._alive():
                return True
            log.warning("lost the scheduler lock (database connection gone); stepping down")
            self._release()
            self.runs_jobs = False
            self._on_deposed()
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            acquired = bool(
                self._connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
                ).scalar()
            )
            self._connection.commit()
        except Exception as exc:
            log.warning("cannot reach the database for the scheduler lock: %s", type(exc).__name__)
            self._release()
            return False
        if acquired:
            self.runs_jobs = True
            log.info("this process now runs the scheduled jobs (pid %s)", os.getpid())
            self._on_elected()
        return acquired

    def _alive(self) -> bool:
        try:
            assert self._connection is not None
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
            return True
        except Exception:
            return False

    def _release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                log.debug("closing the lock connection failed", exc_info=True)
            self._connection = None


RELEASE_WITHIN = 3.0
"""Seconds a starting `feedbot run` waits for the lock file: a bot just killed keeps it until
its inbox workers' process has seen it go, a moment later (`feedbot.worker_process`)."""


class SingleProcessLock:
    """An exclusive lock on `<database file>.lock`, held while `feedbot run` runs on SQLite."""

    def __init__(self, database_path: str) -> None:
        self.path = Path(f"{database_path}.lock")
        self._file: IO[str] | None = None

    def acquire(self, wait: float = RELEASE_WITHIN) -> None:
        """Take the lock, waiting up to `wait` seconds for a holder on its way out."""
        handle = self.path.open("a+")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigurationError(
                f"another feedbot run ({holder}) already uses {self.path.with_suffix('')}. "
                "SQLite serves one bot process; stop the other one, or use PostgreSQL "
                "(DATABASE_URL=postgresql+psycopg://…) to run several. "
                "The other feedbot commands keep working beside the running bot."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def fileno(self) -> int:
        """The lock file's descriptor: a child process that keeps it open keeps the lock held
        after this process is gone."""
        assert self._file is not None, "acquire the lock first"
        return self._file.fileno()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
