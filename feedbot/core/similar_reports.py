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

Filing looks a new report's text up twice in one transaction: for incident grouping (open
reports of the last minutes) and for the receipt's suggestions (open and resolved reports of
any age). The first lookup fetches the second one's candidates too (`alongside`), in the same
statement, and the second is answered from what the first found.

The statements are built once per shape, their values bound when they run: building a query
of this size costs SQLAlchemy about as much time as SQLite takes to run it.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, case, func, literal_column, true, union_all
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from feedbot.core import similarity
from feedbot.core.reports import OPEN_STATUSES, get_reports
from feedbot.db import unindexed
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
_LAST_LOOKUP = "feedbot_last_similar_lookup"
"""`Session.info` key of the session's last lookup: what it was for, and what it found."""
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
        transaction = _innermost(session)
        asked = (frozenset(terms), exclude_id)
        last = session.info.get(_LAST_COUNTS)
        if transaction is not None and last is not None and last[:2] == (transaction, asked):
            return dict(last[2])
        found = self._counts_for(session, terms, exclude_id=exclude_id)
        # Taken again: a session's first statement begins its transaction.
        session.info[_LAST_COUNTS] = (_innermost(session), asked, found)
        return dict(found)

    def indexed(self, session: Session, terms: Collection[str]) -> None:
        """A report with `terms` was indexed in `session`'s database: the counts kept of
        them count it. In an outage a common word is counted in thousands within minutes,
        and counts kept from before said far less than the index held: the lookups chose
        terms by them and read half as many rows again as their budget (`PROBE_ROWS`), more
        the longer the burst. Reports other processes index are counted when the count is
        taken again; one whose transaction rolls back leaves a count one too high."""
        engine = _engine_of(session)
        with self._lock:
            known = self._counts.get(engine)
            if not known:
                return
            for term in terms:
                entry = known.get(term)
                if entry is not None:
                    known[term] = (entry[0] + 1, entry[1])

    def _counts_for(
        self, session: Session, terms: Collection[str], *, exclude_id: int | None
    ) -> dict[str, int]:
        engine = _engine_of(session)
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
        rows = _core_rows(
            session,
            _counts_statement(excluding=exclude_id is not None),
            {"terms": missing, "exclude_id": exclude_id},
        )
        counted = dict.fromkeys(missing, 0) | {str(term): int(count) for term, count in rows}
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


def _engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


@functools.cache
def _counts_statement(*, excluding: bool) -> Any:
    query = (
        sa_select(col(ReportTerm.term), func.count())
        .where(col(ReportTerm.term).in_(bindparam("terms", expanding=True)))
        .group_by(col(ReportTerm.term))
    )
    if excluding:
        query = query.where(col(ReportTerm.report_id) != bindparam("exclude_id"))
    return query


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


class Alike(NamedTuple):
    """A similar report, by what grouping needs of it (no whole row: a burst finds dozens).
    A named tuple: a lookup makes one per candidate, a hundred or more, and a frozen
    dataclass took three times as long to make."""

    report_id: int
    score: float
    category: str | None
    incident_id: int | None
    leadership_channel: str | None
    status: ReportStatus


@dataclass(frozen=True)
class Pool:
    """Where a lookup finds its candidates: the `candidates` reports in `statuses` (created
    since `created_since`, if given) that share the most of a text's rarest terms."""

    statuses: tuple[ReportStatus, ...] = OPEN_STATUSES
    candidates: int = 30
    created_since: datetime | None = None


SUGGESTIONS = Pool(statuses=(*OPEN_STATUSES, ReportStatus.RESOLVED))
"""The receipt's suggestions: open reports to say *me too* on, and resolved ones that were
solved before."""


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
    alongside: Sequence[Pool] = (),
) -> list[Alike]:
    """Reports in `statuses` whose text is like `text` (Jaccard index of their terms at
    least `threshold`): same category first, then by score, then newest.

    One query: the rarest shared terms per report pick `candidates` (a subquery), which are
    scored exactly over all their terms, with what ranking and grouping need. `alongside`
    names the pools of lookups of the same text still to come in this transaction: their
    candidates are scored in the same statement, and those lookups answered from it.
    """
    wanted = frozenset(similarity.terms(text))
    if not wanted:
        return []
    pool = Pool(statuses, candidates, created_since)
    pools, scored = _scored(session, wanted, exclude_id, [pool, *alongside], frequencies)
    # The pool's own candidates, as it would have found them alone: the others' only add.
    bit = 1 << pools.index(pool)
    own = sorted(
        (row for row in scored if row[2] & bit), key=lambda row: (-row[1], -row[0].report_id)
    )[: pool.candidates]
    found = [alike for alike, _, _ in own if alike.score >= threshold]
    found.sort(key=lambda a: (a.category != category, -a.score, -a.report_id))
    return found[:limit]


