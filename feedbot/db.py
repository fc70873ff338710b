"""Engines, sessions and migrations.

Nothing connects at import time: callers build an engine with `make_engine(url)` and pass it
on. SQLite gets WAL (readers never block the writer), writers that take turns in the order
they came (`feedbot.sqlite_writer`), a busy timeout (for writers of other processes) and
enforced foreign keys; PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op
from sqlmodel import Session

from feedbot.errors import ConfigurationError
from feedbot.models import ARRIVAL
from feedbot.sqlite_writer import TurnTakingConnection

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    SQLAlchemyTimeoutError,
    OSError,
)
"""Failures worth a retry: the database or the network, not the request itself."""

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_MAPPED_BYTES = 256 * 1024 * 1024
"""Read the database file through memory mapping up to this size (shared by every
connection through the operating system's cache) instead of a `read` call per page: a
report's similar-report lookup reads thousands of index entries. With the pool handing out
the connection given back last (`make_engine`), a report's filing took 6% less CPU time
(`benchmarks.filing`, 10.1 → 9.5 ms)."""
ARRIVALS_SUFFIX = "-arrivals"
"""On SQLite, requests are first stored in a file named as the database with this added
(`feedbot.db-arrivals`; `feedbot.core.inbox.move_arrivals` says why), beside the `-wal` and
`-shm` files SQLite keeps."""


def unindexed(column: Any) -> Any:
    """`column` as `+column`, which no index answers (SQLite's documented way to keep a
    condition off an index; PostgreSQL reads it the same). Without statistics (feedbot never
    runs ANALYZE on SQLite) SQLite takes any condition on an indexed column for a selective
    one, also where nearly every row meets it."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def normalise_url(url: str) -> str:
    """Accept the `postgres://` and `postgresql://` spellings and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pooled: bool = True, **kwargs: Any) -> Engine:
    """An engine for `url`, with the per-connection settings feedbot relies on. Not `pooled`,
    each connection is closed when it is given back (a one-shot command's)."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise ConfigurationError(
            "DATABASE_URL is not a database URL; expected e.g. sqlite:///feedbot.db "
            "or postgresql+psycopg://user@host/dbname"
        ) from exc
    # A failed statement's error leaves out its values: they are report texts, customers'
    # contacts, reporters' ids, and the error is logged (and kept as an inbox entry's
    # `last_error`). The statement itself stays, which is what an operator needs.
    kwargs.setdefault("hide_parameters", True)
    if not pooled:
        kwargs["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        kwargs.setdefault(
            "connect_args",
            {"check_same_thread": False, "timeout": 30, "factory": TurnTakingConnection},
        )
        if pooled:
            # More connections than threads (server, outbox senders, jobs): a thread that
            # holds the write lock must never wait for a connection held by threads waiting
            # for it.
            kwargs.setdefault("pool_size", 40)
            kwargs.setdefault("max_overflow", 10)
            # The connection given back last is taken next: its page cache is the one still
            # valid (SQLite drops a connection's cache when another one has written since).
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    if pooled:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
        # The connection given back last is taken next: psycopg prepares a statement on a
        # connection once it ran there five times, and the server then neither parses nor
        # plans it again. Taken in turn, each connection saw too few runs of any statement.
        kwargs.setdefault("pool_use_lifo", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kwargs)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MAPPED_BYTES}")
    cursor.close()
    if isinstance(dbapi_connection, TurnTakingConnection):
        dbapi_connection.turn_timeout = SQLITE_BUSY_TIMEOUT_MS / 1000


STORE_TIMEOUT_MS = 2000
"""Longest a write of waiting requests may take on PostgreSQL (waiting for another
replica's lock on the same key, or a slow server) before it fails and its requests are
answered as failed (Slack retries an event; a command is told to try again), instead of
keeping every request of the process past Slack's 3 seconds."""

INTAKE_APPLICATION = "feedbot-intake"
"""How the acks' connections show in PostgreSQL's `pg_stat_activity`."""

