"""Group commit: requests answered at the same moment are stored in one transaction, each
caller hears only once its own request is committed, and a failure reaches every caller of
its batch and no other (on SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from feedbot import db
from feedbot.core import inbox as core_inbox
from feedbot.core.group_commit import GroupCommit
from feedbot.db import arrivals_engine, make_engine
from feedbot.models import InboxEntry, InboxStatus
from feedbot.slack.app import build_app
from feedbot.slack.inbox import Inbox
from tests import slack_payloads as payloads
from tests.harness import ALICE, BOB, INTAKE, Bot

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def until(condition: object, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class HeldWrites:
    """A `write` whose first call waits until the test lets it go; records every batch it
    was given and the items it committed. An item in `failing` fails its batch with a
    database error; one in `poison` with an error of its own."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.committed: set[int] = set()
        self.release = threading.Event()
        self.failing: set[int] = set()
        self.poison: set[int] = set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        if not self.batches:
            self.release.wait(5)
        self.batches.append(list(items))
        if self.poison & set(items):
            raise ValueError(f"cannot store {sorted(self.poison & set(items))}")
        if self.failing & set(items):
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        self.committed.update(items)
        return [item * 10 for item in items]


def submit_all(group: GroupCommit[int, int], writes: HeldWrites, items: range) -> dict[int, object]:
    """Submit each item from a thread of its own while the first one's write is held, so
    the others queue, in the items' order; what each caller got back or raised. A caller
    that got an answer must find its item committed at that moment."""
    results: dict[int, object] = {}

    def call(item: int) -> None:
        try:
            results[item] = group.submit(item)
            assert item in writes.committed, f"{item} answered before it was committed"
        except Exception as exc:
            results[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    threads[0].start()
    until(lambda: group.waiting == 0 and group.writing)  # the first writes alone
    for queued, thread in enumerate(threads[1:], start=1):
        thread.start()  # queued before the next starts: threads started together may not be
        until(lambda queued=queued: group.waiting == queued)
    writes.release.set()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
    return results


def test_callers_waiting_together_are_written_in_one_batch() -> None:
    writes = HeldWrites()
    group: GroupCommit[int, int] = GroupCommit(writes)
    results = submit_all(group, writes, range(12))
    assert writes.batches[0] == [0], "a lone caller is written at once, not held for company"
    assert sorted(writes.batches[1]) == list(range(1, 12)), "those who waited: one batch"
    assert results == {item: item * 10 for item in range(12)}, "each caller gets its own answer"
    assert not group.writing and group.waiting == 0


def test_a_batch_is_bounded_and_the_rest_follow() -> None:
    writes = HeldWrites()
    group: GroupCommit[int, int] = GroupCommit(writes, max_batch=4)
    results = submit_all(group, writes, range(11))
    assert [len(batch) for batch in writes.batches] == [1, 4, 4, 2]
    assert sorted(item for batch in writes.batches for item in batch) == list(range(11))
    assert results == {item: item * 10 for item in range(11)}


def test_a_failed_batch_fails_its_callers_only() -> None:
    writes = HeldWrites()
    writes.failing = {5}
    group: GroupCommit[int, int] = GroupCommit(
        writes, max_batch=4, alone=lambda error: not isinstance(error, OperationalError)
    )
    results = submit_all(group, writes, range(9))
    assert len(writes.batches) == 3, "the database being away is not tried item by item"
    failed_batch = next(batch for batch in writes.batches if 5 in batch)
    for item in range(9):
        if item in failed_batch:
            assert isinstance(results[item], OperationalError), item
        else:
            assert results[item] == item * 10, item
    errors = [results[item] for item in failed_batch]
    assert len({id(error) for error in errors}) == len(errors), "each caller raises its own"
    assert group.submit(20) == 200, "the next caller after a failure is written"


def test_an_item_that_fails_on_its_own_fails_only_its_caller() -> None:
    """An error that may lie in one item (not the database being away): the batch's items
    are written again one by one, and only the bad one's caller hears of it."""
    writes = HeldWrites()
    writes.poison = {5}
    group: GroupCommit[int, int] = GroupCommit(
        writes, alone=lambda error: not isinstance(error, OperationalError)
    )
    results = submit_all(group, writes, range(9))
    assert isinstance(results[5], ValueError)
    assert {item: results[item] for item in range(9) if item != 5} == {
        item: item * 10 for item in range(9) if item != 5
    }
    assert writes.batches[2:] == [[item] for item in range(1, 9)], "then each alone"


def test_one_by_one_stops_when_the_database_fails() -> None:
    """Written one by one after a bad item, the rest share the database's failure once it
    comes, instead of each waiting for its own."""
    writes = HeldWrites()
    writes.poison, writes.failing = {3}, {6}
    group: GroupCommit[int, int] = GroupCommit(
        writes, alone=lambda error: not isinstance(error, OperationalError)
    )
    results = submit_all(group, writes, range(9))
    assert writes.batches[2:] == [[item] for item in range(1, 7)]
    assert isinstance(results[3], ValueError)
    assert all(isinstance(results[item], OperationalError) for item in (6, 7, 8))
    assert {item: results[item] for item in (0, 1, 2, 4, 5)} == {
        item: item * 10 for item in (0, 1, 2, 4, 5)
    }


def test_a_batch_holds_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GroupCommit(HeldWrites(), max_batch=0)


def moved_in(inbox: Inbox) -> list[InboxEntry]:
    """What the inbox holds once a worker has moved what arrived (SQLite) into it."""
    inbox.move_arrivals()
    with Session(inbox.engine) as session:
        return list(session.exec(select(InboxEntry)).all())


@pytest.mark.parametrize("in_arrivals_file", [False, True])
@pytest.mark.parametrize("through", ["sqlalchemy", "dbapi"])
def test_store_many_keeps_each_key_once(
    engine: Engine, in_arrivals_file: bool, through: str
) -> None:
    """Into the inbox, or on SQLite into the arrivals file first and then moved; through a
    SQLAlchemy connection (`store_many`, as moves do) or the DBAPI's (`store_committed`, as acks
    do): the rows read back the same either way."""
    arrivals = arrivals_engine(engine)
    if in_arrivals_file and arrivals is None:
        pytest.skip("PostgreSQL stores requests in the inbox directly")
    stores_into = arrivals if in_arrivals_file and arrivals is not None else engine

    at = NOW.replace(microsecond=250_001)

    def arrival(key: str, body: str = "") -> core_inbox.Arrival:
        return core_inbox.Arrival("command", key, body or f"body of {key}", at)

    def store(batch: list[core_inbox.Arrival]) -> list[bool]:
        if through == "dbapi":
            return core_inbox.store_committed(stores_into, batch, in_arrivals_file=in_arrivals_file)
        with stores_into.begin() as connection:
            return core_inbox.store_many(connection, batch, in_arrivals_file=in_arrivals_file)

    first = store([arrival("a", "first a"), arrival("b"), arrival("a", "second a")])
    again = store([arrival("c"), arrival("b", "retry of b")])
    assert first == [True, True, False], "a retry inside one batch is recognised"
    assert again == [True, False], "and one of an earlier batch"
    if arrivals is not None and in_arrivals_file:
        assert core_inbox.move_arrivals(arrivals, engine) == 3
    with Session(engine) as session:
        stored = session.exec(select(InboxEntry).order_by(InboxEntry.id)).all()  # type: ignore[arg-type]
    assert [(entry.dedupe_key, entry.body) for entry in stored] == [
        ("a", "first a"),
        ("b", "body of b"),
        ("c", "body of c"),
    ], "in the order they arrived, the first of each key"
    assert {(entry.kind, entry.status, entry.attempts) for entry in stored} == {
        ("command", InboxStatus.PENDING, 0)
    }
    assert {(entry.received_at, entry.next_attempt_at) for entry in stored} == {(at, at)}
    with Session(engine) as session:
        assert core_inbox.take_next(session, now=at) is not None, "due at once"


def test_a_failed_store_raises_sqlalchemys_error_without_the_bodies(engine: Engine) -> None:
    """`store_committed` writes on the DBAPI connection, but fails as SQLAlchemy would: its own
    error class (what the group commit tells one bad request from a database that is away
    by), no request body in the message (bodies are sealed reports), nothing of the batch
    stored, and the connection back in the pool, usable."""
    arrivals = arrivals_engine(engine)
    intake = arrivals if arrivals is not None else db.intake_engine(engine)
    in_arrivals_file = arrivals is not None
    good = core_inbox.Arrival("command", "good", "sealed-body-of-a-report", NOW)
    bad = core_inbox.Arrival("command", "bad", None, NOW)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError) as raised:
        core_inbox.store_committed(intake, [good, bad], in_arrivals_file=in_arrivals_file)
    assert "sealed-body-of-a-report" not in str(raised.value)
    assert not raised.value.connection_invalidated
    pool: Any = intake.pool
    assert pool.checkedout() == 0
    assert core_inbox.store_committed(intake, [good], in_arrivals_file=in_arrivals_file) == [True]
    if arrivals is not None:
        assert core_inbox.move_arrivals(arrivals, engine) == 1
    with Session(engine) as session:
        assert [entry.dedupe_key for entry in session.exec(select(InboxEntry)).all()] == ["good"]


