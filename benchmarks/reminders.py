"""How fast the reminder scan finds what is due among 100,000 open reports (target: < 50 ms).

    python benchmarks/reminders.py                      # SQLite, in a temporary file
    FEEDBOT_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1/postgres \\
        python benchmarks/reminders.py                  # and PostgreSQL, in a scratch database

The reports look like a busy workspace's steady state: most are owned and waiting, many
have follow-ups (5,000 overdue and long escalated), 15,000 were never acknowledged and
escalated long ago, 7,000 follow-ups, call backs and acknowledgements are in flight with
reminders already sent (as the rules send them: in working hours, an interval apart), and
300 have a step due right now, as after a short outage. The clock is a Thursday, 10:00 in Berlin, inside
working hours, where the scan does the most work. What is timed is `find_due`: the
candidate queries plus the exact rules in Python, as the scheduler runs it every minute.
Prints one JSON line per backend: {"backend", "open_reports", "due", "ms"} (median of 7).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders import Rules, find_due
from feedbot.db import make_engine, normalise_url, upgrade
from feedbot.models import OutboxMessage, Reminder, Report, Urgency

OPEN_REPORTS = 100_000
RUNS = 7
NOW = datetime(2026, 11, 19, 10, 0, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)
LEADERS = [f"ULEAD{n:04d}" for n in range(40)]


def _rows(card_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The reports and the reminders already sent about them, as the rules would have sent
    them: in working hours, an interval apart, each with its successor's due moment."""
    rng = random.Random(5)
    rules = Rules.from_config(RuntimeConfig())
    hours, zone, interval = rules.hours, rules.zone, rules.interval
    reports: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    def ago(amount: timedelta) -> datetime:
        """`amount` of working time before now."""
        return hours.subtract(NOW, amount, zone)

    def minutes(low: float, high: float) -> timedelta:
        return timedelta(minutes=rng.uniform(low, high))

    def report(**values: Any) -> None:
        created = values.pop("created_at", NOW - timedelta(days=rng.uniform(1, 400)))
        reports.append(
            {
                "id": len(reports) + 1,
                "created_at": created,
                "updated_at": created,
                "source": "command",
                "anonymous": False,
                "text": "Speedport batch reboots every hour in shop",
                "category": "Devices & hardware",
                "urgency": "normal",
                "callback_requested": False,
                "status": "acknowledged",
                "me_too_count": 0,
                "card_message_id": card_id,
                "leadership_channel": "CLEAD0001",
                "owner_id": None,
                "acknowledged_at": None,
                "follow_up_at": None,
                "snoozed_until": None,
                "escalated_at": None,
                "customer_called_at": None,
                **values,
            }
        )

    def remind(kind: str, count: int, last: datetime, *, escalate: bool = False) -> datetime:
        """`count` reminders, the last at `last`; returns when the first went out."""
        times = [last]
        for _ in range(count - 1):
            times.insert(0, hours.subtract(times[0], interval, zone))
        for n, at in enumerate(times):
            sent.append(
                {
                    "report_id": len(reports) + 1,
                    "kind": kind,
                    "sequence": n + 1,
                    "due_at": at,
                    "sent_at": at,
                    "next_due_at": hours.add(at, interval, zone),
                }
            )
        if escalate:
            at = hours.add(last, interval, zone)
            sent.append(
                {
                    "report_id": len(reports) + 1,
                    "kind": f"{kind}_escalation",
                    "sequence": 1,
                    "due_at": at,
                    "sent_at": at,
                    "next_due_at": None,
                }
            )
        return times[0]

    def owned(**values: Any) -> None:
        created = values.pop("created_at", NOW - timedelta(days=rng.uniform(3, 400)))
        report(
            created_at=created,
            owner_id=rng.choice(LEADERS),
            acknowledged_at=created + timedelta(hours=2),
            **values,
        )

    def last_sent(due: bool) -> datetime:
        """When the latest reminder of an item in flight went out: an interval ago or more
        if the next one is due now, less if it is not."""
        return ago(interval + minutes(0, 20)) if due else ago(minutes(1, 239))

    for n in range(OPEN_REPORTS):
        share, due = n % 1000, n % 1000 >= 997  # 0.3 % of reports have a step due now
        if share < 550:  # owned, nothing scheduled
            owned()
        elif share < 700:  # follow-up ahead
            owned(follow_up_at=NOW + timedelta(days=rng.uniform(0.1, 30)))
        elif share < 750:  # follow-up long overdue, reminded three times and escalated
            first = remind("follow_up", 3, NOW - timedelta(days=rng.uniform(5, 200)), escalate=True)
            owned(follow_up_at=first, escalated_at=first + timedelta(days=2))
        elif share < 770 or (due and share == 997):  # follow-up reminders in flight
            if due and n % 2:
                owned(follow_up_at=NOW - minutes(0, 30))  # the date has just come
            else:
                first = remind("follow_up", rng.randint(1, 3), last_sent(due))
                owned(follow_up_at=first)
        elif share < 800 or (due and share == 998):  # a customer waits for a call back
            first = remind("callback", rng.randint(1, 8), last_sent(due))
            owned(
                callback_requested=True,
                customer_contact="Frau Weber, 0171 2345678",
                snoozed_until=first,
            )
        elif share < 950:  # never acknowledged, reminded and escalated long ago
            created = NOW - timedelta(days=rng.uniform(5, 400))
            first_due = hours.add(created, timedelta(hours=10), zone)
            last = remind("ack", 3, hours.add(first_due, 2 * interval, zone), escalate=True)
            report(created_at=created, status="open", escalated_at=last + timedelta(days=1))
        else:  # waiting for acknowledgement: not due yet, reminded (1-3), or due now
            urgency = rng.choice(["low", "normal", "normal", "high"])
            target = rules.targets[Urgency(urgency)]
            if due:
                if n % 2:
                    created = ago(target + minutes(0, 20))
                else:
                    first = remind("ack", rng.randint(1, 2), last_sent(True))
                    created = hours.subtract(first, target, zone)
            elif share < 975:
                created = ago(target * rng.uniform(0, 0.95))
            else:
                first = remind("ack", rng.randint(1, 3), last_sent(False))
                created = hours.subtract(first, target, zone)
            report(created_at=created, status="open", urgency=urgency)
    return reports, sent