_INTAKE: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
"""The acks' pool of each PostgreSQL engine (`intake_engine`)."""
_INTAKE_LOCK = threading.Lock()
"""Guards `_INTAKE` and `_ARRIVALS` (never held while connecting)."""


def intake_engine(engine: Engine) -> Engine:
    """The engine acks store requests with (`feedbot.slack.inbox.Inbox`): made once per
    engine, disposed with it. Storing is the whole of an ack's own work, one insert, and a
    transaction through `engine` cost several times that.

    On SQLite, the arrivals file beside the database (`arrivals_engine`). On PostgreSQL, the
    same database through a small pool of its own: autocommit (the insert is one statement,
    so no BEGIN and COMMIT round trips), each statement bounded by `STORE_TIMEOUT_MS`, and no
    ping before each use (`feedbot.slack.inbox.Inbox` writes again, once, on a new connection
    when the server had closed the one it took)."""
    arrivals = arrivals_engine(engine)
    if arrivals is not None:
        return arrivals
    if engine.dialect.name != "postgresql":
        return engine
    with _INTAKE_LOCK:
        found = _INTAKE.get(engine)
        if found is None:
            found = create_engine(
                engine.url,
                isolation_level="AUTOCOMMIT",
                pool_pre_ping=False,
                pool_size=2,  # a process writes one batch at a time (`GroupCommit`)
                max_overflow=4,
                connect_args={"connect_timeout": 5, "application_name": INTAKE_APPLICATION},
            )
            event.listen(found, "connect", _bound_statements)
            _dispose_with(engine, found, _INTAKE)
            _INTAKE[engine] = found
        return found


def _bound_statements(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {int(STORE_TIMEOUT_MS)}")


def _dispose_with(
    engine: Engine, companion: Engine, cache: weakref.WeakKeyDictionary[Engine, Engine]
) -> None:
    """Close `companion`'s connections when `engine` is disposed (a test, a CLI command)."""

    def disposed(_engine: Engine) -> None:
        with _INTAKE_LOCK:
            if cache.get(engine) is companion:
                del cache[engine]
        companion.dispose()

    event.listen(engine, "engine_disposed", disposed)


_ARRIVALS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
"""The arrivals file's engine of each SQLite engine (`arrivals_engine`)."""


def arrivals_engine(engine: Engine) -> Engine | None:
    """The engine of the arrivals file beside `engine`'s SQLite file (see
    `feedbot.core.inbox.move_arrivals`), made once per engine and disposed with it, its
    table created where missing; None on PostgreSQL, where requests go into the inbox."""
    path = _arrivals_path(engine)
    if path is None:
        return None
    with _INTAKE_LOCK:
        found = _ARRIVALS.get(engine)
    if found is not None:
        return found
    made = make_engine(engine.url.set(database=path).render_as_string(hide_password=False))
    try:
        with made.begin() as connection:  # two processes may create it at once
            connection.execute(CreateTable(ARRIVAL, if_not_exists=True))
            for index in ARRIVAL.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))
    except BaseException:
        made.dispose()
        raise
    with _INTAKE_LOCK:
        found = _ARRIVALS.get(engine)
        if found is None:  # else another thread made one meanwhile
            _dispose_with(engine, made, _ARRIVALS)
            _ARRIVALS[engine] = made
            return made
    made.dispose()
    return found


def arrivals_exist(engine: Engine) -> bool:
    """Whether the arrivals file beside `engine`'s SQLite file is there yet."""
    path = _arrivals_path(engine)
    return path is not None and Path(path).exists()


def _arrivals_path(engine: Engine) -> str | None:
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return database + ARRIVALS_SUFFIX


def holds_sqlite_write_lock(session: Session) -> bool:
    """Whether `session`'s transaction holds SQLite's one write lock (it wrote something):
    what it reads then cannot change before it commits. False on PostgreSQL."""
    connection = session.connection().connection.dbapi_connection
    return isinstance(connection, TurnTakingConnection) and connection.writing


_AT_COMMIT = "feedbot.at_commit"


