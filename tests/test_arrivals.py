"""On SQLite, requests are stored in an arrivals file of their own and moved into the inbox
by its worker: an ack never waits for the worker's write lock on the main file, and a move
interrupted at any point keeps every request once."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select
from sqlmodel import Session

from feedbot.core import inbox as core_inbox
from feedbot.db import arrivals_engine, make_engine
from feedbot.models import ARRIVAL, InboxEntry, InboxStatus
from feedbot.slack.app import build_app
from feedbot.slack.inbox import Inbox
from tests.harness import ALICE, BOB, CAROL, INTAKE, LEADER, Bot


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: PostgreSQL locks rows, not files, and stores requests in the inbox."""
    path = tmp_path / "feedbot.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def inbox(bot: Bot) -> Iterator[Inbox]:
    inbox = Inbox(bot.deps)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    bot.setup_team()
    yield inbox


def arrived(arrivals: Engine) -> int:
    with arrivals.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(ARRIVAL)).scalar_one())


def in_inbox(bot: Bot) -> list[InboxEntry]:
    with Session(bot.engine) as session:
        return list(session.exec(select(InboxEntry).order_by(InboxEntry.id)).scalars())  # type: ignore[call-overload]


def test_a_request_is_acked_while_the_worker_holds_the_main_files_write_lock(
    bot: Bot, inbox: Inbox
) -> None:
    """The worker holds the main file's write lock for a whole entry's work; another
    process's (here a plain `sqlite3` connection, which takes no turns) shows the same."""
    assert inbox.arrivals is not None
    database = bot.engine.url.database
    assert database is not None
    worker = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        worker.execute("BEGIN IMMEDIATE")  # the write lock, held
        started = time.monotonic()
        command = bot.command(ALICE, "Kasse 3 in Jena druckt keine Belege")
        posted, _ = bot.message(
            BOB, "Kasse in Gera friert ein", channel=INTAKE, event_id="Ev0ARR001"
        )
        waited = time.monotonic() - started
        assert arrived(inbox.arrivals) == 2, "stored before they were answered"
    finally:
        worker.rollback()
        worker.close()
    assert "being filed" in json.loads(command.body)["text"] and posted.status == 200
    assert waited < 1.0, f"the acks waited {waited:.2f} s for the main file"
    assert inbox.drain() == 2
    assert arrived(inbox.arrivals) == 0
    assert len(bot.reports()) == 2