def forget_lookups(session: Session) -> None:
    """Look up afresh from now on in this transaction: after waiting for a lock, others'
    reports committed meanwhile must be seen (and counted: a term only they share is rare)."""
    session.info.pop(_LAST_LOOKUP, None)
    session.info.pop(_LAST_COUNTS, None)


def last_lookup(session: Session) -> object:
    """What this session remembers of its last lookup, to be told apart from a later one
    (`stored_after_lookup`)."""
    return session.info.get(_LAST_LOOKUP)


def stored_after_lookup(session: Session, report_id: int, *, earlier: object) -> None:
    """Report `report_id` was stored right after this transaction's last lookup, which so
    could not find it nor count its terms: later lookups of the same text that exclude it
    (the receipt's suggestions) are answered from that one. Unless it is still `earlier`'s
    (`last_lookup` before the report was placed): made before something else was stored."""
    last = session.info.get(_LAST_LOOKUP)
    if last is None or last is earlier or last[2] is not None:
        return
    session.info[_LAST_LOOKUP] = (*last[:2], report_id, *last[3:])
    counts = session.info.get(_LAST_COUNTS)
    if counts is not None and counts[1][1] is None:
        session.info[_LAST_COUNTS] = (counts[0], (counts[1][0], report_id), counts[2])


def _core_rows(session: Session, statement: Any, parameters: dict[str, Any]) -> Sequence[Any]:
    """The statement's rows as plain rows: through the session, a statement of mapped columns
    is read row by row as ORM results, about 0.3 ms more per lookup of a hundred rows. What
    the session holds unwritten is written first, as it would be then."""
    session.flush()
    return session.connection().execute(statement, parameters).all()


@contextmanager
def _planned_for_its_values(session: Session) -> Iterator[None]:
    """PostgreSQL plans what runs inside for the values it runs with, every time. psycopg
    prepares a statement run five times on a connection, and PostgreSQL may then plan it
    once for any values: a lookup planned so while the last minutes held a few reports
    would read an outage's thousands the same way. The statements before and after keep
    the server's setting."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    session.flush()  # what fails here fails before the setting is made
    connection = session.connection()
    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    yield
    connection.exec_driver_sql("SET LOCAL plan_cache_mode TO DEFAULT")


def _innermost(session: Session) -> Any:
    """The transaction a remembered answer belongs to: the innermost, so that one rolled
    back to its savepoint (its reports gone, their ids free again) is not answered from."""
    return session.get_nested_transaction() or session.get_transaction()


def _scored(
    session: Session,
    wanted: frozenset[str],
    exclude_id: int | None,
    pools: list[Pool],
    frequencies: TermFrequencies,
) -> tuple[tuple[Pool, ...], list[tuple[Alike, int, int]]]:
    """Every candidate of `pools`, scored, with how many of the rarest terms it shares (what
    ranks candidates) and the pools whose statuses and window it is in (bit `i` for the
    `i`th of the pools returned); or what an earlier lookup of this transaction found when
    it looked in the first of them already. A pool's candidates are the first of its
    reports by shared rarest terms, then newest: `alike_reports` picks them out again from
    all pools' ones."""
    transaction = _innermost(session)
    last = session.info.get(_LAST_LOOKUP)
    if (
        transaction is not None
        and last is not None
        and last[:3] == (transaction, wanted, exclude_id)
        and pools[0] in last[3]
    ):
        return last[3], list(last[4])
    pools = list(dict.fromkeys(pools))
    probe = probe_terms(frequencies.counts(session, wanted, exclude_id=exclude_id))
    found: list[tuple[Alike, int, int]] = []
    if probe:
        parameters: dict[str, Any] = {
            "probe": probe,
            "wanted": list(wanted),
            "exclude_id": exclude_id,
        }
        for index, pool in enumerate(pools):
            parameters[f"statuses{index}"] = list(pool.statuses)
            parameters[f"left_out{index}"] = sorted(set(ReportStatus) - set(pool.statuses))
            parameters[f"candidates{index}"] = pool.candidates
            parameters[f"since{index}"] = pool.created_since
        statement = _lookup_statement(
            tuple(_shape(pool) for pool in pools),
            excluding=exclude_id is not None,
            sqlite=session.get_bind().dialect.name == "sqlite",
        )
        with _planned_for_its_values(session):
            rows = _core_rows(session, statement, parameters)
        for row in rows:
            report_id, size, common, shared, kind, incident, channel, status, in_pools = row
            score = common / (len(wanted) + size - common)
            alike = Alike(report_id, score, kind, incident, channel, status)
            found.append((alike, int(shared), int(in_pools)))
    # Taken again: a session's first statement begins its transaction.
    transaction = _innermost(session)
    session.info[_LAST_LOOKUP] = (transaction, wanted, exclude_id, tuple(pools), found)
    return tuple(pools), list(found)


