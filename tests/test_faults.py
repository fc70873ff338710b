"""Faults survived: a full disk, a read-only database, PostgreSQL restarting under traffic.

Slack's own failures (429, 5xx, timeouts for minutes) are covered in tests/test_outbox.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import Session, func, select

from feedbot.db import make_engine
from feedbot.models import Report, ReportSource, utcnow
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, INTAKE, Bot, Clock
from tests.test_processes import Replica, event_body, start, wait_for


def count_reports(bot: Bot) -> int:
    with Session(bot.engine) as session:
        return int(session.exec(select(func.count()).select_from(Report)).one())


def test_a_full_disk_gives_a_clear_answer_and_no_half_written_report(
    tmp_path: Path,
    sqlite_template: Path,
    fake_slack: FakeSlack,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "feedbot.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    full = {"on": False}

    @event.listens_for(engine, "connect")
    def limit_size(dbapi_connection: Any, _record: Any) -> None:
        if full["on"]:
            cursor = dbapi_connection.cursor()
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.close()

    def fill_the_disk() -> None:
        """Fill every page, then let no connection grow the file: SQLite's disk-full error."""
        raw = sqlite3.connect(path, isolation_level=None)  # each insert commits on its own
        raw.execute("CREATE TABLE IF NOT EXISTS ballast (data BLOB)")
        pages = raw.execute("PRAGMA page_count").fetchone()[0]
        raw.execute(f"PRAGMA max_page_count = {pages + 64}")
        with contextlib.suppress(sqlite3.OperationalError):
            while True:
                raw.execute("INSERT INTO ballast VALUES (randomblob(100))")
        raw.close()
        full["on"] = True
        engine.dispose()

    def free_space() -> None:
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("DROP TABLE ballast")
        raw.close()
        full["on"] = False
        engine.dispose()

    bot = Bot(engine=engine, slack=fake_slack, clock=clock)
    bot.setup_team()
    assert bot.command(ALICE, "Before the disk filled up").status == 200
    fill_the_disk()
    long_text = "Die Festplatte ist voll " * 120
    response = bot.command(ALICE, long_text)
    assert response.status == 200
    assert "did not work on our side" in json.loads(response.body)["text"]
    assert count_reports(bot) == 1
    event_response, ts = bot.message(ALICE, long_text, channel=INTAKE, event_id="Ev0FULL001")
    assert event_response.status == 500, "Slack retries the event later"
    assert count_reports(bot) == 1, "nothing half-written"
    assert "database or disk is full" in caplog.text
    free_space()
    retry, _ = bot.message(
        ALICE, long_text, channel=INTAKE, ts=ts, event_id="Ev0FULL001", retry_num=1
    )
    assert retry.status == 200
    assert count_reports(bot) == 2, "the retry filed it, once"


def test_a_read_only_database_refuses_clearly(
    tmp_path: Path, sqlite_template: Path, fake_slack: FakeSlack, clock: Clock
) -> None:
    path = tmp_path / "feedbot.db"
    shutil.copy(sqlite_template, path)
    writable = Bot(engine=make_engine(f"sqlite:///{path}"), slack=fake_slack, clock=clock)
    writable.setup_team()
    writable.engine.dispose()
    engine = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    bot = Bot(engine=engine, slack=fake_slack, clock=clock)
    response = bot.command(ALICE, "Into a read-only database")
    assert response.status == 200
    assert "did not work on our side" in json.loads(response.body)["text"]
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Report)).one() == 0


@pytest.fixture
def replica(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replica, FakeSlack]]:
    from tests.test_processes import pg_url as _unused  # noqa: F401  (fixture lives there)

    with FakeSlack() as slack:
        engine = make_engine(postgres_url)
        from feedbot.core.config import set_value
        from feedbot.db import session_scope
        from tests.conftest import _truncate_all
        from tests.harness import LEADERSHIP

        _truncate_all(engine)
        with session_scope(engine) as session:
            set_value(session, key="leadership_channel", raw=LEADERSHIP, actor="test")
            set_value(session, key="intake_channels", raw=INTAKE, actor="test")
            # Forty reports from one person during the outage, on purpose: no per-person limit.
            set_value(session, key="report_rate_limit", raw="0", actor="test")
        engine.dispose()
        process = start(postgres_url, slack, tmp_path, "replica")
        try:
            wait_for(lambda: process.health() is not None, 60, "the replica")
            yield process, slack
        finally:
            process.process.send_signal(signal.SIGTERM)
            try:
                process.process.wait(10)
            except subprocess.TimeoutExpired:
                process.process.kill()


