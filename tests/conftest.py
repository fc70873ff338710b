"""Shared fixtures: a real database (SQLite always, PostgreSQL when configured), the fake
Slack Web API, and a bot wired to both.

PostgreSQL runs when `FEEDBOT_TEST_DATABASE_URL` points at a server (CI sets it); otherwise
its half of every database test is skipped with a visible reason.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from feedbot import models
from feedbot.db import make_engine, normalise_url, upgrade
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, INTAKE, LEADER, LEADERSHIP, Bot, Clock

for variable in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):  # would switch Bolt to OAuth mode
    os.environ.pop(variable, None)

PG_URL = os.environ.get("FEEDBOT_TEST_DATABASE_URL")
"""CI sets FEEDBOT_REQUIRE_POSTGRES too, so a missing server fails the run instead of skipping."""


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Each test leaves logging as it found it; no test restores it on its own. A test that
    runs a command in-process (`feedbot.cli.main` sets logging up) otherwise left a handler
    writing to that test's captured output, which is closed once the test ends: whatever a
    thread logged later, in any test, ended in logging's own "--- Logging error ---" report."""
    names = ("", "slack_bolt", "slack_sdk", "alembic", "apscheduler")
    saved = [(logger, logger.handlers[:], logger.level) for logger in map(logging.getLogger, names)]
    hooks = sys.excepthook, threading.excepthook  # it routes uncaught errors to the log too
    yield
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    sys.excepthook, threading.excepthook = hooks


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (migrating per test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "feedbot.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    if not PG_URL:
        if os.environ.get("FEEDBOT_REQUIRE_POSTGRES"):
            pytest.fail("FEEDBOT_REQUIRE_POSTGRES is set but FEEDBOT_TEST_DATABASE_URL is not")
        pytest.skip(
            "PostgreSQL tests need FEEDBOT_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/postgres)"
        )
    server = make_url(normalise_url(PG_URL))
    name = f"feedbot_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        server, isolation_level="AUTOCOMMIT", poolclass=NullPool
    )  # survives restarts
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in models.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, migrated database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "feedbot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    _truncate_all(engine)
    engine.dispose()
    yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """The fake Slack Web API; any Block Kit violation the bot sent fails the test."""
    with FakeSlack() as slack:
        yield slack
        slack.assert_no_violations()


@pytest.fixture(name="slack")
def team_slack(fake_slack: FakeSlack) -> FakeSlack:
    """The fake Slack holding the leadership and intake channels, a reporter and a leader:
    for tests that run the bot as processes of its own (a module may define its own)."""
    fake_slack.add_channel(LEADERSHIP, name="leadership")
    fake_slack.add_channel(INTAKE, name="field")
    fake_slack.add_user(ALICE, locale="en-US")
    fake_slack.add_user(LEADER, locale="en-US")
    return fake_slack


@pytest.fixture
def bot(engine: Engine, fake_slack: FakeSlack, clock: Clock) -> Iterator[Bot]:
    bot = Bot(engine=engine, slack=fake_slack, clock=clock)
    yield bot
