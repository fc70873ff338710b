"""The background delivery loop: parallel, paced per channel, ordered, and stoppable."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine, bindparam, event, text
from sqlmodel import Session, col, func, select

from feedbot.core import outbox
from feedbot.db import session_scope
from feedbot.models import OutboxMessage, OutboxStatus, utcnow
from feedbot.slack import outbox as outbox_sending
from feedbot.slack.outbox import LOOK_GAP, OutboxSender
from tests.fakeslack import FakeSlack
from tests.harness import TOKEN


@pytest.fixture
def paced_slack() -> Iterator[FakeSlack]:
    with FakeSlack(channel_rate_limit=1.0) as slack:
        yield slack
        slack.assert_no_violations()


def unfinished(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(OutboxMessage)
                .where(col(OutboxMessage.status).in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))
            ).one()
        )


def queue_posts(engine: Engine, posts: list[tuple[str, str]]) -> None:
    """Queue a `chat.postMessage` of each (channel, text), in order."""
    with session_scope(engine) as session:
        for channel, text in posts:
            outbox.enqueue(
                session,
                conversation=channel,
                method="chat.postMessage",
                payload={"text": text},
                now=utcnow(),
            )


def send_until_done(engine: Engine, slack: FakeSlack, *, poll_interval: float = 0.2) -> None:
    """Run a sender's background loop until nothing is left to send (at most 20 s)."""
    sender = OutboxSender(
        engine, WebClient(token=TOKEN, base_url=slack.base_url), poll_interval=poll_interval
    )
    sender.start()
    try:
        deadline = time.monotonic() + 20
        while unfinished(engine) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sender.stop()


def watch_looks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    """Every look for due entries from now on: when it began, and how many it claimed."""
    looks: list[tuple[float, int]] = []
    claim_due = outbox.claim_due

    def counted(*args: object, **kwargs: Any) -> outbox.Claims:
        started = time.monotonic()
        claims = claim_due(*args, **kwargs)  # type: ignore[arg-type]
        looks.append((started, len(claims)))
        return claims

    monkeypatch.setattr(outbox, "claim_due", counted)
    return looks


def test_the_loop_delivers_in_order_at_slacks_pace_without_provoking_429s(
    engine: Engine, paced_slack: FakeSlack
) -> None:
    channels = [f"CLOOP{n:04d}" for n in range(6)]
    queue_posts(engine, [(channel, f"message {n}") for n in range(3) for channel in channels])
    started = time.monotonic()
    send_until_done(engine, paced_slack)
    elapsed = time.monotonic() - started
    assert unfinished(engine) == 0
    for channel in channels:
        assert [m["text"] for m in paced_slack.messages(channel)] == [
            "message 0",
            "message 1",
            "message 2",
        ]
    assert paced_slack.rate_limited_count == 0, "paced, not pushed back"
    assert 2.0 <= elapsed < 8.0, "three posts per channel need two intervals, channels in parallel"


