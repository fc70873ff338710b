"""Benchmark: build and queue one weekly digest over a million stored reports.

Fills a fresh, migrated database with `--reports` reports (default 1,000,000), `--in-week` of
them (default 50,000) in the digest's week 2026-W47, the rest spread over the two years
before plus a few after, each with its `report_term` rows (as `feedbot.core.similarity`
makes them, from the mixed German and English of `benchmarks.report_texts`) and a delivered
card message, using bulk inserts (executemany on SQLite, COPY on PostgreSQL). Then, in a
fresh process, it times everything the weekly job does for a leadership channel
(`feedbot.slack.features.digest.send_digest`): the numbers, themes and lists, the Block Kit
message, the trend chart, the CSV of the week's 50,000 reports, and queueing it all in the
outbox in one transaction. One JSON line per backend:

    {"benchmark": "digest", "backend": "sqlite", "reports": 1000000, "in_week": 50000,
     "seconds": 1.4, "peak_mb": 210.3, "steps": {"query": 0.7, "chart": 0.3, ...}, ...}

`seconds` is the wall time of that work, imports excluded (matplotlib's import, about 0.4 s,
is paid once per process); `steps` splits it up. `peak_mb` is the measuring process's peak
resident memory (VmHWM, imports included). Targets: under 2 s and under 300 MB on both.

PostgreSQL: `FEEDBOT_BENCH_DATABASE_URL` (default postgresql://postgres@127.0.0.1:5432/postgres)
names the server; the benchmark creates and drops its own database there.

Usage: python -m benchmarks.digest [--backend sqlite|postgresql|both] [--reports 1000000]
       [--in-week 50000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from benchmarks import (
    BACKENDS,
    emit,
    fresh_database,
    load_average,
    peak_rss_mb,
    report_texts,
    setup_logging,
)
from feedbot.core import similarity
from feedbot.core.digest import shift, week_bounds
from feedbot.db import make_engine

log = setup_logging()

PERIOD = "2026-W47"
ZONE = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 08:00 in Berlin: when it is due
CHANNEL = "CBENCH0001"
BATCH = 20_000


def stamp(moment: datetime) -> str:
    """How SQLAlchemy stores a UTC datetime on SQLite."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _status(rng: random.Random, created: datetime) -> str:
    """Old reports are mostly resolved; the last weeks' are mostly still being worked on."""
    resolved_share = 0.93 if NOW - created > timedelta(weeks=4) else 0.4
    roll = rng.random()
    if roll < 0.03:
        return "duplicate"
    if roll < 0.03 + resolved_share:
        return "resolved"
    return "acknowledged" if rng.random() < 0.75 else "open"


def rows(reports: int, in_week: int, seed: int = 47) -> Iterator[dict[str, Any]]:
    """Every report, oldest first, as column values (UTC datetimes) plus its terms."""
    rng = random.Random(seed)
    variants = [
        (body, category, similarity.terms(body)) for body, category in report_texts(rng, 5000)
    ]
    start, end = week_bounds(PERIOD, ZONE)
    history_start = week_bounds(shift(PERIOD, -104), ZONE)[0]
    after = min(2000, reports // 20)
    before = reports - in_week - after
    moments = sorted(
        [history_start + (start - history_start) * rng.random() for _ in range(before)]
        + [start + (end - start) * rng.random() for _ in range(in_week)]
        + [end + (NOW - end) * rng.random() for _ in range(after)]
    )
    for index, created in enumerate(moments, start=1):
        body, category, terms = rng.choice(variants)
        status = _status(rng, created)
        acknowledged = created + timedelta(hours=rng.lognormvariate(1.5, 1.0))
        resolved = acknowledged + timedelta(hours=rng.lognormvariate(3.5, 0.9))
        if status in ("resolved", "duplicate") and resolved > NOW:
            status = "acknowledged"
        if status == "acknowledged" and acknowledged > NOW:
            status = "open"
        yield {
            "id": index,
            "created_at": created,
            "updated_at": created,
            "source": "modal",
            "reporter_id": f"U{rng.randint(1, 5000):08d}",
            "anonymous": rng.random() < 0.15,
            "text": body,
            "category": category,
            "location": f"Shop {rng.randint(1, 400):03d}",
            "urgency": rng.choices(("low", "normal", "high", "critical"), (2, 6, 2, 0.3))[0],
            "callback_requested": False,
            "status": status,
            "acknowledged_at": acknowledged if status != "open" else None,
            "acknowledged_by": "ULEADER01" if status != "open" else None,
            "resolved_at": resolved if status in ("resolved", "duplicate") else None,
            "resolution_note": "Fixed by the network team." if status == "resolved" else None,
            "me_too_count": min(int(rng.expovariate(0.7)), 30),
            "card_message_id": index,
            "follow_up_at": created + timedelta(days=3)
            if status in ("open", "acknowledged") and rng.random() < 0.1
            else None,
            "leadership_channel": CHANNEL,
            "terms": terms,
        }


REPORT_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "source",
    "reporter_id",
    "anonymous",
    "text",
    "category",
    "location",
    "urgency",
    "callback_requested",
    "status",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolution_note",
    "me_too_count",
    "card_message_id",
    "follow_up_at",
    "leadership_channel",
)
OUTBOX_COLUMNS = (
    "id",
    "conversation",
    "method",
    "payload",
    "purpose",
    "status",
    "attempts",
    "uncertain",
    "created_at",
    "next_attempt_at",
    "sent_at",
    "result_channel",
    "result_ts",
)