@pytest.mark.slow
def test_postgresql_restarting_under_traffic_loses_no_report(
    replica: tuple[Replica, FakeSlack], postgres_url: str
) -> None:
    server, slack = replica
    cluster = subprocess.run(
        ["ls", "/etc/postgresql"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    statuses: list[int] = []
    failures_during_gap: list[float] = []

    def send(number: int) -> None:
        ts = slack.add_message(INTAKE, f"Störung Nummer {number}", user=ALICE)
        body = event_body(f"Ev0PGRST{number:03d}", ts)
        for attempt in range(8):  # Slack retries a failed event a few times
            started = time.monotonic()
            status = server.post(
                body, "application/json", {"X-Slack-Retry-Num": str(attempt)} if attempt else None
            )
            statuses.append(status)
            if status == 200:
                return
            failures_during_gap.append(time.monotonic() - started)
            time.sleep(1.5)
        raise AssertionError(f"event {number} never got through")

    sender = threading.Thread(target=lambda: [send(n) for n in range(40)])
    sender.start()
    time.sleep(1.0)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    sender.join(180)
    assert not sender.is_alive()
    wait_for(
        lambda: (server.health() or {}).get("ok") is True, 30, "the replica to recover by itself"
    )
    engine = make_engine(postgres_url)

    def stored() -> tuple[int, int]:  # acked at once, filed from the inbox a moment later
        with engine.connect() as connection:
            counts = connection.execute(
                text("SELECT count(*), count(DISTINCT source_ts) FROM report")
            ).one()
        return int(counts[0]), int(counts[1])

    wait_for(lambda: stored()[0] >= 40, 60, "every report")
    assert stored() == (40, 40), "every report stored once"
    engine.dispose()
    assert all(seconds < 6 for seconds in failures_during_gap), "requests during the gap fail fast"
    assert statuses.count(200) == 40


@pytest.mark.slow
def test_a_bot_killed_while_sending_the_digest_sends_it_once_after_restart(
    postgres_url: str, tmp_path: Path
) -> None:
    from feedbot.core.config import set_value
    from feedbot.db import session_scope
    from feedbot.models import OutboxMessage, OutboxStatus
    from tests.conftest import _truncate_all
    from tests.harness import LEADERSHIP

    engine = make_engine(postgres_url)
    _truncate_all(engine)
    with session_scope(engine) as session:
        last_week = utcnow() - timedelta(days=7)
        set_value(  # configured before last week, whose digest is due
            session,
            key="leadership_channel",
            raw=LEADERSHIP,
            actor="test",
            now=last_week - timedelta(days=7),
        )
        for number in range(3):  # a week with reports: the digest brings a chart and a CSV
            session.add(
                Report(
                    created_at=last_week,
                    updated_at=last_week,
                    source=ReportSource.MODAL,
                    reporter_id=ALICE,
                    text=f"Kassensystem hängt, Shop {number}",
                    category="IT systems",
                    leadership_channel=LEADERSHIP,
                )
            )

    def digest_entries() -> list[OutboxMessage]:
        """The digest's entries, and the second look for copies of a post taken over."""
        with Session(engine) as session:
            return [
                e
                for e in session.exec(select(OutboxMessage)).all()
                if e.purpose.startswith("digest") or e.purpose == "copies"
            ]

    with FakeSlack() as slack:
        slack.add_channel(LEADERSHIP, name="leadership")
        # Slack answers posts slowly: the bot is killed while Slack is still taking the digest.
        slack.fail("chat.postMessage", times=1, status=200, error="", delay=4.0)
        first = start(postgres_url, slack, tmp_path, "first")
        try:
            wait_for(
                lambda: any(e.status == OutboxStatus.SENDING for e in digest_entries()),
                60,
                "the digest in flight",
            )
        finally:
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
        second = start(postgres_url, slack, tmp_path, "second")
        try:
            wait_for(
                lambda: (
                    digest_entries()
                    and all(e.status == OutboxStatus.SENT for e in digest_entries())
                ),
                150,
                "the digest complete after the restart, and copies looked for",
            )
        finally:
            second.process.send_signal(signal.SIGTERM)
            second.process.wait(10)
        posts = [
            m for m in slack.messages(LEADERSHIP) if str(m["text"]).startswith("Weekly digest")
        ]
        assert len(posts) == 1, "posted once, though the first attempt's outcome was never recorded"
        files = [f["filename"] for f in slack.files]
        assert len(files) == len(set(files)) >= 2, "chart and CSV, once each"
    engine.dispose()
