"""The outbox against the fake Slack: nothing lost while Slack fails, nothing sent twice across
restarts, crashes, timeouts and competing senders, order kept per conversation.

Time is the injected clock (the fake stamps messages with it too), so backoff and Retry-After
are crossed by advancing it, not by sleeping. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from feedbot.core import outbox
from feedbot.core.liveness import Liveness
from feedbot.core.outbox import CALL_TIMEOUT, LEASE, POST_TAKEN_OVER_AFTER
from feedbot.db import make_engine, session_scope
from feedbot.metrics import REGISTRY
from feedbot.models import OutboxMessage, OutboxStatus
from feedbot.slack import delivery
from feedbot.slack import outbox as slack_outbox
from feedbot.slack.outbox import LOOK_AGAIN_MARGIN, MAX_BACKOFF, DeliveryDeferred, OutboxSender
from feedbot.slack.web_api import METADATA_EVENT, REMOVE_COPIES
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, INTAKE, LEADERSHIP, TOKEN, Clock

GONE = "CGONE0001"
PUT_BACK = "the database failed around the delivery"
LATER = MAX_BACKOFF * 1.3  # past any backoff, jitter included


@pytest.fixture
def slack(fake_slack: FakeSlack, clock: Clock) -> FakeSlack:
    """The fake, stamping messages with the test clock (the sender's `oldest` follows it)."""
    fake_slack.clock = lambda: clock.now.timestamp()
    fake_slack.add_channel(LEADERSHIP, name="leadership")
    fake_slack.add_channel(INTAKE, name="field-problems")
    fake_slack.add_user(ALICE, name="alice")
    return fake_slack


def make_sender(
    engine: Engine, slack: FakeSlack, clock: Clock, *, timeout: float = 5, **client: Any
) -> OutboxSender:
    return OutboxSender(
        engine,
        WebClient(token=TOKEN, base_url=slack.base_url, timeout=timeout, **client),  # type: ignore[arg-type]
        clock=clock,
    )


def queue(
    engine: Engine,
    clock: Clock,
    conversation: str,
    text: str,
    *,
    method: str = "chat.postMessage",
    thread_of: int | None = None,
    update_of: int | None = None,
    payload: dict[str, Any] | None = None,
) -> int:
    with session_scope(engine) as session:
        entry = outbox.enqueue(
            session,
            conversation=conversation,
            method=method,
            payload=payload or {"text": text},
            purpose="test",
            thread_of=session.get(OutboxMessage, thread_of) if thread_of else None,
            update_of=session.get(OutboxMessage, update_of) if update_of else None,
            now=clock(),
        )
        assert entry.id is not None
        return entry.id


def entry(engine: Engine, entry_id: int) -> OutboxMessage:
    with Session(engine) as session:
        found = session.get(OutboxMessage, entry_id)
        assert found is not None
        return found


def statuses(engine: Engine) -> dict[int, OutboxStatus]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
        return {row.id: row.status for row in rows if row.id is not None}


def texts(slack: FakeSlack, channel: str) -> list[str]:
    """Top-level messages in `channel` (a user ID means the DM), oldest first."""
    return [m["text"] for m in slack.messages(channel) if m["thread_ts"] is None]


def posts(slack: FakeSlack) -> list[Any]:
    """chat.postMessage calls that Slack accepted."""
    return [c for c in slack.calls_to("chat.postMessage") if c.response.get("ok")]


def outbox_ids(slack: FakeSlack, *channels: str) -> list[int]:
    """The outbox id in the metadata of every message in `channels`."""
    ids = []
    for channel in channels:
        for message in slack.messages(channel):
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == METADATA_EVENT:
                ids.append(metadata["event_payload"]["outbox_id"])
    return ids


def post_as_a_dead_sender(
    slack: FakeSlack, entry_id: int, channel: str, text: str, **extra: Any
) -> str:
    """What a sender that crashed right after Slack accepted its post left behind."""
    response = WebClient(token=TOKEN, base_url=slack.base_url).chat_postMessage(
        channel=channel,
        text=text,
        metadata={"event_type": METADATA_EVENT, "event_payload": {"outbox_id": entry_id}},
        **extra,
    )
    return str(response["ts"])


def claim_and_die(engine: Engine, clock: Clock, *, owner: str | None = None) -> list[int]:
    """A sender claims what is due and dies before settling any of it (`owner`: the process,
    see `feedbot.core.liveness`)."""
    with Session(engine, expire_on_commit=False) as session:
        claims = outbox.claim_due(session, now=clock(), owner=owner)
        return [claim.entry.id for claim in claims if claim.entry.id]


# -- (a) Slack down for a while ---------------------------------------------------------------------


def deliveries(outcome: str) -> float:
    """`feedbot_outbox_deliveries_total{outcome}` as `/metrics` shows it."""
    value = REGISTRY.get_sample_value("feedbot_outbox_deliveries_total", {"outcome": outcome})
    return value or 0.0


def test_nothing_is_lost_while_slack_fails_and_order_holds(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    retried, sent = deliveries("retry"), deliveries("sent")
    conversations = {LEADERSHIP: "card", INTAKE: "receipt", ALICE: "dm"}
    ids = {
        conversation: [queue(engine, clock, conversation, f"{name} {n}") for n in range(3)]
        for conversation, name in conversations.items()
    }
    heads = [queued[0] for queued in ids.values()]
    slack.fail("*", times=None, status=500)
    sender = make_sender(engine, slack, clock)

    sender.drain()
    delays = []
    for round_ in range(1, 6):
        for conversation, queued in ids.items():
            head = entry(engine, queued[0])
            assert head.status == OutboxStatus.PENDING, conversation
            assert head.attempts == round_, conversation
            assert head.next_attempt_at > clock.now
            assert head.last_error == "internal_error"
            assert head.uncertain  # a 5xx may still have posted: the retry looks first
            assert all(entry(engine, later).attempts == 0 for later in queued[1:])
        calls = len(slack.calls)
        sender.drain()  # nothing is due before the backoff is over
        assert len(slack.calls) == calls
        due = max(entry(engine, head).next_attempt_at for head in heads)
        delays.append(entry(engine, heads[0]).next_attempt_at - clock.now)
        clock.now = due + timedelta(milliseconds=1)
        sender.drain()
    assert delays == sorted(delays) and delays[-1] > delays[0] * 8  # exponential backoff
    assert posts(slack) == []

    slack.clear_faults()
    clock.advance(seconds=LATER.total_seconds())
    sender.drain()
    assert set(statuses(engine).values()) == {OutboxStatus.SENT}, "no look for copies: a 5xx"
    for conversation, name in conversations.items():
        assert texts(slack, conversation) == [f"{name} {n}" for n in range(3)], conversation
    assert len(posts(slack)) == 9
    assert sorted(outbox_ids(slack, LEADERSHIP, INTAKE, ALICE)) == sorted(
        chain.from_iterable(ids.values())
    )
    assert deliveries("retry") == retried + 3 * 6, "three heads, each refused six times"
    assert deliveries("sent") == sent + 9


# -- (b) rate limits ---------------------------------------------------------------------------------


def test_retry_after_is_honoured_without_holding_up_other_conversations(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    card, second_card = (queue(engine, clock, LEADERSHIP, f"card {n}") for n in (1, 2))
    receipt = queue(engine, clock, INTAKE, "receipt")
    slack.fail("chat.postMessage", times=1, status=429, retry_after=30)
    # Even a client that would sleep through Retry-After itself must not do so in the sender.
    sender = make_sender(
        engine, slack, clock, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)]
    )

    started = time.monotonic()
    sender.drain()
    assert time.monotonic() - started < 5
    assert texts(slack, INTAKE) == ["receipt"]
    assert texts(slack, LEADERSHIP) == []
    limited = entry(engine, card)
    assert limited.status == OutboxStatus.PENDING and limited.last_error == "ratelimited"
    assert limited.next_attempt_at >= clock.now + timedelta(seconds=30)

    clock.advance(seconds=29)
    sender.drain()
    assert texts(slack, LEADERSHIP) == []
    clock.advance(seconds=1.001)
    sender.drain()
    assert texts(slack, LEADERSHIP) == ["card 1", "card 2"]
    assert entry(engine, second_card).status == OutboxStatus.SENT
    assert entry(engine, receipt).status == OutboxStatus.SENT


def test_a_method_slack_limits_waits_as_a_whole_while_others_go(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    """Slack limits `views.publish` to about 100 a minute for a workspace: past that, one
    429, and the other Homes wait its `Retry-After` instead of each spending a call on one."""
    people = [f"UHOME{n:03d}" for n in range(105)]
    for person in people:
        slack.add_user(person)
    view = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
    }
    homes = [
        queue(
            engine,
            clock,
            person,
            "",
            method="views.publish",
            payload={"user_id": person, "view": view},
        )
        for person in people
    ]
    card = queue(engine, clock, LEADERSHIP, "card")
    sender = make_sender(engine, slack, clock)

    sender.drain()
    assert slack.rate_limited_by == {"views.publish": 1}
    assert len(slack.calls_to("views.publish")) == 101, "100 went, one was refused, none after"
    assert texts(slack, LEADERSHIP) == ["card"], "another method is not held up"
    waiting = [home for home in homes if entry(engine, home).status == OutboxStatus.PENDING]
    assert len(waiting) == 5
    assert all(
        entry(engine, home).next_attempt_at >= clock.now + timedelta(seconds=59) for home in waiting
    )
    assert entry(engine, card).status == OutboxStatus.SENT

    clock.advance(seconds=30)  # Slack's minute is not over: nothing is tried
    late = queue(
        engine,
        clock,
        people[0],
        "",
        method="views.publish",
        payload={"user_id": people[0], "view": view},
    )
    sender.drain()
    assert len(slack.calls_to("views.publish")) == 101
    assert entry(engine, late).attempts == 0, "a Home queued meanwhile is not even claimed"
    clock.advance(seconds=31)
    sender.drain()
    assert all(entry(engine, home).status == OutboxStatus.SENT for home in [*homes, late])
    assert slack.rate_limited_by == {"views.publish": 1}
    assert set(slack.home_views) == set(people)


# -- (c) restarts ------------------------------------------------------------------------------------


def test_a_restart_loses_nothing_and_sends_nothing_twice(
    database_url: str, engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    ids = [queue(engine, clock, LEADERSHIP, f"card {n}") for n in range(3)]
    ids += [queue(engine, clock, INTAKE, f"receipt {n}") for n in range(2)]
    first = make_sender(engine, slack, clock)
    assert first.deliver_due(limit=1) == 1  # one entry out, then the process stops
    claimed = claim_and_die(engine, clock)  # and another was claimed but never sent
    assert claimed

    restarted_engine = make_engine(database_url)
    restarted = make_sender(restarted_engine, slack, clock)
    restarted.drain()
    assert any(status == OutboxStatus.SENDING for status in statuses(engine).values())
    clock.advance(seconds=LEASE.total_seconds() + 1)  # the dead sender's lease runs out
    restarted.drain()
    restarted_engine.dispose()

    assert set(statuses(engine).values()) == {OutboxStatus.SENT}
    assert texts(slack, LEADERSHIP) == ["card 0", "card 1", "card 2"]
    assert texts(slack, INTAKE) == ["receipt 0", "receipt 1"]
    assert len(posts(slack)) == 5
    assert sorted(outbox_ids(slack, LEADERSHIP, INTAKE)) == ids


# -- (d) crash between Slack's answer and our record -------------------------------------------------


def test_a_post_slack_accepted_before_a_crash_is_found_not_repeated(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    card = queue(engine, clock, LEADERSHIP, "card")
    assert claim_and_die(engine, clock) == [card]
    clock.advance(seconds=2)
    ts = post_as_a_dead_sender(slack, card, LEADERSHIP, "card")
    clock.advance(seconds=LEASE.total_seconds())

    make_sender(engine, slack, clock).drain()

    assert len(slack.calls_to("conversations.history")) == 1
    assert len(posts(slack)) == 1  # the dead sender's only
    sent = entry(engine, card)
    assert (sent.status, sent.result_ts, sent.result_channel) == (OutboxStatus.SENT, ts, LEADERSHIP)


def test_a_thread_reply_slack_accepted_before_a_crash_is_found_not_repeated(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    card = queue(engine, clock, LEADERSHIP, "card")
    make_sender(engine, slack, clock).drain()
    card_ts = entry(engine, card).result_ts
    reply = queue(engine, clock, LEADERSHIP, "acknowledged", thread_of=card)
    assert claim_and_die(engine, clock) == [reply]
    ts = post_as_a_dead_sender(slack, reply, LEADERSHIP, "acknowledged", thread_ts=card_ts)
    clock.advance(seconds=LEASE.total_seconds() + 1)

    make_sender(engine, slack, clock).drain()

    assert [c.args["ts"] for c in slack.calls_to("conversations.replies")] == [card_ts]
    assert len(posts(slack)) == 2  # the card, and the dead sender's reply
    replies = [m for m in slack.messages(LEADERSHIP) if m["thread_ts"] == card_ts]
    assert [m["ts"] for m in replies] == [ts]
    assert entry(engine, reply).result_ts == ts


DEAD = "12345"
"""A process that died with claims (`claim_and_die`'s owner)."""


def take_over_from_the_dead(engine: Engine, clock: Clock) -> None:
    """A live process finds the claims of the one that died."""
    alive = Liveness(engine)
    alive.start()
    try:
        with session_scope(engine) as session:
            assert alive.take_over(session, now=clock()) > 0
    finally:
        alive.stop()


def test_a_dead_senders_post_landing_after_it_was_posted_again_is_deleted(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    """A dead sender's calls that Slack takes longer over than the take-over waits: each post
    is rechecked (not there yet) and sent again, then the dead call lands too. Once it could
    no longer land, the second look deletes that copy and keeps the one recorded: for a reply
    in a card's thread, for a reply under someone's message (its thread given as such), and
    for a DM to someone acting anonymously, whose entries name nobody."""
    from feedbot.slack.views import Message
    from tests.harness import IDENTITIES

    card = queue(engine, clock, LEADERSHIP, "card")
    sender = make_sender(engine, slack, clock)
    sender.identities = IDENTITIES
    sender.drain()
    card_ts = entry(engine, card).result_ts
    reply = queue(engine, clock, LEADERSHIP, "acknowledged", thread_of=card)
    colleague = slack.add_message(INTAKE, "Kasse 3 druckt nicht", user=ALICE)
    receipt = queue(engine, clock, INTAKE, "#12", payload={"text": "#12", "thread_ts": colleague})
    with session_scope(engine) as session:
        sealed = delivery.dm(
            session,
            user=ALICE,
            message=Message(text="answered"),
            now=clock(),
            purpose="test",
            sealed_by=IDENTITIES,
            about=1,
        ).id
    assert sorted(claim_and_die(engine, clock, owner=DEAD)) == [reply, receipt, sealed]
    take_over_from_the_dead(engine, clock)
    clock.advance(seconds=POST_TAKEN_OVER_AFTER.total_seconds() + 0.1)

    sender.drain()  # rechecked, not found: posted again
    late = {
        reply: post_as_a_dead_sender(slack, reply, LEADERSHIP, "acknowledged", thread_ts=card_ts),
        receipt: post_as_a_dead_sender(slack, receipt, INTAKE, "#12", thread_ts=colleague),
        sealed: post_as_a_dead_sender(slack, sealed, ALICE, "answered"),
    }

    def in_slack(entry_id: int) -> list[str]:
        where = {reply: (LEADERSHIP, card_ts), receipt: (INTAKE, colleague), sealed: (ALICE, None)}
        channel, thread = where[entry_id]
        return [m["ts"] for m in slack.messages(channel) if m["thread_ts"] == thread]

    assert all(len(in_slack(posted)) == 2 for posted in late)
    looks = select(OutboxMessage).where(OutboxMessage.method == REMOVE_COPIES)
    with Session(engine) as session:
        waiting = session.exec(looks).all()
        assert len(waiting) == 3
        assert all(ALICE not in look.payload + look.conversation for look in waiting)

    clock.advance(seconds=(CALL_TIMEOUT - POST_TAKEN_OVER_AFTER).total_seconds())
    sender.drain()
    assert slack.calls_to("chat.delete") == [], "not while the dead calls may still land"
    clock.advance(seconds=LOOK_AGAIN_MARGIN.total_seconds())
    sender.drain()

    for posted, copy in late.items():
        assert in_slack(posted) == [entry(engine, posted).result_ts], posted
        assert copy not in in_slack(posted)
    assert {c.args["ts"] for c in slack.calls_to("chat.delete")} == set(late.values())
    assert set(statuses(engine).values()) == {OutboxStatus.SENT}


@pytest.mark.parametrize("retry", ["soon", "after the dead call could land"])
def test_a_dead_senders_post_found_twice_keeps_the_first_and_deletes_the_other(
    engine: Engine, slack: FakeSlack, clock: Clock, retry: str
) -> None:
    """The dead sender's own try landed, and so did a second one (the taker's, which timed
    out while Slack was slow, say): the recheck records the first, which edits will refer
    to, and a look deletes the other, also when the retry comes after the dead call could
    still land."""
    card = queue(engine, clock, LEADERSHIP, "card")
    assert claim_and_die(engine, clock, owner=DEAD) == [card]
    first = post_as_a_dead_sender(slack, card, LEADERSHIP, "card")
    second = post_as_a_dead_sender(slack, card, LEADERSHIP, "card")
    take_over_from_the_dead(engine, clock)
    later = CALL_TIMEOUT if retry != "soon" else POST_TAKEN_OVER_AFTER
    clock.advance(seconds=later.total_seconds() + 0.1)
    sender = make_sender(engine, slack, clock)
    sender.drain()
    assert entry(engine, card).result_ts == first
    assert len(posts(slack)) == 2, "not posted a third time"
    clock.advance(seconds=(CALL_TIMEOUT + LOOK_AGAIN_MARGIN).total_seconds())
    sender.drain()
    assert [m["ts"] for m in slack.messages(LEADERSHIP)] == [first]
    assert [c.args["ts"] for c in slack.calls_to("chat.delete")] == [second]


def test_a_look_for_copies_keeps_the_copy_recorded_when_it_runs_not_when_queued(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    """The taker's post is recorded and its look queued; then the record changes (its write
    was lost, and a retry's recheck recorded the dead sender's late copy). The look keeps
    the copy recorded by then, which edits and replies refer to."""
    card = queue(engine, clock, LEADERSHIP, "card")
    assert claim_and_die(engine, clock, owner=DEAD) == [card]
    take_over_from_the_dead(engine, clock)
    clock.advance(seconds=POST_TAKEN_OVER_AFTER.total_seconds() + 0.1)
    sender = make_sender(engine, slack, clock)
    sender.drain()
    taker = entry(engine, card).result_ts
    late = post_as_a_dead_sender(slack, card, LEADERSHIP, "card")
    with session_scope(engine) as session:
        session.get_one(OutboxMessage, card).result_ts = late
    clock.advance(seconds=(CALL_TIMEOUT + LOOK_AGAIN_MARGIN).total_seconds())
    sender.drain()
    assert [m["ts"] for m in slack.messages(LEADERSHIP)] == [late]
    assert [c.args["ts"] for c in slack.calls_to("chat.delete")] == [taker]


def test_a_look_for_copies_keeps_what_the_post_records_when_the_look_runs(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    """The copy kept is the one the post's entry records when the look runs, whichever try
    made it; while the post is not recorded yet, the look waits for it."""
    card = queue(engine, clock, LEADERSHIP, "card")
    with session_scope(engine) as session:
        look = outbox.enqueue(
            session,
            conversation=LEADERSHIP,
            lane=f"copies of {card}",
            method=REMOVE_COPIES,
            payload={"copies_of": card, "since": clock().timestamp()},
            now=clock(),
        ).id
    slack.fail("chat.postMessage", status=500)
    sender = make_sender(engine, slack, clock)
    sender.drain()
    waiting = entry(engine, look)
    assert waiting.status == OutboxStatus.PENDING
    assert waiting.last_error == f"waiting for outbox #{card} to be recorded"
    assert slack.calls_to("conversations.history") == [], "nothing read before the record"
    for _ in range(2):  # the card is retried, and the look after it
        clock.advance(seconds=5)
        sender.drain()
    [kept] = slack.messages(LEADERSHIP)
    assert entry(engine, card).result_ts == kept["ts"]
    assert entry(engine, look).status == OutboxStatus.SENT
    assert slack.calls_to("chat.delete") == []


def test_a_post_that_never_reached_slack_before_a_crash_is_sent_once(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    card = queue(engine, clock, LEADERSHIP, "card")
    assert claim_and_die(engine, clock) == [card]
    clock.advance(seconds=LEASE.total_seconds() + 1)
    make_sender(engine, slack, clock).drain()
    assert len(slack.calls_to("conversations.history")) == 1
    assert texts(slack, LEADERSHIP) == ["card"]
    assert entry(engine, card).status == OutboxStatus.SENT


def test_a_slow_preparation_renews_the_lease_before_the_call(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    """Opening the DM takes Slack a second: the lease is renewed after it, as the post
    begins, since a dead sender's claim is taken over `CALL_TIMEOUT` after its last
    renewal, which must not be long before its call."""
    dm = queue(engine, clock, ALICE, "hello")  # to a person: the DM is opened first
    slack.fail("conversations.open", times=1, status=200, error="", delay=1.0)
    slack.fail("chat.postMessage", times=1, status=200, error="", delay=1.0)
    began, base = time.monotonic(), clock()
    sender = OutboxSender(
        engine,
        WebClient(token=TOKEN, base_url=slack.base_url, timeout=5),
        clock=lambda: base + timedelta(seconds=time.monotonic() - began),
    )
    delivering = threading.Thread(target=sender.drain)
    delivering.start()
    try:
        deadline = time.monotonic() + 10
        while slack.faults_left("chat.postMessage"):  # until the post has reached Slack
            assert time.monotonic() < deadline
            time.sleep(0.01)
        lease = entry(engine, dm).lease_until
    finally:
        delivering.join(10)
    assert lease is not None
    assert lease.replace(tzinfo=lease.tzinfo or base.tzinfo) - LEASE >= base + timedelta(
        seconds=1
    ), "renewed after the DM was opened"
    assert entry(engine, dm).status == OutboxStatus.SENT


def test_a_lease_the_database_failed_to_renew_is_put_back_not_left_for_its_minute(
    engine: Engine,
    slack: FakeSlack,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database refuses the sender's renewal of its claim (a lock, a dropped connection):
    the entry is put back and sent after the usual pause, checked for first, not left
    claimed until its lease runs out a minute later. (Every claim counts as waited here, so
    each is renewed before it goes: one sent at once needs no renewal.)"""
    monkeypatch.setattr(slack_outbox, "RENEWED_FOR_CALL", 0.0)
    card = queue(engine, clock, LEADERSHIP, "card")
    refused: list[str] = []

    def refuse_one_renewal(*args: Any) -> None:
        statement = args[2]
        if not refused and statement.startswith("UPDATE outbox_message SET lease_until"):
            refused.append(statement)
            raise OperationalError(statement, None, Exception("database is locked"))

    event.listen(engine, "before_cursor_execute", refuse_one_renewal)
    sender = make_sender(engine, slack, clock)
    sender.start()
    try:
        deadline = time.monotonic() + 5
        while not refused or entry(engine, card).last_error != PUT_BACK:
            assert time.monotonic() < deadline, "still claimed after the failed renewal"
            time.sleep(0.02)
        assert entry(engine, card).status == OutboxStatus.PENDING
        assert texts(slack, LEADERSHIP) == []
        clock.advance(seconds=1.5)  # past the first pause, far short of the lease
        sender.wake()
        while entry(engine, card).status != OutboxStatus.SENT:
            assert time.monotonic() < deadline + 5, "not sent after the pause"
            time.sleep(0.02)
    finally:
        sender.stop()
        event.remove(engine, "before_cursor_execute", refuse_one_renewal)
    assert texts(slack, LEADERSHIP) == ["card"]
    assert len(slack.calls_to("conversations.history")) == 1, "checked for before posting"
    assert "putting it back" in caplog.text


def test_a_failure_after_the_outcome_was_recorded_does_not_send_it_again(
    engine: Engine, slack: FakeSlack, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit went out and was recorded as sent; then something else failed (here the
    delivery's metric; a connection lost as the commit landed looks the same). The claim is
    not put back: an edit, which is never looked for first, would go again."""
    card = queue(engine, clock, LEADERSHIP, "card")
    make_sender(engine, slack, clock).drain()
    edit = queue(engine, clock, LEADERSHIP, "card, edited", method="chat.update", update_of=card)
    failed: list[str] = []

    def fail_once(outcome: str) -> None:
        if not failed:
            failed.append(outcome)
            raise RuntimeError("the metric failed")

    monkeypatch.setattr("feedbot.slack.outbox.count_delivery", fail_once)
    sender = make_sender(engine, slack, clock)
    sender.start()
    try:
        deadline = time.monotonic() + 5
        while not failed:
            assert time.monotonic() < deadline, "the edit was not delivered"
            time.sleep(0.02)
        clock.advance(seconds=LATER.total_seconds())  # past any pause a put-back would have
        sender.wake()
        time.sleep(1.5)  # a second look at what is due
    finally:
        sender.stop()
    assert entry(engine, edit).status == OutboxStatus.SENT
    assert len(slack.calls_to("chat.update")) == 1


# -- (e) timeouts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "lost"])
def test_a_timeout_makes_the_retry_check_before_posting(
    engine: Engine, slack: FakeSlack, clock: Clock, landed: bool
) -> None:
    """The client gives up after 0.3 s; Slack answers after 0.8 s, having posted or not."""
    card = queue(engine, clock, LEADERSHIP, "card")
    if landed:
        slack.fail("chat.postMessage", times=1, status=200, error="", delay=0.8)
    else:
        slack.fail("chat.postMessage", times=1, status=500, delay=0.8)
    sender = make_sender(
        engine, slack, clock, timeout=0.3, retry_handlers=[ConnectionErrorRetryHandler()]
    )

    sender.drain()
    waiting = entry(engine, card)
    assert waiting.status == OutboxStatus.PENDING and waiting.uncertain
    assert "timed out" in (waiting.last_error or "")
    deadline = time.monotonic() + 5
    while len(slack.calls_to("chat.postMessage")) < 1:  # the slow answer has been given
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert len(texts(slack, LEADERSHIP)) == (1 if landed else 0)

    clock.advance(seconds=LATER.total_seconds())
    # The retry with the usual timeout: 0.3 s is for the first call, not for a slow machine.
    make_sender(engine, slack, clock).drain()
    assert len(slack.calls_to("conversations.history")) == 1
    assert texts(slack, LEADERSHIP) == ["card"]
    sent = entry(engine, card)
    assert sent.status == OutboxStatus.SENT and not sent.uncertain
    assert sent.result_ts == slack.messages(LEADERSHIP)[0]["ts"]


# -- (f) permanent errors -----------------------------------------------------------------------------


def test_permanent_errors_fail_the_entry_and_the_conversation_goes_on(
    database_url: str,
    engine: Engine,
    slack: FakeSlack,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    failed, sent = deliveries("failed"), deliveries("sent")
    refused, *rest = (queue(engine, clock, LEADERSHIP, f"card {n}") for n in range(3))
    slack.remove_channel(GONE)
    lost = queue(engine, clock, GONE, "into the void")
    slack.fail("chat.postMessage", times=1, status=200, error="not_in_channel")  # card 0's post

    with caplog.at_level(logging.ERROR, logger="feedbot.slack.outbox"):
        make_sender(engine, slack, clock).drain()

    assert entry(engine, refused).status == OutboxStatus.FAILED
    assert entry(engine, refused).last_error == "not_in_channel"
    assert entry(engine, lost).status == OutboxStatus.FAILED
    assert entry(engine, lost).last_error == "channel_not_found"
    assert all(entry(engine, later).status == OutboxStatus.SENT for later in rest)
    assert texts(slack, LEADERSHIP) == ["card 1", "card 2"]
    assert (deliveries("failed"), deliveries("sent")) == (failed + 2, sent + 2)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"outbox #{refused} " in m and "not_in_channel" in m for m in errors), errors
    assert any(f"outbox #{lost} " in m and "channel_not_found" in m for m in errors), errors

    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "feedbot", "outbox"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "failed: 2, sent: 2"
    assert f"failed #{refused} chat.postMessage to {LEADERSHIP} (test): not_in_channel" in lines
    assert f"failed #{lost} chat.postMessage to {GONE} (test): channel_not_found" in lines


# -- (g) updates ---------------------------------------------------------------------------------------


def test_an_update_waits_for_its_post_and_only_the_newest_is_sent(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    card = queue(engine, clock, LEADERSHIP, "card: open")
    stale = queue(
        engine, clock, LEADERSHIP, "card: acknowledged", method="chat.update", update_of=card
    )
    newest = queue(
        engine, clock, LEADERSHIP, "card: resolved", method="chat.update", update_of=card
    )
    assert entry(engine, stale).status == OutboxStatus.SUPERSEDED
    slack.fail("chat.postMessage", times=1, status=500)
    sender = make_sender(engine, slack, clock)

    sender.drain()
    assert slack.calls_to("chat.update") == []  # its post is not there yet
    clock.advance(seconds=LATER.total_seconds())
    sender.drain()

    card_ts = entry(engine, card).result_ts
    [update] = slack.calls_to("chat.update")
    assert (update.args["ts"], update.args["channel"]) == (card_ts, LEADERSHIP)
    assert texts(slack, LEADERSHIP) == ["card: resolved"]
    assert entry(engine, newest).status == OutboxStatus.SENT
    assert entry(engine, stale).status == OutboxStatus.SUPERSEDED


def test_an_update_of_a_post_that_failed_fails_too(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    slack.remove_channel(GONE)
    card = queue(engine, clock, GONE, "card")
    update = queue(engine, clock, GONE, "card, edited", method="chat.update", update_of=card)
    make_sender(engine, slack, clock).drain()
    assert entry(engine, card).status == OutboxStatus.FAILED
    failed = entry(engine, update)
    assert failed.status == OutboxStatus.FAILED and "never delivered" in (failed.last_error or "")
    assert slack.calls_to("chat.update") == []


def test_an_update_drawn_at_send_whose_subject_is_gone_is_dropped_not_failed(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    """An incident card's update is drawn when it is sent; a group gone by then leaves
    nothing to send, which is no failure for an operator to look into."""
    card = queue(engine, clock, LEADERSHIP, "incident card")
    update = queue(
        engine,
        clock,
        LEADERSHIP,
        "",
        method="chat.update",
        update_of=card,
        payload={delivery.GROUP_CARD_OF: 999_999, delivery.GROUP_CARD_LOCALE: "en"},
    )
    make_sender(engine, slack, clock).drain()
    assert entry(engine, card).status == OutboxStatus.SENT
    dropped = entry(engine, update)
    assert dropped.status == OutboxStatus.SUPERSEDED and "no longer exists" in str(
        dropped.last_error
    )
    assert slack.calls_to("chat.update") == []
    with Session(engine) as session:
        assert outbox.failures(session) == []


def test_an_update_drawn_at_send_is_not_drawn_while_its_message_is_not_out(
    engine: Engine, slack: FakeSlack, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sending thread may take an incident card's update while another still posts the
    card: the update waits for it, and is drawn (three queries and a card) only once it can
    go."""
    drawn: list[dict[str, Any]] = []
    render = delivery.render_at_send

    def counting(session: Session, stored: dict[str, Any]) -> dict[str, Any] | None:
        drawn.append(stored)
        return render(session, stored)

    monkeypatch.setattr(delivery, "render_at_send", counting)
    card = queue(engine, clock, LEADERSHIP, "card: open")
    update = queue(engine, clock, LEADERSHIP, "card: new", method="chat.update", update_of=card)
    sender = make_sender(engine, slack, clock)
    with Session(engine) as session, pytest.raises(DeliveryDeferred):
        sender._prepare(session, entry(engine, update))
    assert drawn == []
    sender.drain()
    assert [d["text"] for d in drawn] == ["card: open", "card: new"]
    assert texts(slack, LEADERSHIP) == ["card: new"]


def test_a_home_tab_publish_is_recorded_as_sent(
    engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    view = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}],
    }
    home = queue(
        engine,
        clock,
        f"home:{ALICE}",
        "",
        method="views.publish",
        payload={"user_id": ALICE, "view": view},
    )
    make_sender(engine, slack, clock).drain()
    assert len(slack.calls_to("views.publish")) == 1
    published = slack.home_views[ALICE]["blocks"]
    assert [{k: v for k, v in b.items() if k != "block_id"} for b in published] == view["blocks"]
    assert entry(engine, home).status == OutboxStatus.SENT


# -- (h) competing senders ------------------------------------------------------------------------------


def test_two_senders_draining_together_send_each_entry_once_and_in_order(
    database_url: str, engine: Engine, slack: FakeSlack, clock: Clock
) -> None:
    channels = [LEADERSHIP, INTAKE, "CSHOPS0001", "CTECHS0001"]
    ids = [
        queue(engine, clock, channel, f"{channel} {n}") for n in range(8) for channel in channels
    ]
    slack.fail("chat.postMessage", times=None, status=200, error="", delay=0.005)  # interleave
    engines = [make_engine(database_url) for _ in range(2)]
    senders = [make_sender(each, slack, clock) for each in engines]
    attempted = [0, 0]
    problems: list[BaseException] = []

    def unfinished() -> bool:
        return any(
            s in (OutboxStatus.PENDING, OutboxStatus.SENDING) for s in statuses(engine).values()
        )

    def run(index: int) -> None:
        deadline = time.monotonic() + 20
        try:
            while unfinished() and time.monotonic() < deadline:
                attempted[index] += senders[index].deliver_due(limit=3)
        except BaseException as exc:  # reported below, with the test's thread
            problems.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for each in engines:
        each.dispose()

    assert problems == []
    assert set(statuses(engine).values()) == {OutboxStatus.SENT}
    assert sum(attempted) == len(ids)  # no entry was claimed twice
    assert min(attempted) > 0, attempted  # both took part
    assert len(posts(slack)) == len(ids)
    assert sorted(outbox_ids(slack, *channels)) == ids
    for channel in channels:
        assert texts(slack, channel) == [f"{channel} {n}" for n in range(8)], channel


# -- which entries a sender claims ------------------------------------------------------------------


def test_a_claim_takes_lane_heads_of_the_wanted_conversations_only(
    engine: Engine, clock: Clock
) -> None:
    """The filters a sender claims with (webhooks apart, conversations it holds enough of
    skipped, only the webhooks' own conversations read) pick the same heads as before they
    were applied ahead of the lanes' grouping: a lane's second entry waits for its first,
    and the claimed rows are what was written."""

    def queue(conversation: str, lane: str | None = None, method: str = "chat.postMessage") -> int:
        with session_scope(engine) as session:
            return outbox.enqueue(
                session,
                conversation=conversation,
                method=method,
                payload={"text": conversation},
                lane=lane,
                now=clock(),
            ).id

    first_card = queue(LEADERSHIP, lane="report:1")
    queue(LEADERSHIP, lane="report:1")  # its edit: waits for the card
    second_card = queue(LEADERSHIP, lane="report:2")
    hook = queue("webhook:7", lane="report:1", method="webhook.post")
    other_hook = queue("webhook:8", lane="report:1", method="webhook.post")
    receipt = queue("respond:U1")

    def claim(**filters: Any) -> set[int]:
        with Session(engine, expire_on_commit=False) as session:
            claims = outbox.claim_due(session, now=clock(), owner="me", **filters)
        with Session(engine) as session:
            for taken in claims:
                stored = session.get(OutboxMessage, taken.entry.id)
                assert stored is not None
                assert stored.status == OutboxStatus.SENDING
                assert (stored.attempts, stored.lease_until, stored.claimed_by) == (
                    taken.entry.attempts,
                    taken.entry.lease_until,
                    "me",
                )
        return {taken.entry.id for taken in claims if taken.entry.id is not None}

    assert claim(only=[]) == set()
    assert claim(only=["webhook:7", "webhook:9"], method="webhook.post") == {hook}
    assert claim(except_methods={"webhook.post"}, skip={LEADERSHIP}) == {receipt}
    assert claim(except_methods={"webhook.post"}, per_conversation=1) == {first_card}
    assert claim(except_methods={"webhook.post"}) == {second_card}
    assert claim() == {other_hook}  # the card's edit waits for the card, still being sent
