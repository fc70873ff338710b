"""Benchmark: how close the outbox sender gets to Slack's per-channel rate limit.

Slack posts about one message per second per channel. A burst of 1,000 messages spread over
50 channels (20 each) therefore needs at least 19 seconds: each channel's first message can go
at once and the 20th one 19 seconds later. This benchmark queues such a burst (one bulk
insert, interleaved over the channels as a busy day would queue it), starts one
`OutboxSender` as `feedbot run` does (`start()`, its background loop), and measures the wall
time until every entry is sent, against a fake Slack that enforces one post per second per
channel (`FakeSlack(channel_rate_limit=1.0)`, answering 429 with `Retry-After: 1`).

The fake runs in a separate process, as Slack is remote: in-process, its request handling
would compete with the sender for the interpreter lock. Afterwards the fake reports what it
holds, and the run checks that nothing was lost (1,000 messages, every entry `sent`), nothing
posted twice (each outbox id once), and each channel's order kept.

One JSON line per backend:

    {"benchmark": "outbox", "backend": "sqlite", "messages": 1000, "channels": 50,
     "seconds": 20.4, "minimum_seconds": 19.0, "efficiency": 0.93, ...}

`efficiency` is `minimum_seconds / seconds`: the share of the rate limit's maximum rate the
sender reached. Target: at least 0.9, none lost, none twice, order kept.

Then, on a database of its own, one look for due entries as the sender's loop makes it after
every commit under a burst (`measure_looks`): 2,000 cards waiting in the leadership channel,
each its own lane, and 20 receipts to 20 people. Timed with that channel skipped (the loop
holds enough of it, as it does almost always in a burst) and not, and on PostgreSQL before and
after `ANALYZE` (a burst begins with statistics that say almost nothing is unfinished):

    {"benchmark": "outbox_look", "backend": "postgresql", "statistics": false,
     "cards_waiting": 2000, "skipping_ms": 1.3, "not_skipping_ms": 5.2, "webhooks_ms": 0.1}

Last, on a database of its own, 2,000 receipts (answers to response URLs, not paced) through
one `OutboxSender` while another thread writes all the time, a transaction of 8 ms a
millisecond apart, as the inbox's worker does (`measure_receipts`): the sender's process CPU
time per receipt, the wall time, and how many statements marked the receipts sent (the
sending threads' marks that wait together go in one):

    {"benchmark": "outbox_receipts", "backend": "sqlite", "receipts": 2000, "sent": 2000,
     "answers_at_slack": 2000, "seconds": 3.9, "cpu_ms_per_receipt": 1.27,
     "statements_marking_sent": 510, ...}

Usage: python -m benchmarks.outbox [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks import (
    BACKENDS,
    emit,
    fresh_database,
    load_average,
    postgres_server,
    rounded,
    setup_logging,
)

log = setup_logging()

TOKEN = "xoxb-bench-token"
MESSAGES = 1000
CHANNELS = 50
RATE_LIMIT = 1.0
"""Seconds between two posts to one channel, as the fake enforces it."""
TIME_LIMIT = 120.0


def channel_ids(count: int = CHANNELS) -> list[str]:
    return [f"CBENCH{index:04d}" for index in range(count)]


def serve_fake_slack(response_urls: int = 0) -> None:
    """Child process: the rate-limited fake Slack until stdin closes, then what it holds.
    After its address it prints `response_urls` response URLs (a JSON list) on one line."""
    from tests.fakeslack import FakeSlack

    fake = FakeSlack(token=TOKEN, channel_rate_limit=RATE_LIMIT).start()
    for channel in channel_ids():
        fake.add_channel(channel, name=channel.lower())
    print(fake.base_url, flush=True)
    if response_urls:
        print(json.dumps([fake.new_response_url() for _ in range(response_urls)]), flush=True)
    sys.stdin.read()
    posted: dict[str, list[int]] = {}
    for channel in channel_ids():
        posted[channel] = [
            int(message["metadata"]["event_payload"]["outbox_id"])
            for message in fake.messages(channel)
            if message.get("metadata")
        ]
    methods = Counter(call.method for call in fake.calls)
    result = {
        "posted": posted,
        "rate_limited": fake.rate_limited_count,
        "calls": dict(methods),
        "responses": len(fake.responses),
        "violations": fake.violations[:5],
    }
    fake.stop()
    print(json.dumps(result), flush=True)


def queue_burst(url: str, now: datetime) -> list[int]:
    """Insert the burst with one executemany; returns the entry ids in queue order."""
    from sqlalchemy import insert, select

    from feedbot.db import make_engine
    from feedbot.models import OutboxMessage

    channels = channel_ids()
    rows = []
    for index in range(MESSAGES):
        channel = channels[index % CHANNELS]
        text = f"Report FB-{1001 + index}: Fritzbox 7590 startet ständig neu ({channel})"
        rows.append(
            {
                "conversation": channel,
                "method": "chat.postMessage",
                "payload": json.dumps({"text": text}, ensure_ascii=False),
                "purpose": "card",
                "status": "pending",
                "attempts": 0,
                "uncertain": False,
                "created_at": now,
                "next_attempt_at": now,
            }
        )
    engine = make_engine(url)
    table: Any = OutboxMessage.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(insert(table), rows)
        ids = list(connection.execute(select(table.c.id).order_by(table.c.id)).scalars())
    engine.dispose()
    return ids


def measure(backend: str, url: str) -> dict[str, Any]:
    from slack_sdk import WebClient
    from sqlalchemy import func, select
    from sqlmodel import col

    from feedbot.db import make_engine
    from feedbot.models import OutboxMessage, OutboxStatus
    from feedbot.slack.outbox import OutboxSender

    fake = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.outbox", "--fake-slack"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdin is not None and fake.stdout is not None
    try:
        base_url = fake.stdout.readline().strip()
        ids = queue_burst(url, datetime.now(UTC) - timedelta(seconds=1))
        engine = make_engine(url)
        client = WebClient(token=TOKEN, base_url=base_url, timeout=10)
        client.retry_handlers = []  # as make_sender_client builds it
        sender = OutboxSender(engine, client)
        load = load_average()
        log.info("outbox/%s: sending %s messages over %s channels", backend, MESSAGES, CHANNELS)
        started_at = datetime.now(UTC)
        started = time.monotonic()
        sender.start()
        sender.wake()
        unfinished = (OutboxStatus.PENDING, OutboxStatus.SENDING)
        remaining = MESSAGES
        while time.monotonic() - started < TIME_LIMIT:
            time.sleep(0.5)
            with engine.connect() as connection:
                remaining = connection.execute(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(col(OutboxMessage.status).in_(unfinished))
                ).scalar_one()
            if remaining == 0:
                break
        sender.stop()
        with engine.connect() as connection:
            status = col(OutboxMessage.status)
            statuses: dict[str, int] = {
                str(name): int(count)
                for name, count in connection.execute(
                    select(status, func.count()).group_by(status)
                ).all()
            }
            last_sent: datetime | None = connection.execute(
                select(func.max(OutboxMessage.sent_at))
            ).scalar_one()
        engine.dispose()
    finally:
        fake.stdin.close()
        held = json.loads(fake.stdout.read() or "{}")
        fake.wait(10)
    if last_sent is not None and last_sent.tzinfo is None:
        last_sent = last_sent.replace(tzinfo=UTC)
    finished = remaining == 0 and last_sent is not None
    seconds = (last_sent - started_at).total_seconds() if finished and last_sent else TIME_LIMIT
    posted: dict[str, list[int]] = held.get("posted", {})
    every = [entry for channel in posted.values() for entry in channel]
    counts = Counter(every)
    per_channel = MESSAGES // CHANNELS
    minimum = (per_channel - 1) * RATE_LIMIT
    efficiency = minimum / seconds if seconds > 0 else 0.0
    sent = statuses.get(str(OutboxStatus.SENT), 0)
    in_order = all(channel == sorted(channel) for channel in posted.values())
    return {
        "benchmark": "outbox",
        "backend": backend,
        "messages": MESSAGES,
        "channels": CHANNELS,
        "seconds": round(seconds, 2),
        "minimum_seconds": minimum,
        "efficiency": round(efficiency, 3),
        "messages_per_second": round(len(every) / seconds, 1) if seconds else None,
        "max_messages_per_second": CHANNELS / RATE_LIMIT,
        "entries_sent": sent,
        "messages_in_slack": len(every),
        "lost": len(set(ids) - set(counts)),
        "posted_twice": sum(1 for count in counts.values() if count > 1),
        "order_kept": in_order,
        "rate_limited_answers": held.get("rate_limited"),
        "post_calls": held.get("calls", {}).get("chat.postMessage"),
        "fake_violations": held.get("violations"),
        "finished": finished,
        "target_efficiency": 0.9,
        "meets_target": finished
        and efficiency >= 0.9
        and len(every) == MESSAGES
        and sent == MESSAGES
        and all(count == 1 for count in counts.values())
        and in_order,
        "load_average": load,
        "efficiency_pct": rounded(efficiency * 100, 1),
    }


RECEIPTS = 2000
WRITER_HOLDS = 0.008
"""Seconds the writer beside the sender holds each write transaction (`measure_receipts`):
about what the inbox's worker takes for one report."""


