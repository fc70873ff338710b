"""The migrations build exactly the models' schema, on SQLite and PostgreSQL, and can be
undone and redone; and connections get the per-connection settings feedbot relies on.

Each test starts from an EMPTY database (the shared fixtures hand out migrated ones).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from feedbot import models
from feedbot.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_MAPPED_BYTES,
    alembic_config,
    downgrade,
    make_engine,
    migration_connection,
    normalise_url,
    pending_migrations,
    upgrade,
)
from feedbot.models import MeToo, Report, ReportSource
from tests.harness import IDENTITIES, SECRET_KEY

PG_URL = os.environ.get("FEEDBOT_TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database without a single table: a new SQLite file, or a new
    PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        if os.environ.get("FEEDBOT_REQUIRE_POSTGRES"):
            pytest.fail("FEEDBOT_REQUIRE_POSTGRES is set but FEEDBOT_TEST_DATABASE_URL is not")
        pytest.skip("PostgreSQL tests need FEEDBOT_TEST_DATABASE_URL")
    server = make_url(normalise_url(PG_URL))
    name = f"feedbot_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def drift(engine: Engine) -> list[object]:
    """What autogenerate would put into a new migration: nothing, if models and migrations agree."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "target_metadata": models.metadata}
        )
        return list(compare_metadata(context, models.metadata))


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def test_upgrade_matches_the_models_and_downgrade_removes_everything(empty_engine: Engine) -> None:
    model_tables = set(models.metadata.tables)
    assert tables(empty_engine) == set()

    upgrade(empty_engine)
    assert tables(empty_engine) == model_tables | {"alembic_version"}
    assert drift(empty_engine) == []
    assert pending_migrations(empty_engine) == []
    upgrade(empty_engine)  # a no-op when current
    assert pending_migrations(empty_engine) == []

    downgrade(empty_engine, "base")
    assert tables(empty_engine) <= {"alembic_version"}
    assert pending_migrations(empty_engine) == list(reversed(revisions()))

    upgrade(empty_engine)
    assert tables(empty_engine) == model_tables | {"alembic_version"}
    assert drift(empty_engine) == []


def test_every_revision_downgrades_and_upgrades_on_its_own(empty_engine: Engine) -> None:
    """Step by step, so a downgrade that only works as part of `base` is caught too."""
    steps = revisions()
    assert steps, "no migrations found"
    for revision in steps:
        upgrade(empty_engine, revision)
        after_upgrade = tables(empty_engine)
        downgrade(empty_engine, "-1")
        upgrade(empty_engine, revision)
        assert tables(empty_engine) == after_upgrade, revision
    assert drift(empty_engine) == []


def test_anonymous_people_stored_in_the_clear_before_are_sealed_on_upgrade(
    empty_engine: Engine,
) -> None:
    upgrade(empty_engine, "0007")
    with empty_engine.begin() as connection:
        for report_id, anonymous, reporter in ((1, True, "U0ANON001"), (2, False, "U0NAMED01")):
            connection.execute(
                text(
                    "INSERT INTO report (id, created_at, updated_at, source, reporter_id, "
                    "anonymous, text, category, urgency, callback_requested, status, "
                    "me_too_count, source_channel, source_ts) VALUES (:id, :now, :now, "
                    "'direct_message', :reporter, :anonymous, 'Kasse hängt', 'Other', "
                    "'normal', false, 'open', 1, :channel, :ts)"
                ),
                {
                    "id": report_id,
                    "now": "2026-11-18 09:00:00.000000",
                    "reporter": reporter,
                    "anonymous": anonymous,
                    "channel": f"D0CHANNEL{report_id}",
                    "ts": f"1763456789.00010{report_id}",
                },
            )
        connection.execute(
            text(
                "INSERT INTO me_too (report_id, user_id, created_at) "
                "VALUES (2, 'U0METOO01', '2026-11-18 10:00:00.000000')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO timeline_entry (report_id, at, actor_id, action) "
                "VALUES (2, '2026-11-18 10:00:00.000000', 'U0METOO01', 'me_too')"
            )
        )
    with pytest.raises(RuntimeError, match="set FEEDBOT_SECRET_KEY"):
        upgrade(empty_engine)
    assert pending_migrations(empty_engine) != [], "nothing half done"
    upgrade(empty_engine, secret_key=SECRET_KEY)
    assert drift(empty_engine) == []
    with Session(empty_engine) as session:
        anonymous, named = session.get(Report, 1), session.get(Report, 2)
        assert anonymous is not None and named is not None
        assert anonymous.reporter_id is None and anonymous.source_channel is None
        assert IDENTITIES.open(anonymous.reporter_sealed) == "U0ANON001"
        assert anonymous.reporter_key == IDENTITIES.reporter_key("U0ANON001")
        assert named.reporter_id == "U0NAMED01" and named.source_channel == "D0CHANNEL2"
        (me_too,) = session.exec(select(MeToo)).all()
        assert IDENTITIES.open(me_too.user_sealed) == "U0METOO01"
        assert me_too.user_key == IDENTITIES.me_too_key(2, "U0METOO01")
    with empty_engine.connect() as connection:
        actors = connection.execute(text("SELECT actor_id FROM timeline_entry")).all()
    assert actors == [(None,)]