_WINDOW = "window"
_RARE_LEFT_OUT = "rare statuses left out"
_COMMON_LEFT_OUT = "common statuses left out"
RARE_STATUSES = frozenset({ReportStatus.DUPLICATE})
"""Statuses few reports have: a pool of any age that leaves out no others reads the status
of fewer of the reports it ranks (see `_lookup_statement`)."""


def _shape(pool: Pool) -> str:
    """How the lookup statement reads `pool`'s candidates."""
    if pool.created_since is not None:
        return _WINDOW
    if set(ReportStatus) - set(pool.statuses) <= RARE_STATUSES:
        return _RARE_LEFT_OUT
    return _COMMON_LEFT_OUT


@functools.cache
def _lookup_statement(shapes: tuple[str, ...], *, excluding: bool, sqlite: bool) -> Any:
    """The lookup over one pool per entry of `shapes` (see `_shape`).

    A windowed pool reads only the index rows of reports from the first one created since
    then on (`report_id` bounds the `(term, report_id)` index, so an old common term costs
    nothing); the least id of the window's reports is exact however ids and creation times
    interleave. Those index rows are counted per report before any report row is joined:
    with the join first, PostgreSQL, whose statistics are older than a burst and so take
    the last minutes for a report or two, went from each report of the window to its
    terms, a third of the lookup's time with 300 reports in the window. Each candidate's
    terms are counted, then what grouping needs of its report is added: on PostgreSQL
    taken along from the pool that found it (joining the report table once more made
    PostgreSQL hash the whole table in every lookup: 6 of 12 ms at 20,000 reports), on
    SQLite read once more by rowid, which costs SQLite less than taking the columns along.
    On PostgreSQL the window's reports are read by id, best ranked first, until the pool is
    full (`_ranked_then_read`), and the lookup is planned for its own values every time
    (`_planned_for_its_values`).

    With a pool of any age alongside (filing's grouping lookup, with the receipt's
    suggestions), the window's reports are picked out of that pool's count of every
    report's shared terms instead (`every_share`, read once): in an outage the window holds
    most of the reports the rare terms are in, and the two pools read the same index rows
    twice, over a quarter of the lookup's work.

    A pool of any age ranks the reports that share its rare terms, then reads their status
    until it has its candidates. If the statuses it leaves out are few (`RARE_STATUSES`: the
    receipt's suggestions leave out only duplicates), it reads the status of only the first
    `candidates` plus as many as there are reports in those statuses: at most that many of
    the first ones can fail the status filter, so the candidates are all among them. That
    saved SQLite reading the status of every one of up to two thousand reports ranked, to
    keep thirty; counting the left-out reports costs a range of the status index, and the
    bound stops saving once they outnumber the reports ranked. A pool that leaves out the
    resolved reports, most of an old table, reads every status as before.

    On SQLite the window's report filters are kept off the report indexes: otherwise SQLite
    starts from every open report of the window and probes each for every term, which in a
    burst (hundreds of reports in the window) costs four times the read of the terms' own
    index rows, and is no cheaper when the window is quiet."""
    probe: Any = bindparam("probe", expanding=True)
    exclude_id: Any = bindparam("exclude_id")
    every_share: Any = None
    if _WINDOW in shapes and any(shape != _WINDOW for shape in shapes):
        every_share = _sharing(probe, exclude_id if excluding else None).cte("every_share")
    per_pool = []
    for index, shape in enumerate(shapes):
        statuses: Any = bindparam(f"statuses{index}", expanding=True)
        if shape == _WINDOW:
            since: Any = bindparam(f"since{index}")
            # `id + 0`, not `id`: for a bare `min(id)` SQLite and PostgreSQL both walk the
            # primary key from the oldest report until one is recent, reading every older
            # report in each lookup (4 ms at 20,000 on PostgreSQL); the sum makes them read
            # the window's entries of the creation time index instead (0.2 ms).
            first_id = (
                sa_select(func.min(col(Report.id) + literal_column("0")))
                .where(col(Report.created_at) >= since)
                .scalar_subquery()
            )
            if every_share is None:
                recent: Any = _sharing(
                    probe,
                    exclude_id if excluding else None,
                    col(ReportTerm.report_id) >= first_id,
                ).subquery()
            else:
                recent = (
                    sa_select(every_share.c.id, every_share.c.shared)
                    .where(every_share.c.id >= first_id)
                    .subquery()
                )
            if sqlite:
                candidates: Any = (
                    sa_select(recent.c.id)
                    .join(Report, col(Report.id) == recent.c.id)
                    .where(
                        unindexed(col(Report.created_at)) >= since,
                        unindexed(col(Report.status)).in_(statuses),
                    )
                    .order_by(recent.c.shared.desc(), recent.c.id.desc())
                )
            else:
                candidates = _ranked_then_read(recent, since, statuses)
        else:
            # Ordered here as well as below: PostgreSQL then joins the ranked reports one by
            # one and stops when the pool is full, instead of hashing the report table; and
            # the bound below keeps the first ones in this order, which must be the pool's.
            if every_share is None:
                sharing: Any = _sharing(probe, exclude_id if excluding else None)
                sharing = sharing.order_by(func.count().desc(), col(ReportTerm.report_id).desc())
            else:
                sharing = sa_select(every_share.c.id, every_share.c.shared).order_by(
                    every_share.c.shared.desc(), every_share.c.id.desc()
                )
            if shape == _RARE_LEFT_OUT:
                left_out = (
                    sa_select(func.count())
                    .select_from(Report)
                    .where(col(Report.status).in_(bindparam(f"left_out{index}", expanding=True)))
                    .scalar_subquery()
                )
                sharing = sharing.limit(bindparam(f"candidates{index}") + left_out)
            sharing = sharing.subquery()
            candidates = (
                sa_select(*_described(sharing.c.id, sqlite))
                .join(Report, col(Report.id) == sharing.c.id)
                .where(col(Report.status).in_(statuses))
                .order_by(sharing.c.shared.desc(), sharing.c.id.desc())
            )
        subquery = candidates.limit(bindparam(f"candidates{index}")).subquery()
        per_pool.append(sa_select(*subquery.c))
    found: Any = per_pool[0] if len(per_pool) == 1 else union_all(*per_pool)
    found = found.subquery() if sqlite else found.cte("found")
    in_common = func.sum(
        case((col(ReportTerm.term).in_(bindparam("wanted", expanding=True)), 1), else_=0)
    )
    shared_rare = func.sum(case((col(ReportTerm.term).in_(probe), 1), else_=0))
    counted = (
        sa_select(
            col(ReportTerm.report_id).label("id"),
            func.count().label("size"),
            in_common.label("common"),
            shared_rare.label("shared"),
        )
        .where(col(ReportTerm.report_id).in_(sa_select(found.c.id)))
        .group_by(col(ReportTerm.report_id))
        .subquery()
    )
    if sqlite:
        return sa_select(
            counted.c.id,
            counted.c.size,
            counted.c.common,
            counted.c.shared,
            *(getattr(Report, name) for name in _RETURNED),
            _in_pools(shapes, col(Report.status), col(Report.created_at)),
        ).join(Report, col(Report.id) == counted.c.id)
    # A report two pools found is there twice, with the same columns: DISTINCT keeps one.
    return (
        sa_select(
            counted.c.id,
            counted.c.size,
            counted.c.common,
            counted.c.shared,
            *(found.c[name] for name in _RETURNED),
            _in_pools(shapes, found.c.status, found.c.created_at),
        )
        .join(found, found.c.id == counted.c.id)
        .distinct()
    )


