"""SQLite's writers take turns in the order they came, so a busy writer starves nobody."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from feedbot.db import make_engine
from feedbot.sqlite_writer import TurnTakingConnection, WriteTurns


def _asked(turns: WriteTurns, count: int) -> None:
    """Until `count` threads wait for a turn: each asks after the one before."""
    deadline = time.monotonic() + 5
    while len(turns._urgent) + len(turns._others) < count:
        assert time.monotonic() < deadline, "a thread never asked for its turn"
        time.sleep(0.001)


def test_turns_go_in_the_order_they_were_asked_for() -> None:
    turns = WriteTurns()
    assert turns.acquire(timeout=1)
    served: list[int] = []

    def wait_for_turn(number: int) -> None:
        assert turns.acquire(timeout=5)
        served.append(number)
        turns.release()

    waiting = []
    for number in range(6):
        thread = threading.Thread(target=wait_for_turn, args=(number,))
        thread.start()
        waiting.append(thread)
        _asked(turns, number + 1)
    turns.release()
    for thread in waiting:
        thread.join(5)
    assert served == [0, 1, 2, 3, 4, 5]


def test_urgent_turns_go_first_and_a_turn_waiting_too_long_goes_before_them() -> None:
    """Storing a request Slack waits for goes before the work behind it; the work waits
    at most `fair_after` for urgent turns asked for after it."""
    turns = WriteTurns(fair_after=0.3)
    assert turns.acquire(timeout=1)
    served: list[str] = []

    def wait_for_turn(name: str, urgent: bool) -> None:
        assert turns.acquire(timeout=5, urgent=urgent)
        served.append(name)
        time.sleep(0.01)
        turns.release()

    def ask(name: str, urgent: bool) -> threading.Thread:
        waiting = len(turns._urgent) + len(turns._others)
        thread = threading.Thread(target=wait_for_turn, args=(name, urgent))
        thread.start()
        _asked(turns, waiting + 1)
        return thread

    threads = [ask("work", False), ask("ack 1", True), ask("ack 2", True)]
    turns.release()
    for thread in threads:
        thread.join(5)
    assert served == ["ack 1", "ack 2", "work"]

    served.clear()
    assert turns.acquire(timeout=1)
    threads = [ask("work", False)]
    time.sleep(0.3)  # the work has waited its longest
    threads += [ask("ack 3", True)]
    turns.release()
    for thread in threads:
        thread.join(5)
    assert served == ["work", "ack 3"]


def test_the_holder_may_take_its_turn_again_and_a_timed_out_ticket_is_passed_over() -> None:
    turns = WriteTurns()
    assert turns.acquire(timeout=1) and turns.acquire(timeout=1), "the same thread goes on"
    outcome: dict[str, bool] = {}

    def impatient() -> None:
        outcome["impatient"] = turns.acquire(timeout=0.05)

    def patient() -> None:
        outcome["patient"] = turns.acquire(timeout=5)
        turns.release()

    first = threading.Thread(target=impatient)
    first.start()
    first.join()
    second = threading.Thread(target=patient)
    second.start()
    turns.release()
    time.sleep(0.1)
    assert "patient" not in outcome, "taken twice, it is held until released twice"
    turns.release()
    second.join(5)
    assert outcome == {"impatient": False, "patient": True}


def test_a_writer_busy_all_the_time_lets_another_write_within_one_of_its_transactions(
    tmp_path: Path,
) -> None:
    """Like the inbox worker filing report after report, while the outbox sender wants to
    mark one message sent: it gets the next turn, not SQLite's busy handler's luck."""
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE note (id INTEGER PRIMARY KEY, who TEXT)"))
    stop = threading.Event()

    def busy_writer() -> None:
        while not stop.is_set():
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO note (who) VALUES ('worker')"))
                time.sleep(0.02)  # the rest of a report's work, write lock held

    worker = threading.Thread(target=busy_writer)
    worker.start()
    try:
        time.sleep(0.2)
        waits = []
        for _ in range(5):
            started = time.monotonic()
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO note (who) VALUES ('sender')"))
            waits.append(time.monotonic() - started)
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(5)
    assert max(waits) < 0.5, waits
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, TurnTakingConnection)
        assert raw.turn_timeout == 10.0, "waits for a turn as long as SQLite's busy timeout"
    engine.dispose()