def test_a_table_rebuild_on_sqlite_keeps_the_rows_that_reference_it(tmp_path: Path) -> None:
    """Alembic's batch mode rebuilds a SQLite table by copying and dropping it. With foreign
    keys enforced, the DROP would cascade into `me_too`; migrations run with them off."""
    engine = make_engine(f"sqlite:///{tmp_path / 'rebuild.db'}")
    upgrade(engine)

    def seed() -> None:
        with Session(engine) as session:
            for row in session.exec(select(MeToo)):
                session.delete(row)
            for report in session.exec(select(Report)):
                session.delete(report)
            session.flush()
            report = Report(source=ReportSource.MODAL, text="Printer jams", category="Other")
            session.add(report)
            session.flush()
            assert report.id is not None
            session.add(
                MeToo(
                    report_id=report.id,
                    user_sealed=IDENTITIES.seal("U0COLLEAGUE"),
                    user_key=IDENTITIES.me_too_key(report.id or 0, "U0COLLEAGUE"),
                )
            )
            session.commit()

    def rebuild_report_table(connection: object) -> None:
        operations = Operations(
            MigrationContext.configure(connection, opts={"render_as_batch": True})  # type: ignore[arg-type]
        )
        with operations.batch_alter_table("report", recreate="always"):
            pass

    def me_too_rows() -> int:
        with Session(engine) as session:
            return len(session.exec(select(col(MeToo.id))).all())

    seed()
    with engine.begin() as connection:  # what migrating used to do
        rebuild_report_table(connection)
    assert me_too_rows() == 0, "the hazard this guards against is gone; simplify the guard?"

    seed()
    with migration_connection(engine) as connection:
        rebuild_report_table(connection)
    assert me_too_rows() == 1

    with engine.connect() as connection:  # enforcement is back on for everyone else
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_sqlite_connections_get_wal_foreign_keys_a_busy_timeout_and_mapped_reads(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    upgrade(engine)
    seen: list[tuple[object, ...]] = []

    def inspect_connection() -> None:
        with engine.connect() as connection:
            seen.append(
                tuple(
                    connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in (
                        "journal_mode",
                        "foreign_keys",
                        "busy_timeout",
                        "synchronous",
                        "mmap_size",
                    )
                )
            )

    # Two connections at once, so the second is a new one rather than the first reused.
    with engine.connect():
        thread = threading.Thread(target=inspect_connection)
        thread.start()
        thread.join()
        inspect_connection()
    assert [settings[:4] for settings in seen] == [("wal", 1, SQLITE_BUSY_TIMEOUT_MS, 1)] * 2
    # (A build of SQLite may cap the size lower: mapped all the same.)
    assert all(0 < int(str(settings[4])) <= SQLITE_MAPPED_BYTES for settings in seen)

    # The connection given back last is the next one taken: its page cache is still warm.
    with engine.connect() as connection:
        last = connection.connection.dbapi_connection
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is last

    with Session(engine) as session:  # enforced, not merely switched on
        session.add(MeToo(report_id=999_999, user_sealed="sealed", user_key="key"))
        with pytest.raises(IntegrityError):
            session.commit()
    engine.dispose()


def test_postgresql_statements_run_often_stay_prepared_on_the_connection_used_last(
    postgres_url: str,
) -> None:
    """psycopg prepares a statement on a connection once it has run there five times, and
    the server then skips parsing and planning it. The pool must hand out the connection
    given back last: taken in turn, each of a busy process's connections saw too few runs
    of any statement to prepare it, and the server planned each of them every time."""
    engine = make_engine(postgres_url)
    statement = select(Report.id).where(col(Report.id) == 0)
    try:
        # Three connections in the pool, as a process with several threads keeps.
        with engine.connect(), engine.connect(), engine.connect():
            pass
        for _ in range(8):
            with Session(engine) as session:
                session.exec(statement).all()
                session.commit()
        with Session(engine) as session:
            prepared = session.execute(
                text(
                    "SELECT count(*) FROM pg_prepared_statements"
                    " WHERE statement LIKE 'SELECT report.id%'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert prepared == 1