def _ranked_then_read(recent: Any, since: Any, statuses: Any) -> Any:
    """PostgreSQL's window pool: the reports of `recent` (ids and shared terms), best ranked
    first, each read by its id until the pool is full. Joined as a whole, PostgreSQL hashed
    every report of the window, whose statistics it takes for a few: 1 ms of a 6.5 ms
    lookup with 3,000 reports in the last minutes, more the longer an outage lasts.

    The ranking is a subquery of its own, ordered, so its rows come out in that order; each
    report is read by a subquery of its own (`LATERAL`, `LIMIT 1`), which PostgreSQL cannot
    turn into a join, by its id alone (with the window's conditions in it, PostgreSQL went
    through the creation time index instead, whose statistics say the window is empty).
    So the ranked reports are read one by one, until the pool is full."""
    ranked = (
        sa_select(recent.c.id, recent.c.shared)
        .order_by(recent.c.shared.desc(), recent.c.id.desc())
        .subquery()
    )
    row = (
        sa_select(*(getattr(Report, name) for name in _DESCRIBED))
        .where(col(Report.id) == ranked.c.id)
        .limit(1)
        .lateral()
    )
    return (
        sa_select(ranked.c.id.label("id"), *(row.c[name] for name in _DESCRIBED))
        .select_from(ranked.join(row, true()))
        .where(row.c.created_at >= since, row.c.status.in_(statuses))
        .order_by(ranked.c.shared.desc(), ranked.c.id.desc())
    )


