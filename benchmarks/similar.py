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

`recall` says how much of what an exhaustive search finds the lookup finds: for each timed
text, every open report is scored (the Jaccard index of the terms, in Python, after the
timing) and ranked as `similar_reports` ranks (same category first, then score); `recall`
is the share of that top 3's places the lookup filled with reports as good (a report that
ties with the third counts: many reports share a score), over the texts that have any
report above the threshold, and `recall_any` the share of those texts for which the lookup
found at least one. The lookup reads the index rows of a text's rarest terms only, up to
`PROBE_ROWS`; `--probe-rows N` measures what another budget would cost and find.

Usage: python -m benchmarks.similar [--backend sqlite|postgresql|both] [--reports 20000]
       [--probe-rows N]
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
            # No ANALYZE: feedbot never runs it on SQLite, and statistics taken now (no
            # report in an incident yet) would steer later queries away from the indexes a
            # running bot's queries use (`incident_id = ?` would look unselective).
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


def measure(url: str, lookups: int, probe_rows: int | None = None) -> dict[str, Any]:
    """In a fresh process: time `lookups` similar-report lookups, then their memory and
    their recall."""
    from sqlmodel import Session

    from feedbot.core import similar_reports as lookup
    from feedbot.core.similar_reports import similar_reports
    from feedbot.db import make_engine

    if probe_rows is not None:
        lookup.PROBE_ROWS = probe_rows  # read when each lookup picks its terms
    engine = make_engine(url)
    rss_before = peak_rss_mb()
    queries = report_texts(random.Random(2026), lookups + 20)
    for text, category in queries[:20]:
        with Session(engine) as session:
            similar_reports(session, text=text, category=category)
    timings: list[float] = []
    found = 0
    returned: list[list[int]] = []
    for text, category in queries[20:]:
        started = time.perf_counter()
        with Session(engine) as session:
            matches = similar_reports(session, text=text, category=category)
        timings.append(time.perf_counter() - started)
        found += len(matches)
        returned.append([match.report.id or 0 for match in matches])
    heap_peaks: list[int] = []
    tracemalloc.start()
    for text, category in queries[20 : 20 + min(lookups, 50)]:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        with Session(engine) as session:
            similar_reports(session, text=text, category=category)
        heap_peaks.append(tracemalloc.get_traced_memory()[1] - baseline)
    tracemalloc.stop()
    recall, recall_any = _recall(engine, queries[20:], returned)
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
        "probe_rows": lookup.PROBE_ROWS,
        "recall": recall,
        "recall_any": recall_any,
    }


def _recall(
    engine: Any, queries: list[tuple[str, str]], returned: list[list[int]]
) -> tuple[float, float]:
    """How much of an exhaustive search's top 3 the lookups returned (see the module)."""
    from sqlalchemy import select
    from sqlmodel import col

    from feedbot.core import similarity
    from feedbot.core.reports import OPEN_STATUSES
    from feedbot.models import Report, ReportTerm

    terms: dict[int, set[str]] = {}
    categories: dict[int, str] = {}
    with engine.connect() as connection:
        rows = connection.execute(
            select(col(ReportTerm.report_id), col(ReportTerm.term), col(Report.category))
            .join(Report, col(Report.id) == col(ReportTerm.report_id))
            .where(col(Report.status).in_(OPEN_STATUSES))
        )
        for report_id, term, category in rows:
            terms.setdefault(report_id, set()).add(term)
            categories[report_id] = category
    kept = shares = answered = texts = 0
    for (text, category), got in zip(queries, returned, strict=True):
        wanted = set(similarity.terms(text))
        if not wanted:
            continue
        scored = [
            (report_id, len(wanted & have) / len(wanted | have))
            for report_id, have in terms.items()
        ]
        best = sorted(
            (
                (categories[report_id] != category, -score, -report_id, report_id)
                for report_id, score in scored
                if score >= similarity.SUGGEST_THRESHOLD
            )
        )[:3]
        if not best:
            continue
        texts += 1
        worst = best[-1][:2]  # (another category, -score) of the exhaustive third
        score = dict(scored)
        good = [
            report_id
            for report_id in got
            if (categories[report_id] != category, -score[report_id]) <= worst
        ]
        kept += min(len(good), len(best))
        shares += len(best)
        answered += bool(got)
    if not texts:
        return float("nan"), float("nan")
    return round(kept / shares, 3), round(answered / texts, 3)


def run(
    backend: str, url: str, reports: int, lookups: int, probe_rows: int | None = None
) -> dict[str, Any]:
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
    budget = [] if probe_rows is None else ["--probe-rows", str(probe_rows)]
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.similar",
            "--measure",
            url,
            "--lookups",
            str(lookups),
            *budget,
        ],
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
    parser.add_argument(
        "--probe-rows",
        type=int,
        help="the lookup's budget of index rows (what-if; default: PROBE_ROWS)",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.lookups, args.probe_rows)))
        return
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    for backend in backends:
        with fresh_database(backend) as url:
            emit(run(backend, url, args.reports, args.lookups, args.probe_rows))


if __name__ == "__main__":
    main()
