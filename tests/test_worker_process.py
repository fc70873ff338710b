"""The bot's end of its inbox workers' process (`feedbot.worker_process.WorkerProcess`), with
small stand-in children: what it tells never blocks, a child that exits is started again
(with growing pauses, and never after `stop`), and what a child reports reaches `/metrics`."""

from __future__ import annotations

import io
import os
import signal
import sys
import time

import pytest

from feedbot.metrics import REGISTRY
from feedbot.worker_process import ParentLink, WorkerProcess, _heard
from tests.harness import process_gone


def child(code: str) -> list[str]:
    """A stand-in child; `WorkerProcess` appends `--report-fd N` (sys.argv[2] here)."""
    return [sys.executable, "-c", code]


def test_telling_a_child_that_does_not_read_never_blocks() -> None:
    workers = WorkerProcess(child("import time; time.sleep(60)"))
    workers.start()
    pid = workers.pid
    assert pid is not None
    try:
        started = time.monotonic()
        for _ in range(50_000):  # far more than a pipe holds
            workers.wake()
        assert time.monotonic() - started < 5
    finally:
        started = time.monotonic()
        workers.stop(timeout=0.5)  # the QUIT does not fit either: it is killed
    assert time.monotonic() - started < 5
    assert process_gone(pid)


def test_a_child_that_exits_is_started_again_but_not_after_stop() -> None:
    workers = WorkerProcess(child("import sys; sys.exit(3)"), restart_after=0.05)
    workers.start()
    deadline = time.monotonic() + 10
    while workers.starts < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers.starts >= 3
    workers.stop(timeout=1)
    starts = workers.starts
    time.sleep(0.5)
    assert workers.starts == starts


def test_reports_filed_and_deliveries_made_by_the_child_are_counted_here() -> None:
    def counted() -> tuple[float, float]:
        filed = REGISTRY.get_sample_value(
            "feedbot_reports_created_total", {"source": "direct_message"}
        )
        sent = REGISTRY.get_sample_value("feedbot_outbox_deliveries_total", {"outcome": "sent"})
        return filed or 0.0, sent or 0.0

    filed, sent = counted()
    workers = WorkerProcess(
        child(
            "import os, sys; fd = int(sys.argv[2])\n"
            "os.write(fd, b'report direct_message\\ndelivery sent\\nnonsense here\\n')\n"
            "sys.stdin.read()"
        )
    )
    workers.start()
    try:
        deadline = time.monotonic() + 10
        while counted() != (filed + 1, sent + 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counted() == (filed + 1, sent + 1)
    finally:
        workers.stop(timeout=5)


def test_health_is_ok_while_a_child_runs_and_not_once_it_is_down_too_long() -> None:
    workers = WorkerProcess(child("import time; time.sleep(60)"))
    assert not workers.health().ok, "not started"
    workers.start()
    try:
        running = workers.health()
        assert running.ok and running.detail == f"running in process {workers.pid}"
    finally:
        workers.stop(timeout=1)

    failing = WorkerProcess(child("import sys; sys.exit(3)"), restart_after=60)
    failing.start()
    try:
        deadline = time.monotonic() + 10
        while not failing.health().detail.startswith("not running") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert failing.health().ok, "down for less than it is allowed to be"
        time.sleep(0.1)
        down = failing.health(tolerated=0.05)
        assert not down.ok
        assert down.detail.startswith("not running, failing for")
        assert "the last process exited with 3; 1 started so far" in down.detail
    finally:
        failing.stop(timeout=1)


def test_a_child_that_keeps_exiting_is_unwell_though_one_is_often_running() -> None:
    looping = WorkerProcess(child("import sys; sys.exit(4)"))
    looping.restart_after = 0.02
    looping.start()
    try:
        deadline = time.monotonic() + 10
        while looping.starts < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert looping.starts >= 6
        # Tolerated longer than a child lives, however slow the machine is at starting one.
        health = looping.health(tolerated=0.5)
        assert not health.ok, health.detail
        assert "the last process exited with 4" in health.detail
    finally:
        looping.stop(timeout=1)


def test_a_child_that_lasts_after_a_failure_is_well_again() -> None:
    lasting = WorkerProcess(child("import time; time.sleep(60)"))
    lasting.start()
    try:
        first = lasting.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while lasting.pid in (None, first) and time.monotonic() < deadline:
            time.sleep(0.01)
        while lasting.health().detail.startswith("not running") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert lasting.health(tolerated=0.1).ok, "the new child has run long enough"
        assert lasting.health().detail == f"running in process {lasting.pid}"
    finally:
        lasting.stop(timeout=1)


def test_the_child_hears_stored_requests_queued_messages_and_a_token_accepted_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`wake` (requests stored) is for the inbox workers, `send` (messages queued) for the
    senders: under load every request says `wake`, and senders woken by it looked for due
    messages a thousand times a second. `restored` (Slack accepts the token again) makes the
    child, which sends, look at once. What arrives together is acted on once."""
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)  # a missed `quit` must not end pytest
    heard: list[str] = []
    read_end, write_end = os.pipe()
    link = ParentLink(
        write_end,
        on_wake=lambda: heard.append("wake"),
        on_send=lambda: heard.append("send"),
        on_quit=lambda: heard.append("quit"),
        on_restored=lambda: heard.append("restored"),
    )
    told = b"wake\n" * 500 + b"send\nrestored\n" + b"wake\n" * 500 + b"quit\n"
    link.start(io.BufferedReader(io.BytesIO(told)))
    deadline = time.monotonic() + 5
    while not link.quitting.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.close(read_end)  # (the link's own file closes the write end)
    assert link.quitting.is_set() and heard[-1] == "quit" and not exits
    assert heard.count("send") == 1 and heard.count("restored") == 1
    assert 1 <= heard.count("wake") < 100, heard.count("wake")


def test_words_split_across_reads_are_heard_whole() -> None:
    source = io.BufferedReader(io.BytesIO(b"wake\nsend\nwake\nquit"), buffer_size=3)
    heard = [word for words in _heard(source, size=3) for word in words if word]
    assert set(heard) == {"wake", "send", "quit"}, "the last line counts without its end"
    told = b"wake\n" * 1000 + b"quit\n"
    batches = list(_heard(io.BufferedReader(io.BytesIO(told)), size=64))
    assert len(batches) > 50, "read a little at a time"
    assert all(words <= {"wake", "quit"} for words in batches)
    assert [index for index, words in enumerate(batches) if "quit" in words] == [len(batches) - 1]