def _sharing(probe: Any, exclude_id: Any, *where: Any) -> Any:
    """How many of the `probe` terms each report shares, read from their index rows alone
    (`where` narrows the rows read), leaving out `exclude_id` if given."""
    query: Any = sa_select(
        col(ReportTerm.report_id).label("id"), func.count().label("shared")
    ).where(col(ReportTerm.term).in_(probe), *where)
    if exclude_id is not None:
        query = query.where(col(ReportTerm.report_id) != exclude_id)
    return query.group_by(col(ReportTerm.report_id))


def _in_pools(shapes: tuple[str, ...], status: Any, created_at: Any) -> Any:
    """Which pools a candidate is in, as bits (`1 << i` for the `i`th pool), worked out in
    SQL: read into Python, a timestamp per row cost more than the rest of the row."""
    bits: Any = literal_column("0")
    for index, shape in enumerate(shapes):
        condition: Any = status.in_(bindparam(f"statuses{index}", expanding=True))
        if shape == _WINDOW:
            condition = condition & (created_at >= bindparam(f"since{index}"))
        bits = bits + case((condition, 1 << index), else_=0)
    return bits


_RETURNED = ("category", "incident_id", "leadership_channel", "status")
"""The report columns a lookup returns with each candidate (see `Alike`)."""
_DESCRIBED = (*_RETURNED, "created_at")
"""The report columns each pool carries on PostgreSQL (see `_lookup_statement`)."""


def _described(report_id: Any, sqlite: bool) -> list[Any]:
    """A candidate's columns as every pool selects them: `report_id` as `id`, then, except
    on SQLite (see `_lookup_statement`), those named in `_DESCRIBED`."""
    if sqlite:
        return [report_id.label("id")]
    return [report_id.label("id"), *(getattr(Report, name) for name in _DESCRIBED)]


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
    loaded = get_reports(session, [a.report_id for a in found])
    return [Match(loaded[a.report_id], a.score) for a in found if a.report_id in loaded]
