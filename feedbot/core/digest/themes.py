"""Recurring themes of a week: reports that share key terms, clustered in SQL and numpy."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    case,
    func,
)
from sqlmodel import Session, col, select

from feedbot.core.digest.lines import line_query, lines
from feedbot.core.digest.periods import COUNTED
from feedbot.core.digest.results import ReportLine, Theme
from feedbot.models import (
    Attachment,
    Report,
    ReportTerm,
)

THEME_TERMS = 62
"""Terms that can make a theme: a report's key terms become one bit each of a 64-bit
integer (62 bits keeps SUM() in SQL inside a signed bigint)."""
THEME_SAMPLE = 5000
"""Reports of a big week whose terms are counted to pick the candidate terms."""
THEME_THRESHOLD = 0.4
THEME_MIN_SHARED = 2
THEME_ROUNDS = 300
"""Greedy rounds at most; each is one vectorised pass over the week's distinct term sets."""
THEME_LIMIT = 10


def _week_reports(start: datetime, end: datetime, scope: Sequence[Any]) -> list[Any]:
    return [
        col(Report.status).in_(COUNTED),
        col(Report.created_at) >= start,
        col(Report.created_at) < end,
        *scope,
    ]


def recurring_themes(
    session: Session, start: datetime, end: datetime, week_size: int, scope: Sequence[Any] = ()
) -> tuple[list[Theme], int]:
    """Group the week's reports by the terms they share, across categories, largest first.

    Work is bounded whatever the week holds. Only the week's `THEME_TERMS` most frequent
    terms can make a theme; in a big week they are counted on an even sample of at most
    `THEME_SAMPLE` reports (the most frequent terms of 50,000 reports are those of any
    5,000 of them). Each report becomes a 62-bit mask of those terms, summed in SQL, so
    Python receives one small row per report. Reports join a theme when their mask is like
    the theme's leader mask (Jaccard >= 0.4, and at least two shared terms, so one common
    word like "customer" makes no theme); leaders are the most frequent masks, and each
    round is one numpy pass over the distinct masks.
    """
    week = select(Report.id).where(*_week_reports(start, end, scope))
    every = -(-week_size // THEME_SAMPLE)
    sample = week.where(col(Report.id) % every == 0) if every > 1 else week
    frequent = session.exec(
        select(ReportTerm.term, func.count().label("n"))
        .where(col(ReportTerm.report_id).in_(sample))
        .group_by(col(ReportTerm.term))
        .having(func.count() >= 2)
        .order_by(func.count().desc(), _bytewise(session, col(ReportTerm.term)))
        .limit(THEME_TERMS)
    ).all()
    if len(frequent) < THEME_MIN_SHARED:
        return [], 0
    bits = {term: 1 << index for index, (term, _) in enumerate(frequent)}
    rows = session.connection().execute(_masks_query(session, start, end, bits, scope)).all()
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    masks = np.fromiter((int(row[1]) for row in rows), dtype=np.uint64, count=len(rows))
    found = sorted(_cluster(masks), key=lambda members: (-len(members), int(ids[members].min())))
    if not found:
        return [], 0
    details = {rid: (me_too, location) for rid, _, me_too, location in rows}
    with_photo = _with_photo(session, start, end, scope)
    themes = [
        _theme(session, [int(i) for i in ids[members]], details, masks[members], with_photo)
        for members in found[:THEME_LIMIT]
    ]
    return themes, len(found)


def _masks_query(
    session: Session, start: datetime, end: datetime, bits: dict[str, int], scope: Sequence[Any]
) -> Any:
    """(report id, term mask, me-too count, location) for every report of the week.

    Each database gets the shape its planner runs well at 50,000 reports a week: SQLite
    sums the masks over `report_term` for an `IN` list of the week's ids, then looks up the
    reports' columns; PostgreSQL would scan all of `report` for that form, and instead
    joins from the week's range of `report` (SQLite would scan all of `report` for that)."""
    mask = func.sum(_term_bit(session, bits)).label("mask")
    if session.get_bind().dialect.name != "sqlite":
        return (
            select(Report.id, mask, Report.me_too_count, Report.location)
            .join(ReportTerm, col(ReportTerm.report_id) == col(Report.id))
            .where(*_week_reports(start, end, scope))
            .group_by(col(Report.id))
        )
    summed = (
        select(ReportTerm.report_id, mask)
        .where(
            col(ReportTerm.report_id).in_(
                select(Report.id).where(*_week_reports(start, end, scope))
            )
        )
        .group_by(col(ReportTerm.report_id))
        .subquery()
    )
    return select(summed.c.report_id, summed.c.mask, Report.me_too_count, Report.location).join(
        Report, col(Report.id) == summed.c.report_id
    )


def _bytewise(session: Session, column: Any) -> Any:
    """`column` compared byte by byte (Python's string order) on either database, so both
    pick the same terms and build the same comparison tree."""
    return column if session.get_bind().dialect.name == "sqlite" else column.collate("C")


def _term_bit(session: Session, bits: dict[str, int]) -> ColumnElement[int]:
    """The bit of `report_term.term` in `bits` (0 if absent), found by a balanced tree of
    comparisons: about 8 per row for 62 terms, where a flat CASE makes up to 62.

    The tree is ordered by Python's string order, which is the byte order of UTF-8: SQLite
    compares text that way (BINARY), and PostgreSQL does under COLLATE "C"."""
    term = col(ReportTerm.term)
    ordered = sorted(bits)
    compared = _bytewise(session, term)

    def node(low: int, high: int) -> ColumnElement[int]:
        if high - low <= 4:
            return case({name: bits[name] for name in ordered[low:high]}, value=term, else_=0)
        middle = (low + high) // 2
        return case((compared < ordered[middle], node(low, middle)), else_=node(middle, high))

    return node(0, len(ordered))


def _cluster(masks: np.ndarray[Any, np.dtype[np.uint64]]) -> list[np.ndarray[Any, Any]]:
    """Greedy leader clustering of report masks; returns the row indices of each group of two
    or more reports, in no particular order."""
    distinct, inverse, counts = np.unique(masks, return_inverse=True, return_counts=True)
    sizes = np.bitwise_count(distinct).astype(np.int64)
    group = np.full(len(distinct), -1, dtype=np.int64)
    # Leaders: most repeated term sets first, then the most specific.
    order = np.lexsort((-sizes, -counts))
    found = 0
    for rounds, leader in enumerate(order):
        if rounds >= THEME_ROUNDS:
            break
        if group[leader] != -1 or sizes[leader] < THEME_MIN_SHARED:
            continue
        shared = np.bitwise_count(distinct & distinct[leader]).astype(np.int64)
        union = np.bitwise_count(distinct | distinct[leader]).astype(np.int64)
        joins = (group == -1) & (shared >= THEME_MIN_SHARED) & (shared >= THEME_THRESHOLD * union)
        if counts[joins].sum() < 2:
            continue
        group[joins] = found
        found += 1
    per_report = group[inverse.reshape(-1)]
    return [np.flatnonzero(per_report == index) for index in range(found)]


def _theme(
    session: Session,
    member_ids: list[int],
    details: dict[int, tuple[int, str | None]],
    member_masks: np.ndarray[Any, Any],
    with_photo: frozenset[int],
) -> Theme:
    """Sizes, me-too total and places of one theme; its example is the report whose terms are
    the theme's most common term set (the most-supported one if several)."""
    values, counts = np.unique(member_masks, return_counts=True)
    typical = values[int(np.argmax(counts))]
    candidates = [rid for rid, m in zip(member_ids, member_masks, strict=True) if m == typical]
    example_id = max(candidates, key=lambda rid: (details[rid][0], -rid))
    places: dict[str, int] = {}
    for rid in member_ids:
        location = details[rid][1]
        if location:
            places[location] = places.get(location, 0) + 1
    ranked = sorted(places, key=lambda name: (-places[name], name))
    example = lines(session, line_query(col(Report.id) == example_id))[0]
    return Theme(
        reports=len(member_ids),
        me_too=sum(details[rid][0] for rid in member_ids),
        locations=ranked[:3],
        more_locations=max(len(ranked) - 3, 0),
        example=example,
        photo=_photo_example(session, member_ids, example, with_photo),
    )


def _with_photo(
    session: Session, start: datetime, end: datetime, scope: Sequence[Any]
) -> frozenset[int]:
    """The week's reports whose card shows a photo (its copy is in the card's thread).

    Asked once for all themes: asked per theme, for its members by id, a big week's themes
    sent tens of thousands of ids to the database, which cost more than the rest of the
    themes together."""
    found = session.connection().execute(
        select(Attachment.report_id)
        .where(
            col(Attachment.report_id).in_(
                select(Report.id).where(*_week_reports(start, end, scope))
            ),
            col(Attachment.mimetype).startswith("image/"),
            col(Attachment.copy_file_id).is_not(None),
        )
        .distinct()
    )
    return frozenset(int(report_id) for (report_id,) in found)


def _photo_example(
    session: Session, member_ids: list[int], example: ReportLine, with_photo: frozenset[int]
) -> ReportLine | None:
    """A report of the theme whose card shows a photo: the example if it has one, else the
    first such report; None when no report of the theme came with a photo."""
    if example.id in with_photo:
        return example
    shown = with_photo.intersection(member_ids)
    if not shown:
        return None
    return lines(session, line_query(col(Report.id) == min(shown)))[0]