def _report_values(row: dict[str, Any], convert: Any) -> tuple[Any, ...]:
    return tuple(
        convert(row[name]) if isinstance(row[name], datetime) else row[name]
        for name in REPORT_COLUMNS
    )


def _outbox_values(row: dict[str, Any], convert: Any) -> tuple[Any, ...]:
    """The report's card, delivered: the digest links to it."""
    created = convert(row["created_at"])
    ts = f"{row['created_at'].timestamp():.6f}"
    card = (row["id"], CHANNEL, "chat.postMessage", "{}", "card", "sent", 1, False)
    return (*card, created, created, created, CHANNEL, ts)


def _batches(reports: int, in_week: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows(reports, in_week):
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill_sqlite(url: str, reports: int, in_week: int) -> None:
    engine = make_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for batch in _batches(reports, in_week):
            cursor.executemany(
                f"INSERT INTO outbox_message ({', '.join(OUTBOX_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(OUTBOX_COLUMNS))})",
                [_outbox_values(row, stamp) for row in batch],
            )
            cursor.executemany(
                f"INSERT INTO report ({', '.join(REPORT_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(REPORT_COLUMNS))})",
                [_report_values(row, stamp) for row in batch],
            )
            cursor.executemany(
                "INSERT INTO report_term (report_id, term) VALUES (?, ?)",
                [(row["id"], term) for row in batch for term in row["terms"]],
            )
            raw.commit()
        # No ANALYZE: feedbot never runs it on SQLite, so a running bot's queries are
        # planned without statistics, and so are these.
    finally:
        raw.close()
        engine.dispose()


def fill_postgres(url: str, reports: int, in_week: int) -> None:
    engine = make_engine(url)
    raw = engine.raw_connection()
    try:
        cursor: Any = raw.cursor()
        for batch in _batches(reports, in_week):
            with cursor.copy(
                f"COPY outbox_message ({', '.join(OUTBOX_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in batch:
                    copy.write_row(_outbox_values(row, lambda moment: moment))
            with cursor.copy(f"COPY report ({', '.join(REPORT_COLUMNS)}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(_report_values(row, lambda moment: moment))
            with cursor.copy("COPY report_term (report_id, term) FROM STDIN") as copy:
                for row in batch:
                    for term in row["terms"]:
                        copy.write_row((row["id"], term))
            raw.commit()
        for table in ("report", "outbox_message"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        raw.commit()
        cursor.close()
        driver: Any = raw.driver_connection  # VACUUM refuses to run in a transaction
        driver.autocommit = True
        driver.execute("VACUUM ANALYZE")
    finally:
        raw.close()
        engine.dispose()


def time_steps(module: Any, targets: dict[str, str]) -> dict[str, float]:
    """Wrap the functions at `targets` (dotted paths inside `module`) so each call adds its
    wall time to the returned dict under its step name. The CSV is read on a thread while
    the digest is computed, so its step is the whole read, not what it added."""
    steps: dict[str, float] = {}
    for step, path in targets.items():
        *parents, name = path.split(".")
        owner = module
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)

        def timed(*args: Any, _step: str = step, _original: Any = original, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                steps[_step] = steps.get(_step, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed)
    return steps


def measure(url: str) -> dict[str, Any]:
    """Run in a fresh process: everything the weekly job does for one leadership channel."""
    import matplotlib.backends.backend_agg  # noqa: F401  (imports are not timed)

    from feedbot.core.config import RuntimeConfig
    from feedbot.slack.features import digest as feature

    engine = make_engine(url)
    config = RuntimeConfig(leadership_channel=CHANNEL, timezone=ZONE.key)
    with engine.connect() as connection:  # open the first connection before timing
        connection.execute(text("SELECT 1"))
    steps = time_steps(
        feature,
        {"query": "core.build_digest", "chart": "chart_view.render_chart", "csv": "_week_csv"},
    )
    started = time.perf_counter()
    feature.send_digest(
        engine,
        target=feature.leadership_target(config),
        period=PERIOD,
        now=NOW,
        link_base="https://example.slack.com/",
        force=True,  # repeatable: a second run replaces the first
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "peak_mb": peak_rss_mb(),
        "steps": {name: round(value, 3) for name, value in steps.items()},
    }


def run(backend: str, reports: int, in_week: int, repeat: int) -> None:
    with fresh_database(backend) as url:
        started = time.perf_counter()
        (fill_sqlite if backend == "sqlite" else fill_postgres)(url, reports, in_week)
        log.info("%s: %s reports stored in %.0f s", backend, reports, time.perf_counter() - started)
        for _ in range(repeat):
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.digest", "--measure", url],
                check=True,
                capture_output=True,
                text=True,
            )
            emit(
                {
                    "benchmark": "digest",
                    "backend": backend,
                    "reports": reports,
                    "in_week": in_week,
                    **json.loads(child.stdout),
                    "load_average": load_average(),
                }
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--in-week", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=1, help="measurements per backend")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    for backend in BACKENDS if args.backend == "both" else (args.backend,):
        run(backend, args.reports, args.in_week, args.repeat)


if __name__ == "__main__":
    main()
