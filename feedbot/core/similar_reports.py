"""Similar reports: the receipt's suggestions, "solved before", and incident bursts.

A report's search terms are stored in `report_term` (`feedbot.core.similarity` makes them).
Candidates are found with one indexed query over the text's *rarest* terms: words that a
large share of all reports contain ("shop", "Kunde", "ticket") match thousands of rows and
say little, so the candidate query takes terms rarest first only while the rows they match
stay within a budget (`PROBE_ROWS`). Its cost then follows the reports that share
distinctive words instead of the table size. Every term still counts in the exact score of
the candidates found.

How common each term is comes from `TermFrequencies`: counted in SQL for each lookup, except
large counts, which are kept for a few minutes per process. The counts only choose which
terms look for candidates; a large count a few minutes old changes nothing that matters.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from feedbot.core import similarity
from feedbot.core.reports import OPEN_STATUSES
from feedbot.models import Report, ReportStatus, ReportTerm

MIN_PROBE_TERMS = 3
"""Terms that look for candidates however common they are (a text of common words only)."""
PROBE_ROWS = 4000
"""About the most `report_term` rows the candidate query reads: a text's terms look for
candidates rarest first, as long as the reports they are in add up to no more than this."""
CACHED_FROM = 200
"""Counts below this are counted afresh for every lookup (cheap on the index, and a word new
today must be found by the next report at once); larger ones are kept a while."""
FREQUENCIES_TTL = 300.0
"""Seconds a large count is kept before it is counted again."""
_LAST_COUNTS = "feedbot_last_term_counts"
"""`Session.info` key of the counts of the session's last lookup, with what they were for."""
FREQUENCIES_KEPT = 20_000
"""Terms whose counts are kept per database, at most (the longest unrefreshed go first)."""


@dataclass(frozen=True)
class Match:
    report: Report
    score: float


class TermFrequencies:
    """How many reports contain each term, per database: counted in SQL for each lookup,
    except counts of `CACHED_FROM` and more, which are kept for `FREQUENCIES_TTL` seconds."""

    def __init__(self, ttl: float = FREQUENCIES_TTL, kept: int = FREQUENCIES_KEPT) -> None:
        self.ttl = ttl
        self.kept = kept
        self._lock = threading.Lock()
        self._counts: weakref.WeakKeyDictionary[Engine, dict[str, tuple[int, float]]] = (
            weakref.WeakKeyDictionary()
        )

    def counts(
        self, session: Session, terms: Collection[str], *, exclude_id: int | None = None
    ) -> dict[str, int]:
        """How many reports contain each of `terms`, not counting `exclude_id` (the report
        whose text is being looked up, already indexed). A count kept from earlier may be
        off by that one report, which does not matter at `CACHED_FROM`.

        Filing looks a report's text up twice in one transaction (incident grouping, then
        the receipt's suggestions): the second lookup reuses the first one's counts."""
        transaction = session.get_transaction()
        asked = (frozenset(terms), exclude_id)
        last = session.info.get(_LAST_COUNTS)
        if transaction is not None and last is not None and last[:2] == (transaction, asked):
            return dict(last[2])
        found = self._counts_for(session, terms, exclude_id=exclude_id)
        session.info[_LAST_COUNTS] = (transaction, asked, found)
        return dict(found)

    def _counts_for(
        self, session: Session, terms: Collection[str], *, exclude_id: int | None
    ) -> dict[str, int]:
        bind = session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        now = time.monotonic()
        with self._lock:
            known = self._counts.setdefault(engine, {})
            found = {
                term: entry[0]
                for term in terms
                if (entry := known.get(term)) is not None and now - entry[1] < self.ttl
            }
        missing = [term for term in terms if term not in found]
        if not missing:
            return found
        query = (
            select(ReportTerm.term, func.count())
            .where(col(ReportTerm.term).in_(missing))
            .group_by(col(ReportTerm.term))
        )
        if exclude_id is not None:
            query = query.where(col(ReportTerm.report_id) != exclude_id)
        counted = dict.fromkeys(missing, 0) | dict(session.exec(query).all())
        with self._lock:
            known = self._counts.setdefault(engine, {})
            for term, count in counted.items():
                if count >= CACHED_FROM:
                    known.pop(term, None)  # re-inserted last: the oldest go first
                    known[term] = (count, now)
            while len(known) > self.kept:
                del known[next(iter(known))]
        return found | counted


FREQUENCIES = TermFrequencies()