def populate(engine: Engine) -> None:
    upgrade(engine)
    with Session(engine) as session:
        card = OutboxMessage(
            conversation="CLEAD0001", method="chat.postMessage", payload="{}", purpose="card"
        )
        session.add(card)
        session.commit()
        assert card.id is not None
        reports, sent = _rows(card.id)
    with engine.begin() as connection:
        for start in range(0, len(reports), 5000):
            connection.execute(insert(Report), reports[start : start + 5000])
        for start in range(0, len(sent), 5000):
            connection.execute(insert(Reminder), sent[start : start + 5000])
    # What autovacuum keeps up to date in a PostgreSQL database that has been running for a
    # while: planner statistics, visibility map. SQLite gets no statistics: feedbot never
    # runs ANALYZE there, so its queries must be planned well without them.
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))


def measure(engine: Engine, backend: str) -> dict[str, Any]:
    config = RuntimeConfig()
    zone = config.zone
    timings = []
    due = []
    for _ in range(RUNS + 1):  # the first run warms caches and is not counted
        with Session(engine) as session:
            started = time.perf_counter()
            due = find_due(session, now=NOW, config=config, zone_for=lambda _user: zone)
            timings.append((time.perf_counter() - started) * 1000)
    return {
        "backend": backend,
        "open_reports": OPEN_REPORTS,
        "due": len(due),
        "ms": round(statistics.median(timings[1:]), 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/bench.db")
        populate(engine)
        print(json.dumps(measure(engine, "sqlite")))
        engine.dispose()
    url = os.environ.get("FEEDBOT_BENCH_POSTGRES_URL")
    if not url:
        print("set FEEDBOT_BENCH_POSTGRES_URL to measure PostgreSQL too", file=sys.stderr)
        return
    server = make_url(normalise_url(url))
    name = f"feedbot_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
        populate(engine)
        print(json.dumps(measure(engine, "postgresql")))
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
