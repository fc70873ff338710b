"""Similar reports: the receipt's suggestions, "solved before", and incident bursts.

A report's search terms are stored in `report_term` (`feedbot.core.similarity` makes them).
Candidates are found with one indexed query over the text's *rarest* terms only: words that
a large share of all reports contain ("shop", "Kunde", "ticket") match thousands of rows and
say little, so leaving them out of the candidate query keeps its cost with the few reports
that share distinctive words instead of growing with the table. Every term still counts in
the exact score of the candidates found.

How common each term is comes from `TermFrequencies`: counted in SQL when first needed and
kept for a few minutes per process. The counts only choose which terms look for candidates;
a count a few minutes old changes nothing that matters.
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

PROBE_TERMS = 8
"""Terms of a text that look for candidates, at most: its rarest."""
MIN_PROBE_TERMS = 3
"""Terms that look for candidates however common they are (a text of common words only)."""
COMMON_SHARE = 0.05
COMMON_FLOOR = 50
"""A term in more than `COMMON_SHARE` of all reports, and in more than `COMMON_FLOOR` of
them, is common: it counts in the score but does not look for candidates."""
FREQUENCIES_TTL = 300.0
"""Seconds a term's count is kept before it is counted again."""
FREQUENCIES_KEPT = 20_000
"""Terms whose counts are kept per database, at most (then the oldest are forgotten)."""


@dataclass(frozen=True)
class Match:
    report: Report
    score: float


class TermFrequencies:
    """How many reports contain each term, and how many reports there are, per database,
    counted when first needed and kept for `FREQUENCIES_TTL` seconds."""

    def __init__(self, ttl: float = FREQUENCIES_TTL, kept: int = FREQUENCIES_KEPT) -> None:
        self.ttl = ttl
        self.kept = kept
        self._lock = threading.Lock()
        self._counts: weakref.WeakKeyDictionary[Engine, dict[str, tuple[int, float]]] = (
            weakref.WeakKeyDictionary()
        )

    def counts(self, session: Session, terms: Collection[str]) -> tuple[dict[str, int], int]:
        """(reports per term, reports in all) for `terms`."""
        bind = session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        now = time.monotonic()
        with self._lock:
            known = self._counts.setdefault(engine, {})
            found = {
                term: entry[0]
                for term in (*terms, _TOTAL)
                if (entry := known.get(term)) is not None and now - entry[1] < self.ttl
            }
        counted: dict[str, int] = {}
        missing = [term for term in terms if term not in found]
        if missing:
            counted = dict.fromkeys(missing, 0) | dict(
                session.exec(
                    select(ReportTerm.term, func.count())
                    .where(col(ReportTerm.term).in_(missing))
                    .group_by(col(ReportTerm.term))
                ).all()
            )
        if _TOTAL not in found:  # the highest id stands for the count: close, and cheap
            counted[_TOTAL] = session.exec(select(func.max(Report.id))).one() or 0
        with self._lock:
            known = self._counts.setdefault(engine, {})
            known.update((term, (count, now)) for term, count in counted.items())
            while len(known) > self.kept:
                del known[next(iter(known))]
        found |= counted
        total = found.pop(_TOTAL)
        return found, total


_TOTAL = ""
"""Where the number of reports is kept among the terms (no term is empty)."""
FREQUENCIES = TermFrequencies()


def probe_terms(frequencies: dict[str, int], total: int) -> list[str]:
    """The terms that look for candidates: the rarest `PROBE_TERMS`, without common ones
    unless fewer than `MIN_PROBE_TERMS` would remain."""
    ranked = sorted(frequencies, key=lambda term: (frequencies[term], term))
    common = max(COMMON_FLOOR, COMMON_SHARE * total)
    rare = [term for term in ranked if frequencies[term] <= common]
    chosen = rare if len(rare) >= MIN_PROBE_TERMS else ranked[:MIN_PROBE_TERMS]
    return chosen[:PROBE_TERMS]


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
    counts, total = frequencies.counts(session, wanted)
    shared = func.count().label("shared")
    candidate_ids = (
        select(ReportTerm.report_id)
        .join(Report, col(Report.id) == col(ReportTerm.report_id))
        .where(
            col(ReportTerm.term).in_(probe_terms(counts, total)),
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