def probe_terms(frequencies: dict[str, int]) -> list[str]:
    """The terms that look for candidates: rarest first, as long as the reports they are in
    add up to at most `PROBE_ROWS` (but at least `MIN_PROBE_TERMS`). A term no other report
    has finds nothing and is left out."""
    chosen: list[str] = []
    rows = 0
    for term in sorted(frequencies, key=lambda term: (frequencies[term], term)):
        count = frequencies[term]
        if count == 0:
            continue
        if len(chosen) >= MIN_PROBE_TERMS and rows + count > PROBE_ROWS:
            break
        chosen.append(term)
        rows += count
    return chosen


@dataclass(frozen=True)
class Alike:
    """A similar report, by what grouping needs of it (no whole row: a burst finds dozens)."""

    report_id: int
    score: float
    category: str | None
    incident_id: int | None
    leadership_channel: str | None


def alike_reports(
    session: Session,
    *,
    text: str,
    category: str | None,
    exclude_id: int | None = None,
    statuses: tuple[ReportStatus, ...] = OPEN_STATUSES,
    limit: int = 3,
    threshold: float = similarity.SUGGEST_THRESHOLD,
    candidates: int = 30,
    created_since: datetime | None = None,
    frequencies: TermFrequencies = FREQUENCIES,
) -> list[Alike]:
    """Reports in `statuses` whose text is like `text` (Jaccard index of their terms at
    least `threshold`): same category first, then by score, then newest.

    One query: the rarest shared terms per report pick `candidates` (a subquery), which are
    scored exactly over all their terms, with what ranking and grouping need.
    """
    wanted = set(similarity.terms(text))
    if not wanted:
        return []
    probe = probe_terms(frequencies.counts(session, wanted, exclude_id=exclude_id))
    if not probe:
        return []
    shared = func.count().label("shared")
    candidate_ids = (
        select(ReportTerm.report_id)
        .join(Report, col(Report.id) == col(ReportTerm.report_id))
        .where(
            col(ReportTerm.term).in_(probe),
            col(Report.status).in_(statuses),
        )
        .group_by(col(ReportTerm.report_id))
        .order_by(shared.desc(), col(ReportTerm.report_id).desc())
        .limit(candidates)
    )
    if exclude_id is not None:
        candidate_ids = candidate_ids.where(col(ReportTerm.report_id) != exclude_id)
    if created_since is not None:
        candidate_ids = candidate_ids.where(col(Report.created_at) >= created_since)
    in_common = func.sum(case((col(ReportTerm.term).in_(wanted), 1), else_=0))
    rows = session.execute(  # six columns: more than sqlmodel's `select` types
        sa_select(
            col(ReportTerm.report_id),
            func.count(),
            in_common,
            col(Report.category),
            col(Report.incident_id),
            col(Report.leadership_channel),
        )
        .join(Report, col(Report.id) == col(ReportTerm.report_id))
        .where(col(ReportTerm.report_id).in_(candidate_ids.scalar_subquery()))
        .group_by(
            col(ReportTerm.report_id),
            col(Report.category),
            col(Report.incident_id),
            col(Report.leadership_channel),
        )
    ).all()
    found = [
        Alike(report_id, common / (len(wanted) + size - common), kind, incident, channel)
        for report_id, size, common, kind, incident, channel in rows
        if common / (len(wanted) + size - common) >= threshold
    ]
    found.sort(key=lambda a: (a.category != category, -a.score, -a.report_id))
    return found[:limit]


def similar_reports(
    session: Session,
    *,
    text: str,
    category: str | None,
    exclude_id: int | None = None,
    statuses: tuple[ReportStatus, ...] = OPEN_STATUSES,
    limit: int = 3,
    threshold: float = similarity.SUGGEST_THRESHOLD,
    candidates: int = 30,
    created_since: datetime | None = None,
    frequencies: TermFrequencies = FREQUENCIES,
) -> list[Match]:
    """`alike_reports`, with the reports themselves (only those kept are loaded)."""
    found = alike_reports(
        session,
        text=text,
        category=category,
        exclude_id=exclude_id,
        statuses=statuses,
        limit=limit,
        threshold=threshold,
        candidates=candidates,
        created_since=created_since,
        frequencies=frequencies,
    )
    if not found:
        return []
    loaded = {
        report.id: report
        for report in session.exec(
            select(Report).where(col(Report.id).in_([a.report_id for a in found]))
        ).all()
    }
    return [Match(loaded[a.report_id], a.score) for a in found if a.report_id in loaded]