def test_a_move_cut_short_between_its_two_commits_keeps_each_request_once(
    bot: Bot, inbox: Inbox
) -> None:
    """SQLite does not commit the two files together: the arrivals are in the inbox, but
    still in their file too, as after a process killed between the two commits."""
    arrivals = inbox.arrivals
    assert arrivals is not None
    bot.command(ALICE, "Kasse 3 in Jena druckt keine Belege")
    bot.message(BOB, "Kasse in Gera friert ein", channel=INTAKE, event_id="Ev0ARR002")

    def killed(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            raise RuntimeError("killed between the two commits")

    event.listen(arrivals, "before_cursor_execute", killed)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            core_inbox.move_arrivals(arrivals, bot.engine)
    finally:
        event.remove(arrivals, "before_cursor_execute", killed)
    assert arrived(arrivals) == 2 and len(in_inbox(bot)) == 2
    assert core_inbox.move_arrivals(arrivals, bot.engine) == 2, "moved again"
    assert arrived(arrivals) == 0
    assert [entry.kind for entry in in_inbox(bot)] == ["command", "event:message"]
    assert inbox.drain() == 2
    assert len(bot.reports()) == 2, "each filed once"


def test_a_retry_of_a_request_moved_already_is_filed_once(bot: Bot, inbox: Inbox) -> None:
    first, ts = bot.message(ALICE, "Drucker in Halle streikt", channel=INTAKE, event_id="Ev0ARR003")
    assert first.status == 200
    assert inbox.drain() == 1
    retry = bot.event(
        {
            "type": "message",
            "user": ALICE,
            "text": "Drucker in Halle streikt",
            "channel": INTAKE,
            "channel_type": "channel",
            "ts": ts,
            "event_ts": ts,
        },
        event_id="Ev0ARR003",
        retry_num=1,
    )
    assert retry.status == 200
    assert inbox.drain() == 0, "the retry found its key in the inbox when moved"
    assert arrived(inbox.arrivals or bot.engine) == 0
    assert len(bot.reports()) == 1


def test_the_arrivals_file_sits_beside_the_database_and_is_made_where_missing(
    bot: Bot, inbox: Inbox
) -> None:
    assert inbox.arrivals is not None and arrivals_engine(bot.engine) is inbox.arrivals
    assert inbox.arrivals.url.database == f"{bot.engine.url.database}-arrivals"
    with inbox.arrivals.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    assert mode == "wal"


def test_a_request_stored_while_two_moves_meet_is_not_deleted_by_the_later_one(
    bot: Bot, inbox: Inbox
) -> None:
    """Two moves read the same arrivals; the first to finish deletes them, and a request
    stored next is given the freed id (SQLite reuses the highest ids). The later move's
    delete must not take that one."""
    arrivals = inbox.arrivals
    assert arrivals is not None
    bot.command(ALICE, "Kasse 3 in Jena druckt keine Belege")
    met = False

    def another_move_first(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        nonlocal met
        if met or not statement.lstrip().upper().startswith("DELETE"):
            return
        met = True
        assert core_inbox.move_arrivals(arrivals, bot.engine) == 1
        bot.command(BOB, "Scanner in Gera defekt")  # stored with the id just freed

    event.listen(arrivals, "before_cursor_execute", another_move_first)
    try:
        assert core_inbox.move_arrivals(arrivals, bot.engine) == 1
    finally:
        event.remove(arrivals, "before_cursor_execute", another_move_first)
    assert met and arrived(arrivals) == 1, "the request stored meanwhile is still there"
    assert inbox.drain() == 2
    assert sorted(report.text for report in bot.reports()) == [
        "Kasse 3 in Jena druckt keine Belege",
        "Scanner in Gera defekt",
    ]


def test_arrivals_are_moved_when_the_worker_is_woken_and_else_after_the_poll_interval(
    bot: Bot, inbox: Inbox
) -> None:
    """A request stored by the process that answers wakes the worker, which moves it before
    its next entry; one whose wake-up was lost waits at most `poll_interval`."""
    arrivals = inbox.arrivals
    assert arrivals is not None
    slow = Inbox(bot.deps, poll_interval=60.0)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=slow)
    bot.command(ALICE, "Kasse 3 in Jena druckt keine Belege")  # stored and woken
    assert slow.drain() == 1
    with arrivals.begin() as connection:  # stored elsewhere, its wake-up lost
        core_inbox.store_many(
            connection,
            [core_inbox.Arrival("command", "lost-wake", "{}", bot.clock())],
            in_arrivals_file=True,
        )
    assert slow.drain() == 0 and arrived(arrivals) == 1, "not looked for before its time"
    slow.wake()
    slow.move_arrivals()
    assert arrived(arrivals) == 0 and len(in_inbox(bot)) == 2


def test_looking_at_the_depth_before_the_bot_ran_creates_no_arrivals_file(
    database_url: str,
) -> None:
    """`feedbot inbox` run by another user first must not leave a file the bot cannot write."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            assert core_inbox.depth(session, now=datetime.now(UTC)).pending == 0
        assert not Path(f"{engine.url.database}-arrivals").exists()
    finally:
        engine.dispose()


def test_arrivals_gather_while_moved_entries_wait_and_go_in_at_once_when_none_is_due(
    bot: Bot, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a worker moved what had arrived before every entry, one or two requests
    each time, three transactions per move. While entries it moved still wait it now moves
    at most once per `MOVE_GAP`; with nothing due it moves at once, so a request never
    waits for the gap when the worker is free."""
    arrivals = inbox.arrivals
    assert arrivals is not None
    moves: list[int] = []
    move = core_inbox.move_arrivals

    def counted(*args: object, **kwargs: object) -> int:
        moved = move(*args, **kwargs)  # type: ignore[arg-type]
        moves.append(moved)
        return moved

    monkeypatch.setattr(core_inbox, "move_arrivals", counted)
    monkeypatch.setattr("feedbot.slack.inbox.MOVE_GAP", 60.0)
    for n in range(3):
        bot.command(ALICE, f"Kasse {n} in Jena druckt keine Belege")
    assert inbox.handle_one()  # nothing moved before: the three go in, and one is filed
    assert moves == [3] and arrived(arrivals) == 0
    bot.command(BOB, "Drucker in Gera zieht kein Papier ein")  # arrives meanwhile
    assert inbox.handle_one() and inbox.handle_one()  # the two moved before go first
    assert moves == [3] and arrived(arrivals) == 1, "moved before its turn"
    assert inbox.handle_one()  # those were taken: it goes in at once, not after the gap
    assert moves == [3, 1] and arrived(arrivals) == 0
    # Another worker (a drain from the command line, say) takes an entry this one moved:
    # this one still counts it as waiting, finds nothing due, and moves at once.
    other = Inbox(bot.deps)
    other.app = inbox.app
    bot.command(CAROL, "Kassenschublade in Suhl klemmt")
    bot.command(BOB, "Drucker in Gera zieht wieder kein Papier ein")
    assert inbox.handle_one() and moves == [3, 1, 2]
    assert other.drain() == 1 and arrived(arrivals) == 0
    bot.command(LEADER, "Kasse 4 in Jena druckt keine Belege")
    assert inbox.handle_one(), "left waiting for the gap"
    assert moves[-1] == 1 and arrived(arrivals) == 0
    assert not inbox.handle_one()
    assert [entry.status for entry in in_inbox(bot)] == [InboxStatus.DONE] * 7


def test_after_a_failed_move_the_worker_moves_again_before_it_takes_an_entry(
    bot: Bot, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A move that failed stops the worker there: no entry is taken while requests may
    still wait in the arrivals file, gathering or not."""
    arrivals = inbox.arrivals
    assert arrivals is not None
    monkeypatch.setattr("feedbot.slack.inbox.MOVE_GAP", 60.0)
    for n in range(2):
        bot.command(ALICE, f"Kasse {n} in Jena druckt keine Belege")
    assert inbox.handle_one()  # both moved, one filed: the other still waits
    bot.command(BOB, "Drucker in Gera zieht kein Papier ein")
    move = core_inbox.move_arrivals

    def failing(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(core_inbox, "move_arrivals", failing)
    with pytest.raises(RuntimeError, match="disk"):
        inbox.move_arrivals()
    with pytest.raises(RuntimeError, match="disk"):
        inbox.handle_one()  # tries to move again first, instead of gathering
    monkeypatch.setattr(core_inbox, "move_arrivals", move)
    assert inbox.handle_one() and arrived(arrivals) == 0
    assert inbox.drain() == 1