def test_a_request_is_not_acked_when_no_connection_can_be_made(bot: Bot) -> None:
    """The database cannot be reached (a restart, a network cut) when the acks' pool needs a
    new connection: the driver's error on connecting comes out as SQLAlchemy's, one worth a
    retry, so the command is told to try again and the event gets 500 (Slack retries it),
    instead of being answered as if stored."""
    inbox = Inbox(bot.deps)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    bot.setup_team()
    intake = inbox.intake
    intake.dispose()  # the next write connects
    driver: Any = intake.dialect.loaded_dbapi

    def refuse(*_: object) -> None:
        raise driver.OperationalError("connection refused")

    event.listen(intake, "do_connect", refuse)
    try:
        command = bot.command(ALICE, "Kasse in Suhl friert ein")
        posted, _ = bot.message(
            BOB, "Kasse in Gera friert ein", channel=INTAKE, event_id="Ev0NOCONNECT"
        )
    finally:
        event.remove(intake, "do_connect", refuse)
    assert "try again" in json.loads(command.body)["text"]
    assert posted.status == 500
    assert not moved_in(inbox)


def test_requests_answered_together_share_transactions(bot: Bot) -> None:
    """Twenty `/feedback` commands at once, each acked only once stored: all twenty are in
    the inbox, once each, in fewer transactions than requests."""
    inbox = Inbox(bot.deps)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    bot.setup_team()
    writes: list[int] = []  # each write takes a connection of the acks' pool once
    event.listen(inbox.intake, "checkout", lambda *_: writes.append(1))
    statuses: list[int] = []
    start = threading.Barrier(20)

    def report(number: int) -> None:
        start.wait(5)
        response = bot.command(ALICE if number % 2 else BOB, f"Scanner {number} in Gera defekt")
        statuses.append(response.status)

    threads = [threading.Thread(target=report, args=(number,)) for number in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    acked_in = len(writes)
    stored = moved_in(inbox)
    assert statuses == [200] * 20
    assert len(stored) == 20 and len({entry.dedupe_key for entry in stored}) == 20
    assert 0 < acked_in < 20, f"{acked_in} transactions for 20 requests"
    assert inbox.drain() == 20


@pytest.mark.parametrize("fails", [True, False])
def test_a_request_is_answered_only_once_committed(
    bot: Bot, fails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose batch failed is not acked: a command is told to try again (Slack does
    not retry commands), an event gets 500 (Slack retries it). One whose batch committed is
    in the inbox when its answer comes. The database fails for real: on SQLite the arrivals
    table is renamed away meanwhile, on PostgreSQL another session holds the inbox's table
    locked past the acks' time limit."""
    monkeypatch.setattr(db, "STORE_TIMEOUT_MS", 300)  # read when the acks' pool connects
    inbox = Inbox(bot.deps)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    bot.setup_team()
    intake = inbox.intake

    def rename(old: str, new: str) -> None:
        with intake.begin() as connection:
            connection.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")

    with contextlib.ExitStack() as failing:
        if fails and inbox.arrivals is not None:
            rename("arrival", "arrival_away")
            failing.callback(rename, "arrival_away", "arrival")
        elif fails:
            holder = failing.enter_context(bot.engine.connect())
            holder.exec_driver_sql("LOCK TABLE inbox_entry IN ACCESS EXCLUSIVE MODE")
            failing.callback(holder.rollback)
        command = bot.command(ALICE, "Kasse in Suhl friert ein")
        posted, _ = bot.message(
            BOB, "Kasse in Gera friert ein", channel=INTAKE, event_id="Ev0GROUP01"
        )
    stored = moved_in(inbox)
    answer = json.loads(command.body)["text"]
    assert command.status == 200
    if fails:
        assert "try again" in answer and posted.status == 500 and not stored
    else:
        assert "being filed" in answer and posted.status == 200
        assert sorted(entry.kind for entry in stored) == ["command", "event:message"]


def test_a_write_held_up_on_postgresql_fails_before_slack_gives_up(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ack of a process waits for the write under way: one held up (here by another
    replica's uncommitted row with the same key) fails after `STORE_TIMEOUT_MS`, and its
    request is answered as failed, instead of keeping them all past Slack's 3 seconds."""
    if bot.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers wait for their turn (feedbot.sqlite_writer)")
    monkeypatch.setattr(db, "STORE_TIMEOUT_MS", 300)
    inbox = Inbox(bot.deps)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    bot.setup_team()
    form = payloads.slash_command(
        user=ALICE,
        text="Kasse in Suhl friert ein",
        channel="CGENERAL1",
        channel_name="general",
        response_url=bot.slack.new_response_url(),
        trigger_id="1337.42.held",
    )
    with bot.engine.connect() as other:
        other.begin()
        core_inbox.store(
            other, kind="command", dedupe_key="command:/feedback:1337.42.held", body="", now=NOW
        )
        started = time.monotonic()
        response = bot.dispatch(urlencode(form), "application/x-www-form-urlencoded")
        waited = time.monotonic() - started
        other.rollback()
    assert "try again" in json.loads(response.body)["text"]
    assert 0.3 <= waited < 2.0
    response = bot.dispatch(urlencode(form), "application/x-www-form-urlencoded")
    assert "being filed" in json.loads(response.body)["text"], "stored once the row is free"


def intake_connections(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": db.INTAKE_APPLICATION},
            ).scalar_one()
        )


def test_on_postgresql_a_request_is_stored_again_on_a_new_connection_after_a_restart(
    bot: Bot,
) -> None:
    """The acks' pool pings no connection before use (a round trip per ack): one the server
    closed (a restart, an idle timeout) fails its write, which is made again on a new one."""
    if bot.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's arrivals file has no server to close connections")
    inbox = Inbox(bot.deps)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    bot.setup_team()
    assert "being filed" in json.loads(bot.command(ALICE, "Kasse 1 in Suhl").body)["text"]
    assert intake_connections(bot.engine) == 1
    with bot.engine.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": db.INTAKE_APPLICATION},
        )
    until(lambda: intake_connections(bot.engine) == 0)
    answer = bot.command(ALICE, "Kasse 2 in Suhl")
    assert "being filed" in json.loads(answer.body)["text"]
    assert inbox.drain() == 2
    assert {report.text for report in bot.reports()} == {"Kasse 1 in Suhl", "Kasse 2 in Suhl"}


def test_on_postgresql_the_acks_pool_is_closed_with_its_engine(database_url: str) -> None:
    engine = make_engine(database_url)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        pytest.skip("the arrivals file is SQLite's")
    observer = make_engine(database_url)
    try:
        intake = db.intake_engine(engine)
        assert db.intake_engine(engine) is intake, "one per engine"
        with intake.begin() as connection:
            core_inbox.store(connection, kind="command", dedupe_key="k1", body="", now=NOW)
        assert intake_connections(observer) == 1
        engine.dispose()
        until(lambda: intake_connections(observer) == 0)
        assert db.intake_engine(engine) is not intake, "made afresh for an engine used again"
    finally:
        engine.dispose()
        observer.dispose()
