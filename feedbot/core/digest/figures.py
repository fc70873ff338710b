"""Weekly digests: which week, when it is due, what it says, and that it goes out once.

Periods are ISO weeks (Monday 00:00 to the next Monday 00:00) in the digest's timezone, so a
week that contains a daylight-saving change is 167 or 169 hours long and a report filed on
Sunday at 23:30 local time still belongs to that Sunday's week. All counting happens in SQL
(GROUP BY over indexed columns); Python only sees aggregates, bounded lists, and one small
row per report of the week for the recurring themes.

Definitions a reader of the numbers must know:
- Reports merged as duplicates are not counted anywhere: they live on as *me too* on the
  report they were merged into.
- *new* = filed in the week; *resolved* = resolved in the week; *still open* = filed before
  the week ended and not resolved by then (so last week's value follows exactly from this
  week's: open(start) = open(end) - new + resolved).
- Lists of what needs leaders (urgent, unacknowledged, overdue follow-ups) show the state at
  the time the digest is built, which is what a reader can still act on.
- Response times count the acknowledgements and resolutions that happened in the week.
- Incident groups: *new*, *resolved*, categories, locations, themes and the trend count
  reports, every report filed, grouped or not (200 reports of one outage are 200 new
  reports). *Still open*, the urgent, unacknowledged and overdue lists and the response
  times count cases: a report outside any group, or a group once, shown with its number of
  reports; the reports in a group are not counted there on their own, whatever their own
  status. A group is overdue once it missed its response target unacknowledged (its first
  reminder went out); its response times run from when it formed. Because *still open*
  counts cases and *new* counts reports, last week's *still open* is counted directly at
  the start of the week (for weeks without groups it equals open(end) - new + resolved).
  See `feedbot.core.digest.incidents`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    case,
    func,
    text,
)
from sqlmodel import Session, col, select

from feedbot.core.attachments import SHOWN_STATES
from feedbot.core.digest.elapsed import percentile, seconds_between
from feedbot.core.digest.incidents import (
    UNGROUPED,
    group_list,
    group_seconds,
    merged,
    open_groups_at,
    overdue_group,
)
from feedbot.core.digest.lines import report_list
from feedbot.core.digest.periods import COUNTED, OPEN, shift, week_bounds
from feedbot.core.digest.results import Count, Digest, Durations, Trend
from feedbot.core.digest.routes import route_lines
from feedbot.core.digest.scope import groups_in_channel, in_channel
from feedbot.core.digest.themes import recurring_themes
from feedbot.models import (
    Attachment,
    IncidentGroup,
    Report,
    ReportStatus,
    Urgency,
)

LIST_LIMIT = 10
TREND_WEEKS = 8


def build_digest(
    session: Session,
    *,
    period: str,
    zone: ZoneInfo,
    now: datetime,
    list_limit: int = LIST_LIMIT,
    channel: str | None = None,
    routes: Sequence[str] = (),
) -> Digest:
    """Everything a leadership digest says about `period`, computed in a handful of queries.

    With `channel`, only the reports (and incident groups) routed to that leadership channel
    count (a route's own digest); without, the whole company's, plus one line per channel in
    `routes`.

    On PostgreSQL, JIT compilation is turned off for the rest of the caller's transaction:
    these queries take well under a second, and compiling them cost more than it saved."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))
    scope = in_channel(channel)
    group_scope = groups_in_channel(channel)
    start, end = week_bounds(period, zone)
    previous_start = week_bounds(shift(period, -1), zone)[0]
    trend = _trend(session, period, zone, scope)
    categories = _counts_from_trend(trend)
    new = Count(None, sum(c.count for c in categories), sum(c.previous for c in categories))
    resolved = _resolved_counts(session, start, end, previous_start, scope)
    still_open = Count(
        None,
        still_open_at(session, end, scope, group_scope),
        still_open_at(session, start, scope, group_scope),
    )
    themes, themes_total = recurring_themes(session, start, end, new.count, scope)
    return Digest(
        period=period,
        start=start,
        end=end,
        built_at=now,
        new=new,
        resolved=resolved,
        still_open=still_open,
        categories=categories,
        locations=_location_counts(session, start, end, previous_start, scope),
        themes=themes,
        themes_total=themes_total,
        urgent=merged(
            report_list(
                session,
                [
                    col(Report.status).in_(OPEN),
                    col(Report.urgency).in_([Urgency.CRITICAL, Urgency.HIGH]),
                    UNGROUPED,
                    *scope,
                ],
                [
                    case((col(Report.urgency) == Urgency.CRITICAL, 0), else_=1),
                    col(Report.created_at),
                ],
                list_limit,
            ),
            group_list(
                session,
                [
                    col(IncidentGroup.status).in_(OPEN),
                    col(IncidentGroup.urgency).in_([Urgency.CRITICAL, Urgency.HIGH]),
                    *group_scope,
                ],
                list_limit,
            ),
            lambda line: (line.urgency != Urgency.CRITICAL, line.created_at),
            list_limit,
        ),
        # `open` means never acknowledged: a reopened report goes back to `acknowledged`
        # if it was. So the (status, created_at) index answers this alone, in order.
        unacknowledged=merged(
            report_list(
                session,
                [col(Report.status) == ReportStatus.OPEN, UNGROUPED, *scope],
                [col(Report.created_at)],
                list_limit,
            ),
            group_list(
                session, [col(IncidentGroup.status) == ReportStatus.OPEN, *group_scope], list_limit
            ),
            lambda line: line.created_at,
            list_limit,
        ),
        overdue=merged(
            report_list(
                session,
                [col(Report.status).in_(OPEN), col(Report.follow_up_at) < now, UNGROUPED, *scope],
                [col(Report.follow_up_at)],
                list_limit,
            ),
            group_list(
                session,
                [col(IncidentGroup.status) == ReportStatus.OPEN, overdue_group(), *group_scope],
                list_limit,
            ),
            lambda line: line.follow_up_at or line.created_at,
            list_limit,
        ),
        acknowledge=_durations(session, Report.acknowledged_at, start, end, scope, group_scope),
        resolve=_durations(
            session, Report.resolved_at, start, end, scope, group_scope, resolved_only=True
        ),
        trend=trend,
        channel=channel,
        with_photos=_with_photos(session, start, end, scope),
        routes=route_lines(session, routes, start=start, end=end, now=now),
    )


def _with_photos(session: Session, start: datetime, end: datetime, scope: Sequence[Any]) -> int:
    """How many of the week's reports came with a photo: one count over the week's rows."""
    photo = (
        select(Attachment.report_id)
        .where(
            col(Attachment.mimetype).startswith("image/"),
            col(Attachment.state).in_(SHOWN_STATES),
        )
        .distinct()
    )
    found = session.exec(
        select(func.count())
        .select_from(Report)
        .where(
            col(Report.status).in_(COUNTED),
            col(Report.created_at) >= start,
            col(Report.created_at) < end,
            col(Report.id).in_(photo),
            *scope,
        )
    ).one()
    return int(found)


def _week_buckets(column: Any, bounds: Sequence[datetime]) -> ColumnElement[int]:
    """0 for the first week in `bounds`, 1 for the next, …: bucketing done by the database."""
    return case(
        *((column < bound, index) for index, bound in enumerate(bounds[1:-1])),
        else_=len(bounds) - 2,
    )


def _trend(session: Session, period: str, zone: ZoneInfo, scope: Sequence[Any]) -> Trend:
    periods = [shift(period, offset) for offset in range(1 - TREND_WEEKS, 1)]
    bounds = [week_bounds(p, zone)[0] for p in periods] + [week_bounds(period, zone)[1]]
    bucket = _week_buckets(col(Report.created_at), bounds).label("bucket")
    rows = session.exec(
        select(Report.category, bucket, func.count())
        .where(
            col(Report.status).in_(COUNTED),
            col(Report.created_at) >= bounds[0],
            col(Report.created_at) < bounds[-1],
            *scope,
        )
        .group_by(col(Report.category), bucket)
    ).all()
    series: dict[str, list[int]] = {}
    for category, index, count in rows:
        series.setdefault(category, [0] * TREND_WEEKS)[int(index)] += int(count)
    ordered = dict(sorted(series.items(), key=lambda item: (-sum(item[1]), item[0])))
    return Trend(periods=periods, series=ordered)


def _counts_from_trend(trend: Trend) -> list[Count]:
    counts = [
        Count(name, weeks[-1], weeks[-2])
        for name, weeks in trend.series.items()
        if weeks[-1] or weeks[-2]
    ]
    return sorted(counts, key=lambda c: (-c.count, -c.previous, c.name or ""))


def _location_counts(
    session: Session, start: datetime, end: datetime, previous_start: datetime, scope: Sequence[Any]
) -> list[Count]:
    bucket = _week_buckets(col(Report.created_at), [previous_start, start, end]).label("bucket")
    rows = session.exec(
        select(Report.location, bucket, func.count())
        .where(
            col(Report.status).in_(COUNTED),
            col(Report.created_at) >= previous_start,
            col(Report.created_at) < end,
            *scope,
        )
        .group_by(col(Report.location), bucket)
    ).all()
    weeks: dict[str | None, list[int]] = {}
    for location, index, count in rows:
        weeks.setdefault(location, [0, 0])[int(index)] += int(count)
    counts = [Count(name, now, before) for name, (before, now) in weeks.items()]
    return sorted(counts, key=lambda c: (-c.count, -c.previous, c.name is None, c.name or ""))


def _resolved_counts(
    session: Session, start: datetime, end: datetime, previous_start: datetime, scope: Sequence[Any]
) -> Count:
    bucket = _week_buckets(col(Report.resolved_at), [previous_start, start, end]).label("bucket")
    rows = session.exec(
        select(bucket, func.count())
        .where(
            col(Report.status) == ReportStatus.RESOLVED,
            col(Report.resolved_at) >= previous_start,
            col(Report.resolved_at) < end,
            *scope,
        )
        .group_by(bucket)
    ).all()
    weeks = [0, 0]
    for index, count in rows:
        weeks[int(index)] = int(count)
    return Count(None, weeks[1], weeks[0])


def still_open_at(
    session: Session,
    moment: datetime,
    scope: Sequence[Any] = (),
    group_scope: Sequence[Any] = (),
) -> int:
    """Cases open at `moment`: reports outside any group filed before `moment` and not
    resolved by then, plus incident groups formed before it and not resolved by then (each
    once). Reports come from three small index ranges: open now and filed before, plus
    resolved after `moment`, minus those also filed after it (these ranges only reach back
    to `moment`, never through the whole history)."""
    open_now, resolved_later, filed_later = (
        session.exec(
            select(func.count()).select_from(Report).where(*where, UNGROUPED, *scope)
        ).one()
        for where in (
            (col(Report.status).in_(OPEN), col(Report.created_at) < moment),
            (col(Report.status) == ReportStatus.RESOLVED, col(Report.resolved_at) >= moment),
            (col(Report.status) == ReportStatus.RESOLVED, col(Report.created_at) >= moment),
        )
    )
    groups = open_groups_at(session, moment, group_scope)
    return int(open_now) + int(resolved_later) - int(filed_later) + groups


def _durations(
    session: Session,
    moment: Any,
    start: datetime,
    end: datetime,
    scope: Sequence[Any],
    group_scope: Sequence[Any],
    *,
    resolved_only: bool = False,
) -> Durations:
    """Median and 90th percentile of `moment - created_at` for the events in the week, of
    reports outside groups and of groups (each once, `moment` of the same name).

    One column of floats comes back (tens of thousands at most: cheap to sort here); both
    databases agree on the answer, which `percentile_cont` (PostgreSQL only) would not give.
    """
    elapsed = seconds_between(session, moment, col(Report.created_at))
    where = [
        col(moment) >= start,
        col(moment) < end,
        col(Report.status) != ReportStatus.DUPLICATE,
        UNGROUPED,
        *scope,
    ]
    if resolved_only:
        where.append(col(Report.status) == ReportStatus.RESOLVED)
    # Read as plain rows: through the session each of tens of thousands of floats is an ORM
    # result row, which cost more than the database's work.
    found = list(session.connection().execute(select(elapsed).where(*where)).scalars())
    group_moment = getattr(IncidentGroup, moment.key)
    found += group_seconds(
        session,
        group_moment,
        seconds_between(session, group_moment, col(IncidentGroup.created_at)),
        start,
        end,
        group_scope,
        resolved_only=resolved_only,
    )
    values = sorted(max(v, 0.0) for v in found)
    if not values:
        return Durations(0, None, None)
    return Durations(
        count=len(values),
        median=timedelta(seconds=round(percentile(values, 0.5))),
        p90=timedelta(seconds=round(percentile(values, 0.9))),
    )