def at_commit(session: Session, key: tuple[Any, ...], action: Callable[[], None]) -> None:
    """Run `action` as the session's transaction commits, after all else it did: for a
    statement that locks a row other transactions wait for, since PostgreSQL keeps the lock
    until the commit. Done earlier, the lock is held through everything after it, and the
    transactions that need the row (every report of a burst) take turns for all of that.

    One action per `key` (a later one replaces it), run in the order of their keys: the
    rows they lock are then locked in one order by every transaction, which cannot wait for
    each other in a cycle. Keys are tuples, a name first (`("group card", group_id)`,
    `("homes",)`). Within a savepoint (the inbox's replay) it still waits for the outer
    commit; an action whose savepoint or transaction rolls back is dropped."""
    if session.get_transaction() is None:
        session.connection()  # begins one: the action belongs to it
    actions: dict[tuple[Any, ...], tuple[SessionTransaction | None, Callable[[], None]]]
    actions = session.info.setdefault(_AT_COMMIT, {})
    # Left once, the key stays with where it was first left: a savepoint that asks again and
    # rolls back does not take the first one's action with it.
    transaction = session.get_nested_transaction() or session.get_transaction()
    actions[key] = (actions[key][0] if key in actions else transaction, action)


def left_at_commit(session: Session, key: tuple[Any, ...]) -> Callable[[], None] | None:
    """The action left for the commit under `key` in the session's transaction, if any: to
    add to one that does several things at once."""
    actions = session.info.get(_AT_COMMIT)
    return actions[key][1] if actions and key in actions else None


@event.listens_for(Session, "before_commit")
def _run_at_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: its work commits with the transaction's
    actions = session.info.pop(_AT_COMMIT, None)
    if actions:
        session.flush()  # after all else, even where nothing flushed it before the action
        for _, (_, action) in sorted(actions.items(), key=lambda item: item[0]):
            action()


@event.listens_for(Session, "after_soft_rollback")
def _drop_at_rollback(session: Session, previous: SessionTransaction) -> None:
    actions = session.info.get(_AT_COMMIT)
    if not actions:
        return
    for key, (transaction, _) in list(actions.items()):
        while transaction is not None and transaction is not previous:
            transaction = transaction.parent
        if transaction is previous:
            del actions[key]


@event.listens_for(Session, "after_transaction_end")
def _drop_at_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (and run), rolled back, or closed
        session.info.pop(_AT_COMMIT, None)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back if it raises.

    Also for what only reads, where it is run often: a session closed without a commit
    rolls back, and at every rollback psycopg forgets the statements it prepared on that
    connection (the server then parses and plans each of them again). An idle process's
    looks for work ended that way several times a second."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine | None = None) -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise ConfigurationError(
            f"migrations not found at {MIGRATIONS_DIR}; install feedbot from its repository "
            "checkout (pip install -e .)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for Alembic, in one transaction.

    On SQLite, foreign keys are off while migrating: Alembic's batch mode rebuilds a table by
    copying it and dropping the original, and with enforcement on, that DROP would run every
    ON DELETE CASCADE into the child tables (or fail). The pragma only takes effect outside a
    transaction, so it is set before the migration's transaction begins and reset after it.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                yield connection
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def upgrade(engine: Engine, revision: str = "head", *, secret_key: str = "") -> None:
    """Apply pending migrations; a no-op when the schema is current. `secret_key` is
    `FEEDBOT_SECRET_KEY`, for migrations that seal what was stored in the clear."""
    with migration_connection(engine) as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        config.attributes["secret_key"] = secret_key
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with migration_connection(engine) as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def pending_migrations(engine: Engine) -> list[str]:
    """Revisions between the database's current one and head."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    pending = []
    for revision in script.walk_revisions():
        if revision.revision in current:
            break
        pending.append(revision.revision)
    return pending


def upsert_insert(session: Session, table: Any) -> Any:
    """`INSERT` with `on_conflict_do_nothing` / `on_conflict_do_update`, for the session's
    database (SQLite and PostgreSQL spell it the same way through SQLAlchemy)."""
    from sqlalchemy.dialects import postgresql, sqlite

    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(table)


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query: what `/healthz` reports."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        log.warning("database unreachable", exc_info=True)
        return False
    return True