def test_a_fresh_claim_goes_out_without_renewing_its_lease_first(
    engine: Engine, paced_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim sent at once needs no renewal: its lease was set moments before (one write
    less per message; SQLite has one writer). One that waited for its channel's pace renews
    before its call, so a dead sender's claim is still taken over only after its call.
    ("At once" is up to 0.9 s here, not half a second, so that a slow machine is not taken
    for a pause; the channel's pace is still longer, 1 s.)"""
    monkeypatch.setattr("feedbot.slack.outbox.RENEWED_FOR_CALL", 0.9)
    channels = ("CFRESH001", "CFRESH002", "CFRESH003", "CFRESH004", "CFRESH001")
    queue_posts(engine, [(channel, f"to {channel}") for channel in channels])
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        send_until_done(engine, paced_slack)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert unfinished(engine) == 0
    assert len(paced_slack.messages("CFRESH001")) == 2
    renewals = [
        sql for sql in statements if sql.startswith("UPDATE outbox_message SET lease_until")
    ]
    assert 1 <= len(renewals) <= 2, "only the post that waited for its channel renews"


def test_stopping_puts_unsent_claims_back(engine: Engine, paced_slack: FakeSlack) -> None:
    queue_posts(engine, [("CSTOP0001", f"m{n}") for n in range(5)])
    sender = OutboxSender(
        engine, WebClient(token=TOKEN, base_url=paced_slack.base_url), poll_interval=0.2
    )
    sender.start()
    time.sleep(1.5)
    sender.stop()
    with Session(engine) as session:
        statuses = session.exec(select(OutboxMessage.status).order_by(col(OutboxMessage.id))).all()
    assert OutboxStatus.SENDING not in statuses, "nothing left claimed by a stopped sender"
    sent = len(paced_slack.messages("CSTOP0001"))
    assert statuses.count(OutboxStatus.SENT) == sent
    later = OutboxSender(engine, WebClient(token=TOKEN, base_url=paced_slack.base_url))
    deadline = time.monotonic() + 15
    while unfinished(engine) and time.monotonic() < deadline:
        later.deliver_due()
        time.sleep(0.2)
    assert [m["text"] for m in paced_slack.messages("CSTOP0001")] == [f"m{n}" for n in range(5)]


def test_a_sender_stopped_while_it_keeps_a_channel_s_pace_puts_the_post_back(
    engine: Engine, paced_slack: FakeSlack
) -> None:
    """Stopping wakes a sending thread from its pause between two posts to a channel: the
    post then goes back to the queue, not out before its interval has passed (a 429)."""
    import threading

    queue_posts(engine, [("CPACE0001", "paced")])
    sender = OutboxSender(engine, WebClient(token=TOKEN, base_url=paced_slack.base_url))
    with Session(engine, expire_on_commit=False) as session:
        (claim,) = outbox.claim_due(session, now=utcnow(), limit=1)
    sender._last_post["CPACE0001"] = time.monotonic()  # a post went there just now
    stopping = threading.Timer(0.2, sender.stop)
    stopping.start()
    started = time.monotonic()
    sender._deliver(claim.entry, recheck=False, paced=True)
    stopping.join()
    assert time.monotonic() - started < 0.9, "the pause ended with the stop"
    assert paced_slack.messages("CPACE0001") == [] and paced_slack.rate_limited_count == 0
    with Session(engine) as session:
        (entry,) = session.exec(select(OutboxMessage)).all()
    assert entry.status == OutboxStatus.PENDING and entry.attempts == claim.entry.attempts


def test_a_claim_taken_over_after_its_lease_ran_out_is_not_sent_twice(
    engine: Engine, paced_slack: FakeSlack
) -> None:
    from datetime import timedelta

    with session_scope(engine) as session:
        outbox.enqueue(
            session,
            conversation="CLEASE001",
            method="chat.postMessage",
            payload={"text": "once"},
            now=utcnow(),
        )
    slow = OutboxSender(engine, WebClient(token=TOKEN, base_url=paced_slack.base_url))
    with Session(engine, expire_on_commit=False) as session:
        (stale,) = outbox.claim_due(session, now=utcnow())
    later = (
        utcnow() + outbox.LEASE + timedelta(seconds=1)
    )  # the first sender stalled past its lease
    fresh = OutboxSender(
        engine, WebClient(token=TOKEN, base_url=paced_slack.base_url), clock=lambda: later
    )
    assert fresh.deliver_due() == 1
    slow._deliver(stale.entry, recheck=stale.recheck)  # the stalled sender wakes up
    assert [m["text"] for m in paced_slack.messages("CLEASE001")] == ["once"]
    with Session(engine) as session:
        assert session.exec(select(OutboxMessage.status)).all() == [OutboxStatus.SENT]


def test_an_unknown_error_gives_up_after_a_few_tries_instead_of_blocking_the_channel(
    engine: Engine, fake_slack: FakeSlack
) -> None:
    from datetime import timedelta

    from feedbot.slack.outbox import MAX_ATTEMPTS

    with session_scope(engine) as session:
        for text in ("bad", "good"):
            outbox.enqueue(
                session,
                conversation="CBLOCK001",
                method="chat.postMessage",
                payload={"text": text},
                now=utcnow(),
            )
    fake_slack.fail("chat.postMessage", times=MAX_ATTEMPTS, status=200, error="some_new_error")
    moment = [utcnow()]
    sender = OutboxSender(
        engine, WebClient(token=TOKEN, base_url=fake_slack.base_url), clock=lambda: moment[0]
    )
    for _ in range(MAX_ATTEMPTS + 2):
        sender.deliver_due()
        moment[0] += timedelta(minutes=10)
    with Session(engine) as session:
        statuses = session.exec(select(OutboxMessage.status).order_by(col(OutboxMessage.id))).all()
    assert statuses == [OutboxStatus.FAILED, OutboxStatus.SENT]
    assert [m["text"] for m in fake_slack.messages("CBLOCK001")] == ["good"]


def test_wake_ups_that_come_together_are_answered_by_one_look(
    engine: Engine, paced_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load every commit wakes the loop; it looks for due entries at most once per
    `LOOK_GAP` while it finds none, and an entry queued meanwhile still goes at once."""
    looks = watch_looks(monkeypatch)
    sender = OutboxSender(
        engine, WebClient(token=TOKEN, base_url=paced_slack.base_url), poll_interval=5.0
    )
    sender.start()
    try:
        time.sleep(0.1)
        started = time.monotonic()
        while time.monotonic() - started < 0.5:  # a thousand commits a second
            sender.wake()
            time.sleep(0.001)
        during = [look for look, _ in looks if started <= look < started + 0.5]
        assert 3 <= len(during) <= 0.5 / LOOK_GAP + 2
        queue_posts(engine, [("CLOOK0001", "right away")])
        queued = time.monotonic()
        sender.wake()
        while unfinished(engine) and time.monotonic() - queued < 5:
            time.sleep(0.005)
        assert [m["text"] for m in paced_slack.messages("CLOOK0001")] == ["right away"]
        assert time.monotonic() - queued < 3.0  # not left for the 5 s poll
    finally:
        sender.stop()


def test_calls_that_end_while_the_database_is_busy_are_recorded_together(
    engine: Engine, paced_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sending thread records its call as sent. Calls that end while another
    transaction holds what that write needs (on SQLite the one writer, which the inbox's
    worker holds for a whole report) are recorded in one transaction once it is free, not
    each in a transaction of its own."""
    channels = [f"CTOGETHER{n}" for n in range(6)]
    queue_posts(engine, [(channel, f"to {channel}") for channel in channels])
    paced_slack.fail("chat.postMessage", times=len(channels), status=200, error="", delay=2.0)
    marks: list[int] = []

    def listen(*args: Any) -> None:
        statement, parameters, executemany = args[2], args[3], args[5]
        setting = statement.partition(" WHERE ")[0]
        if setting.startswith("UPDATE outbox_message SET status") and "result_ts" in setting:
            marks.append(len(parameters) if executemany else 1)

    event.listen(engine, "before_cursor_execute", listen)
    sender = OutboxSender(
        engine, WebClient(token=TOKEN, base_url=paced_slack.base_url), poll_interval=0.2
    )
    recording: list[outbox.SentMark] = []  # calls that ended, their threads about to record
    submit = sender._sent.submit

    def record(mark: outbox.SentMark) -> None:
        recording.append(mark)
        submit(mark)

    monkeypatch.setattr(sender._sent, "submit", record)
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while paced_slack.faults_left("chat.postMessage") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert paced_slack.faults_left("chat.postMessage") == 0, "every call under way"
        with engine.connect() as busy:  # every row the marks write, and SQLite's writer
            busy.execute(
                text(
                    "UPDATE outbox_message SET last_error = last_error WHERE conversation IN :c"
                ).bindparams(bindparam("c", expanding=True)),
                {"c": channels},
            )
            # The calls end; the first thread to record its call waits for `busy`, the
            # others queue behind it.
            while len(recording) < len(channels) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)  # the last one's few steps into the queue
            assert sender._sent.writing and sender._sent.waiting >= 1
            busy.commit()
        while unfinished(engine) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sender.stop()
        event.remove(engine, "before_cursor_execute", listen)
    assert unfinished(engine) == 0
    assert [len(paced_slack.messages(channel)) for channel in channels] == [1] * len(channels)
    assert sum(marks) == len(channels)
    assert len(marks) <= 2, f"one statement per waiting batch, not per call: {marks}"


def test_a_look_that_took_less_than_it_could_is_not_followed_by_an_empty_one_at_once(
    engine: Engine, paced_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look takes every due entry it may, up to `LOOK_LIMIT`: one that took fewer leaves
    nothing due for a look right after it, which would only read the queue again. Looks
    then come at least `LOOK_GAP` apart, however many entries each took."""
    looks = watch_looks(monkeypatch)
    sender = OutboxSender(
        engine, WebClient(token=TOKEN, base_url=paced_slack.base_url), poll_interval=5.0
    )
    sender.start()
    try:
        for round_ in range(3):
            queue_posts(engine, [(f"CTOOK{n:04d}", f"round {round_}") for n in range(3)])
            sender.wake()
            deadline = time.monotonic() + 10
            while unfinished(engine) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert unfinished(engine) == 0
            time.sleep(1.1)  # each channel's pace
    finally:
        sender.stop()
    assert sum(took for _, took in looks) == 9
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(looks)]
    assert min(gaps) >= LOOK_GAP * 0.9, f"a look right after one that took {looks}"


def test_a_look_that_took_all_it_could_is_followed_by_the_next_at_once(
    engine: Engine, paced_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look that read as many due entries as it may take leaves more due: the next look
    follows at once, not after `LOOK_GAP`."""
    looks = watch_looks(monkeypatch)
    monkeypatch.setattr(outbox_sending, "LOOK_LIMIT", 2)
    monkeypatch.setattr(outbox_sending, "LOOK_GAP", 0.5)
    queue_posts(engine, [(f"CFULL{n:04d}", "due now") for n in range(5)])
    send_until_done(engine, paced_slack, poll_interval=5.0)
    assert unfinished(engine) == 0
    assert [took for _, took in looks[:3]] == [2, 2, 1]
    assert looks[2][0] - looks[0][0] < 0.5, "the looks after full ones came at once"