def measure_receipts(backend: str, url: str) -> dict[str, Any]:
    """`RECEIPTS` receipts (answers to `response_url`s, none paced) through one
    `OutboxSender`, while another thread writes all the time as the inbox's worker does
    (transactions of `WRITER_HOLDS`, a millisecond apart): the sender's process CPU time per
    receipt, the wall time, and how many statements recorded the receipts as sent."""
    from slack_sdk import WebClient
    from sqlalchemy import event, func, insert, select, text
    from sqlmodel import col

    from feedbot.db import make_engine
    from feedbot.models import OutboxMessage, OutboxStatus
    from feedbot.slack.outbox import OutboxSender
    from feedbot.slack.web_api import RESPONSE_URL

    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.outbox",
            "--fake-slack",
            "--response-urls",
            str(RECEIPTS),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdin is not None and fake.stdout is not None
    engine = make_engine(url)
    table: Any = OutboxMessage.__table__  # type: ignore[attr-defined]
    try:
        base_url = fake.stdout.readline().strip()
        urls = json.loads(fake.stdout.readline())
        now = datetime.now(UTC) - timedelta(seconds=1)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE bench_writes (note VARCHAR(20))")
            connection.execute(
                insert(table),
                [
                    {
                        "conversation": f"respond:{index}",
                        "method": RESPONSE_URL,
                        "payload": json.dumps({"response_url": response_url, "text": "FB-1"}),
                        "purpose": "receipt",
                        "status": "pending",
                        "attempts": 0,
                        "uncertain": False,
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                    for index, response_url in enumerate(urls)
                ],
            )
        marks: list[int] = []

        def count_marks(*args: Any) -> None:
            setting = str(args[2]).partition(" WHERE ")[0]
            if setting.startswith("UPDATE outbox_message SET status") and "result_ts" in setting:
                marks.append(1)

        event.listen(engine, "before_cursor_execute", count_marks)
        writing = threading.Event()
        writing.set()

        def write_all_the_time() -> None:
            while writing.is_set():
                with engine.begin() as connection:
                    connection.execute(text("INSERT INTO bench_writes VALUES ('busy')"))
                    time.sleep(WRITER_HOLDS)
                time.sleep(0.001)

        writer = threading.Thread(target=write_all_the_time, daemon=True)
        writer.start()
        client = WebClient(token=TOKEN, base_url=base_url, timeout=10)
        client.retry_handlers = []
        sender = OutboxSender(engine, client)
        load = load_average()
        cpu, started = time.process_time(), time.monotonic()
        sender.start()
        sender.wake()
        remaining = RECEIPTS
        while remaining and time.monotonic() - started < TIME_LIMIT:
            time.sleep(0.05)
            with engine.connect() as connection:
                remaining = connection.execute(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(col(OutboxMessage.status) != OutboxStatus.SENT)
                ).scalar_one()
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
        sender.stop()
        writing.clear()
        writer.join()
    finally:
        engine.dispose()
        fake.stdin.close()
        held = json.loads(fake.stdout.read() or "{}")
        fake.wait(10)
    return {
        "benchmark": "outbox_receipts",
        "backend": backend,
        "receipts": RECEIPTS,
        "sent": RECEIPTS - remaining,
        "answers_at_slack": held.get("responses"),
        "seconds": round(seconds, 2),
        "cpu_ms_per_receipt": rounded(cpu / RECEIPTS * 1000, 3),
        "statements_marking_sent": len(marks),
        "writer_holds_ms": WRITER_HOLDS * 1000,
        "load_average": load,
    }


LOOK_CARDS = 2000
LOOKS = 100


def measure_looks(backend: str, url: str) -> list[dict[str, Any]]:
    """Milliseconds per look for due entries (`outbox.claim_due`, as `OutboxSender` and
    `WebhookSender` call it) with `LOOK_CARDS` cards waiting in one channel."""
    from sqlmodel import Session

    from feedbot.core import outbox, webhooks
    from feedbot.db import make_engine, session_scope

    engine = make_engine(url)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for index in range(LOOK_CARDS):
            outbox.enqueue(
                session,
                conversation="CLEADERS1",
                method="chat.postMessage",
                payload={"text": f"card {index}"},
                lane=f"report:{index}",
                now=now,
            )
        for index in range(20):
            outbox.enqueue(
                session,
                conversation=f"respond:U{index:04d}",
                method="response_url",
                payload={"text": "receipt"},
                now=now,
            )

    def per_look(**filters: Any) -> float:
        started = time.perf_counter()
        for _ in range(LOOKS):
            with Session(engine, expire_on_commit=False) as session:
                outbox.claim_due(session, now=now, limit=50, per_conversation=2, **filters)
        return (time.perf_counter() - started) / LOOKS * 1000

    def hooks_look() -> float:
        started = time.perf_counter()
        for _ in range(LOOKS):
            with Session(engine, expire_on_commit=False) as session:
                receivers = [webhooks.conversation_of(w) for w in webhooks.all_webhooks(session)]
                outbox.claim_due(session, now=now, only=receivers, method=webhooks.METHOD)
        return (time.perf_counter() - started) / LOOKS * 1000

    records = []
    for statistics in (False, True) if backend == "postgresql" else (None,):
        if statistics:
            with engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE outbox_message")
        record: dict[str, Any] = {
            "benchmark": "outbox_look",
            "backend": backend,
            "cards_waiting": LOOK_CARDS,
            # the receipts are claimed by the first look; later ones find none due
            "skipping_ms": rounded(
                per_look(skip={"CLEADERS1"}, except_methods={webhooks.METHOD}), 3
            ),
            # each takes the channel's next two cards, as after each post that went out
            "not_skipping_ms": rounded(per_look(except_methods={webhooks.METHOD}), 3),
            "webhooks_ms": rounded(hooks_look(), 3),
        }
        if statistics is not None:
            record["statistics"] = statistics
        records.append(record)
    engine.dispose()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--fake-slack", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--response-urls", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_slack:
        serve_fake_slack(args.response_urls)
        return
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    for backend in backends:
        if backend == "postgresql":
            log.info("outbox/postgresql on %s", postgres_server().rsplit("@", 1)[-1])
        with fresh_database(backend) as url:
            emit(measure(backend, url))
        with fresh_database(backend) as url:
            for record in measure_looks(backend, url):
                emit(record)
        with fresh_database(backend) as url:
            emit(measure_receipts(backend, url))


if __name__ == "__main__":
    main()
