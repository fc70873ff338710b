"""Benchmark: looking up similar reports among 20,000 open ones.

Every report filed by `/feedback <text>`, the form or a message asks for similar open reports
(the receipt suggests *me too* instead of a duplicate), so `similar_reports` runs inside the
request that Slack wants answered within 3 seconds, and its cost must not grow with the
table. This benchmark fills a fresh, migrated database with `--reports` open reports (default
20,000; open or acknowledged) in the mixed German and English of `benchmarks.report_texts`,
with their `report_term` rows exactly as `feedbot.core.similarity.terms` makes them, using
bulk inserts (executemany on SQLite, COPY on PostgreSQL). Then, in a fresh process, it times
`feedbot.core.similar_reports.similar_reports` for `--lookups` new texts (default 200), each in its
own session as a request would, after 20 untimed lookups that warm the connection pool and
SQLAlchemy's statement cache.

One JSON line per backend:

    {"benchmark": "similar", "backend": "sqlite", "reports": 20000, "lookups": 200,
     "p50_ms": 3.1, "p99_ms": 9.8, "peak_rss_mb": 95.2, "peak_heap_kb": 850.0, ...}

`peak_rss_mb` is the measuring process's peak resident memory (VmHWM, imports included;
`rss_before_mb` is that peak before the first lookup);
`peak_heap_kb` is the most Python memory one lookup allocated (tracemalloc, in a separate
untimed pass so tracing does not slow the timed one).

Usage: python -m benchmarks.similar [--backend sqlite|postgresql|both] [--reports 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks import (
    BACKENDS,
    emit,
    fresh_database,
    load_average,
    peak_rss_mb,
    percentile,
    report_texts,
    rounded,
    setup_logging,
)

log = setup_logging()

NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
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
    "me_too_count",
    "leadership_channel",
)


def generate(count: int, seed: int = 20) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """Each report's column values and its terms, oldest first."""
    from feedbot.core import similarity

    rng = random.Random(seed)
    for index, (text, category) in enumerate(report_texts(rng, count), start=1):
        created = NOW - timedelta(days=90 * rng.random())
        row = {
            "id": index,
            "created_at": created,
            "updated_at": created,
            "source": rng.choice(("modal", "command", "direct_message", "intake_channel")),
            "reporter_id": f"U{rng.randint(1, 3000):08d}",
            "anonymous": rng.random() < 0.1,
            "text": text,
            "category": category,
            "location": f"Shop {rng.randint(1, 400):03d}",
            "urgency": rng.choices(("low", "normal", "high", "critical"), (2, 6, 2, 0.3))[0],
            "callback_requested": False,
            "status": "open" if rng.random() < 0.6 else "acknowledged",
            "me_too_count": 0,
            "leadership_channel": "CBENCHLEAD",
        }
        yield row, similarity.terms(text)


def fill(backend: str, url: str, count: int) -> int:
    """Insert `count` reports and their terms in bulk; returns how many term rows."""
    from sqlalchemy import insert

    from feedbot.db import make_engine
    from feedbot.models import Report, ReportTerm

    generated = list(generate(count))
    terms = [(row["id"], term) for row, row_terms in generated for term in row_terms]
    engine = make_engine(url)
    try:
        if backend == "sqlite":
            report: Any = Report.__table__  # type: ignore[attr-defined]
            term: Any = ReportTerm.__table__  # type: ignore[attr-defined]
            with engine.begin() as connection:
                connection.execute(insert(report), [row for row, _ in generated])
                connection.execute(
                    insert(term), [{"report_id": rid, "term": text} for rid, text in terms]
                )
                connection.exec_driver_sql("ANALYZE")
            return len(terms)
        raw = engine.raw_connection()
        try:
            cursor: Any = raw.cursor()
            with cursor.copy(f"COPY report ({', '.join(REPORT_COLUMNS)}) FROM STDIN") as copy:
                for row, _ in generated:
                    copy.write_row(tuple(row[name] for name in REPORT_COLUMNS))
            with cursor.copy("COPY report_term (report_id, term) FROM STDIN") as copy:
                for pair in terms:
                    copy.write_row(pair)
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('report', 'id'), (SELECT max(id) FROM report))"
            )
            raw.commit()
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            raw.driver_connection.execute("VACUUM ANALYZE")  # type: ignore[union-attr]
        finally:
            raw.close()
        return len(terms)
    finally:
        engine.dispose()


def measure(url: str, lookups: int) -> dict[str, Any]:
    """In a fresh process: time `lookups` similar-report lookups, then their memory."""
    from sqlmodel import Session

    from feedbot.core.similar_reports import similar_reports
    from feedbot.db import make_engine

    engine = make_engine(url)
    rss_before = peak_rss_mb()
    queries = report_texts(random.Random(2026), lookups + 20)
    for text, category in queries[:20]:
        with Session(engine) as session:
            similar_reports(session, text=text, category=category)
    timings: list[float] = []
    found = 0
    for text, category in queries[20:]:
        started = time.perf_counter()
        with Session(engine) as session:
            matches = similar_reports(session, text=text, category=category)
        timings.append(time.perf_counter() - started)
        found += len(matches)
    heap_peaks: list[int] = []
    tracemalloc.start()
    for text, category in queries[20 : 20 + min(lookups, 50)]:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        with Session(engine) as session:
            similar_reports(session, text=text, category=category)
        heap_peaks.append(tracemalloc.get_traced_memory()[1] - baseline)
    tracemalloc.stop()
    engine.dispose()
    ms = [seconds * 1000 for seconds in timings]
    return {
        "lookups": lookups,
        "p50_ms": rounded(percentile(ms, 50)),
        "p90_ms": rounded(percentile(ms, 90)),
        "p99_ms": rounded(percentile(ms, 99)),
        "max_ms": rounded(max(ms)),
        "mean_ms": rounded(sum(ms) / len(ms)),
        "matches_per_lookup": round(found / lookups, 2),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "peak_heap_kb": round(max(heap_peaks) / 1024, 1),
    }


def run(backend: str, url: str, reports: int, lookups: int) -> dict[str, Any]:
    started = time.perf_counter()
    terms = fill(backend, url, reports)
    log.info(
        "similar/%s: %s reports, %s terms in %.1f s",
        backend,
        reports,
        terms,
        time.perf_counter() - started,
    )
    load = load_average()
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.similar", "--measure", url, "--lookups", str(lookups)],
        check=True,
        capture_output=True,
        text=True,
    )
    if child.stderr:
        sys.stderr.write(child.stderr)
    return {
        "benchmark": "similar",
        "backend": backend,
        "reports": reports,
        "terms": terms,
        **json.loads(child.stdout),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.lookups)))
        return
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    for backend in backends:
        with fresh_database(backend) as url:
            emit(run(backend, url, args.reports, args.lookups))


if __name__ == "__main__":
    main()
