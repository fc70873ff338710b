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
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Float,
    String,
    case,
    cast,
    func,
    literal,
    null,
    text,
    true,
    type_coerce,
)
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from feedbot.core.config import WEEKDAYS, RuntimeConfig
from feedbot.core.privacy import FORMULA_START
from feedbot.db import upsert_insert
from feedbot.errors import Conflict, InvalidValue
from feedbot.models import (
    REFERENCE_OFFSET,
    ConfigEntry,
    DigestRun,
    DigestSubscription,
    OutboxMessage,
    Report,
    ReportStatus,
    ReportTerm,
    Urgency,
)

# --------------------------------------------------------------------------- periods

_PERIOD = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)
OPEN = (ReportStatus.OPEN, ReportStatus.ACKNOWLEDGED)
COUNTED = (ReportStatus.OPEN, ReportStatus.ACKNOWLEDGED, ReportStatus.RESOLVED)
"""Every status but `duplicate`, spelt out so the (status, created_at) index serves it."""


def parse_period(raw: str) -> str:
    """`2026-W47` (also `2026w47`) in canonical form, or `InvalidValue`."""
    match = _PERIOD.match(raw)
    if match:
        try:
            return period_of(date.fromisocalendar(int(match[1]), int(match[2]), 1))
        except ValueError:
            pass
    raise InvalidValue(
        f"{raw!r} is not an ISO week like 2026-W47", field="week", code="digest_week"
    )


def period_of(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def monday(period: str) -> date:
    year, week = period.split("-W")
    return date.fromisocalendar(int(year), int(week), 1)


def shift(period: str, weeks: int) -> str:
    return period_of(monday(period) + timedelta(weeks=weeks))


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC moment `day` begins in `zone`. zoneinfo applies the right offset on either side
    of a daylight-saving change; adjacent weeks share this one function, so they never overlap
    or leave a gap."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def week_bounds(period: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the ISO week in `zone`, as UTC datetimes."""
    start = monday(period)
    return local_midnight(start, zone), local_midnight(start + timedelta(days=7), zone)


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class Schedule:
    """A weekly moment (`mon 08:00`) in a timezone: when the previous week's digest is due."""

    weekday: int
    hour: int
    minute: int
    zone: ZoneInfo

    @classmethod
    def parse(cls, raw: str, zone: ZoneInfo) -> Schedule:
        day, _, clock = raw.strip().lower().partition(" ")
        hour, _, minute = clock.partition(":")
        return cls(WEEKDAYS.index(day[:3]), int(hour), int(minute), zone)

    def due_at(self, period: str) -> datetime:
        """When the digest of `period` is due: the schedule's moment in the following week.

        A local time that does not exist (skipped by the spring change) is read with the
        offset before the change, i.e. one hour later on the clock; one that exists twice (the
        autumn change) means its first occurrence. Either way there is exactly one moment.
        """
        day = monday(period) + timedelta(days=7 + self.weekday)
        local = datetime.combine(day, time(self.hour, self.minute), tzinfo=self.zone)
        return local.astimezone(UTC)

    def due_period(self, now: datetime) -> str:
        """The latest week whose digest is due at `now` (sent or not)."""
        this_week = period_of(now.astimezone(self.zone).date())
        last_week = shift(this_week, -1)
        return last_week if self.due_at(last_week) <= now else shift(this_week, -2)

    def __str__(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {self.hour:02d}:{self.minute:02d} {self.zone.key}"


class DigestKind(StrEnum):
    LEADERSHIP = "leadership"
    """The digest for leaders: numbers, themes, what needs them."""
    ALLSTAFF = "allstaff"
    """"You said, we did": what was resolved because someone spoke up."""


@dataclass(frozen=True)
class DigestChannel:
    kind: DigestKind
    channel: str
    schedule: Schedule
    locale: str
    setting: str = "leadership_channel"
    """The runtime setting that made this channel a digest channel."""
    confidential: tuple[str, ...] = ()
    """Categories whose reports an all-staff post never mentions."""


def digest_channels(config: RuntimeConfig) -> list[DigestChannel]:
    """Every channel that gets a weekly post, with its schedule. The one place that knows
    where digests go: several leadership channels will be added here."""
    schedule = Schedule.parse(config.digest_schedule, config.zone)
    targets = []
    if config.leadership_channel:
        targets.append(
            DigestChannel(
                DigestKind.LEADERSHIP, config.leadership_channel, schedule, config.language
            )
        )
    if config.allstaff_channel:
        targets.append(
            DigestChannel(
                DigestKind.ALLSTAFF,
                config.allstaff_channel,
                schedule,
                config.language,
                setting="allstaff_channel",
                confidential=tuple(config.confidential_categories),
            )
        )
    return targets


def configured_since(session: Session, *, target: DigestChannel, now: datetime) -> datetime:
    """Since when `target` gets its digest: first asked, it is when its setting was last
    changed (which is when an admin configured it, even while no bot ran), else `now`; from
    then on it stays put, whatever else changes in that setting."""
    stored = session.get(DigestSubscription, (target.kind.value, target.channel))
    if stored is not None:
        return stored.since
    entry = session.get(ConfigEntry, target.setting)
    since = entry.updated_at if entry is not None else now
    session.execute(
        upsert_insert(session, DigestSubscription)
        .values(kind=target.kind.value, channel=target.channel, since=since)
        .on_conflict_do_nothing(index_elements=["kind", "channel"])
    )
    stored = session.get(DigestSubscription, (target.kind.value, target.channel))
    return stored.since if stored is not None else since


def forget_unsubscribed(session: Session, *, targets: Sequence[DigestChannel]) -> None:
    """Drop the subscriptions of channels no longer configured: if one comes back, its
    digests start again from then."""
    kept = {(target.kind.value, target.channel) for target in targets}
    for row in session.exec(select(DigestSubscription)).all():
        if (row.kind, row.channel) not in kept:
            session.delete(row)


def covers_only_configured_time(period: str, zone: ZoneInfo, since: datetime) -> bool:
    """Whether the week `period` ended after its channel was configured: a digest of a week
    that was over before then would be the first thing leaders read, and about nothing."""
    return week_bounds(period, zone)[1] > since


# --------------------------------------------------------------------------- exactly once


def already_sent(session: Session, *, kind: str, channel: str, period: str) -> bool:
    return (
        session.exec(
            select(DigestRun.id).where(
                DigestRun.kind == kind, DigestRun.channel == channel, DigestRun.period == period
            )
        ).first()
        is not None
    )


def claim_run(
    session: Session,
    *,
    kind: str,
    channel: str,
    period: str,
    now: datetime,
    late: bool = False,
    force: bool = False,
) -> DigestRun:
    """Record that this digest is being sent, or raise `Conflict` if someone already did.

    The caller queues the digest's messages in the same transaction: the unique key on
    (kind, channel, period) then makes the whole send happen once, whichever process or
    replica gets there first (the other's flush raises `IntegrityError`, and its whole
    transaction rolls back). `force` sends again and marks the existing run as forced.
    """
    existing = session.exec(
        select(DigestRun).where(
            DigestRun.kind == kind, DigestRun.channel == channel, DigestRun.period == period
        )
    ).first()
    if existing is not None:
        if not force:
            raise Conflict(
                f"the {kind} digest of {period} was already sent to {channel} "
                f"({existing.created_at:%Y-%m-%d %H:%M} UTC); use --force to send it again",
                code="digest_already_sent",
            )
        existing.forced = True
        existing.created_at = now
        session.add(existing)
        session.flush()
        return existing
    run = DigestRun(kind=kind, channel=channel, period=period, created_at=now, late=late)
    session.add(run)
    session.flush()  # a concurrent sender's row makes this raise IntegrityError
    return run


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ReportLine:
    """What a digest shows of one report, with where its card is (for a link)."""

    id: int
    text: str
    category: str
    location: str | None
    urgency: Urgency
    status: ReportStatus
    created_at: datetime
    me_too_count: int
    follow_up_at: datetime | None = None
    card_channel: str | None = None
    card_ts: str | None = None
    source_link: str | None = None
    """The message the report came from; never for anonymous reports (it names its author)."""

    @property
    def reference(self) -> str:
        return f"FB-{REFERENCE_OFFSET + self.id}"


@dataclass(frozen=True)
class ReportList:
    items: list[ReportLine]
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.items)


@dataclass(frozen=True)
class Count:
    """A count this week and the week before."""

    name: str | None
    count: int
    previous: int

    @property
    def change(self) -> int:
        return self.count - self.previous


@dataclass(frozen=True)
class Theme:
    """Reports of the week about the same thing, whatever their category."""

    reports: int
    me_too: int
    locations: list[str]
    more_locations: int
    example: ReportLine


@dataclass(frozen=True)
class Durations:
    count: int
    median: timedelta | None
    p90: timedelta | None


@dataclass(frozen=True)
class Trend:
    """Reports per week and category, oldest week first."""

    periods: list[str]
    series: dict[str, list[int]]


@dataclass(frozen=True)
class Digest:
    period: str
    start: datetime
    end: datetime
    built_at: datetime
    new: Count
    resolved: Count
    still_open: Count
    categories: list[Count]
    locations: list[Count]
    themes: list[Theme]
    themes_total: int
    urgent: ReportList
    unacknowledged: ReportList
    overdue: ReportList
    acknowledge: Durations
    resolve: Durations
    trend: Trend

    @property
    def empty(self) -> bool:
        return self.new.count == 0


@dataclass(frozen=True)
class Resolution:
    """One problem resolved in the week, for "you said, we did"."""

    id: int
    text: str
    category: str
    note: str
    reporter_id: str | None
    """None when the reporter chose to stay anonymous: they are never named."""
    me_too_count: int

    @property
    def reference(self) -> str:
        return f"FB-{REFERENCE_OFFSET + self.id}"


@dataclass(frozen=True)
class YouSaidWeDid:
    period: str
    start: datetime
    end: datetime
    items: list[Resolution]
    total: int
    still_open: int
    colleagues: int = 0
    """Sum of *me too* over every resolved report of the week (not only those shown)."""


# --------------------------------------------------------------------------- building

LIST_LIMIT = 10
TREND_WEEKS = 8
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


def build_digest(
    session: Session, *, period: str, zone: ZoneInfo, now: datetime, list_limit: int = LIST_LIMIT
) -> Digest:
    """Everything a leadership digest says about `period`, computed in a handful of queries.

    On PostgreSQL, JIT compilation is turned off for the rest of the caller's transaction:
    these queries take well under a second, and compiling them cost more than it saved."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))
    start, end = week_bounds(period, zone)
    trend = _trend(session, period, zone)
    categories = _counts_from_trend(trend)
    new = Count(None, sum(c.count for c in categories), sum(c.previous for c in categories))
    resolved = _resolved_counts(session, start, end, week_bounds(shift(period, -1), zone)[0])
    open_now = _still_open_at(session, end)
    still_open = Count(None, open_now, open_now - new.count + resolved.count)
    themes, themes_total = _themes(session, start, end, new.count)
    return Digest(
        period=period,
        start=start,
        end=end,
        built_at=now,
        new=new,
        resolved=resolved,
        still_open=still_open,
        categories=categories,
        locations=_location_counts(session, start, end, week_bounds(shift(period, -1), zone)[0]),
        themes=themes,
        themes_total=themes_total,
        urgent=_report_list(
            session,
            [
                col(Report.status).in_(OPEN),
                col(Report.urgency).in_([Urgency.CRITICAL, Urgency.HIGH]),
            ],
            [
                case((col(Report.urgency) == Urgency.CRITICAL, 0), else_=1),
                col(Report.created_at),
            ],
            list_limit,
        ),
        # `open` means never acknowledged: a reopened report goes back to `acknowledged`
        # if it was. So the (status, created_at) index answers this alone, in order.
        unacknowledged=_report_list(
            session,
            [col(Report.status) == ReportStatus.OPEN],
            [col(Report.created_at)],
            list_limit,
        ),
        overdue=_report_list(
            session,
            [col(Report.status).in_(OPEN), col(Report.follow_up_at) < now],
            [col(Report.follow_up_at)],
            list_limit,
        ),
        acknowledge=_durations(session, Report.acknowledged_at, start, end),
        resolve=_durations(session, Report.resolved_at, start, end, resolved_only=True),
        trend=trend,
    )


def _week_buckets(column: Any, bounds: Sequence[datetime]) -> ColumnElement[int]:
    """0 for the first week in `bounds`, 1 for the next, …: bucketing done by the database."""
    return case(
        *((column < bound, index) for index, bound in enumerate(bounds[1:-1])),
        else_=len(bounds) - 2,
    )


def _trend(session: Session, period: str, zone: ZoneInfo) -> Trend:
    periods = [shift(period, offset) for offset in range(1 - TREND_WEEKS, 1)]
    bounds = [week_bounds(p, zone)[0] for p in periods] + [week_bounds(period, zone)[1]]
    bucket = _week_buckets(col(Report.created_at), bounds).label("bucket")
    rows = session.exec(
        select(Report.category, bucket, func.count())
        .where(
            col(Report.status).in_(COUNTED),
            col(Report.created_at) >= bounds[0],
            col(Report.created_at) < bounds[-1],
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
    session: Session, start: datetime, end: datetime, previous_start: datetime
) -> list[Count]:
    bucket = _week_buckets(col(Report.created_at), [previous_start, start, end]).label("bucket")
    rows = session.exec(
        select(Report.location, bucket, func.count())
        .where(
            col(Report.status).in_(COUNTED),
            col(Report.created_at) >= previous_start,
            col(Report.created_at) < end,
        )
        .group_by(col(Report.location), bucket)
    ).all()
    weeks: dict[str | None, list[int]] = {}
    for location, index, count in rows:
        weeks.setdefault(location, [0, 0])[int(index)] += int(count)
    counts = [Count(name, now, before) for name, (before, now) in weeks.items()]
    return sorted(counts, key=lambda c: (-c.count, -c.previous, c.name is None, c.name or ""))


def _resolved_counts(
    session: Session, start: datetime, end: datetime, previous_start: datetime
) -> Count:
    bucket = _week_buckets(col(Report.resolved_at), [previous_start, start, end]).label("bucket")
    rows = session.exec(
        select(bucket, func.count())
        .where(
            col(Report.status) == ReportStatus.RESOLVED,
            col(Report.resolved_at) >= previous_start,
            col(Report.resolved_at) < end,
        )
        .group_by(bucket)
    ).all()
    weeks = [0, 0]
    for index, count in rows:
        weeks[int(index)] = int(count)
    return Count(None, weeks[1], weeks[0])


def _still_open_at(session: Session, moment: datetime) -> int:
    """Reports filed before `moment` and not resolved by then, from three small index ranges:
    open now and filed before, plus resolved after `moment`, minus those also filed after it
    (these ranges only reach back to `moment`, never through the whole history)."""
    open_now, resolved_later, filed_later = (
        session.exec(select(func.count()).select_from(Report).where(*where)).one()
        for where in (
            (col(Report.status).in_(OPEN), col(Report.created_at) < moment),
            (col(Report.status) == ReportStatus.RESOLVED, col(Report.resolved_at) >= moment),
            (col(Report.status) == ReportStatus.RESOLVED, col(Report.created_at) >= moment),
        )
    )
    return int(open_now) + int(resolved_later) - int(filed_later)


def _line_columns() -> tuple[Any, ...]:
    return (
        Report.id,
        Report.text,
        Report.category,
        Report.location,
        Report.urgency,
        Report.status,
        Report.created_at,
        Report.me_too_count,
        Report.follow_up_at,
        OutboxMessage.result_channel,
        OutboxMessage.result_ts,
        case((col(Report.anonymous), None), else_=col(Report.source_permalink)),
    )


def _lines(session: Session, query: Any) -> list[ReportLine]:
    return [ReportLine(*row) for row in session.exec(query).all()]


def _line_query(*where: Any) -> Any:
    return (
        select(*_line_columns())
        .outerjoin(OutboxMessage, col(OutboxMessage.id) == col(Report.card_message_id))
        .where(*where)
    )


def _report_list(session: Session, where: list[Any], order: list[Any], limit: int) -> ReportList:
    total = session.exec(select(func.count()).select_from(Report).where(*where)).one()
    items = _lines(session, _line_query(*where).order_by(*order, col(Report.id)).limit(limit))
    return ReportList(items=items, total=int(total))


def seconds_between(session: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    """`later - earlier` in seconds, computed by the database (SQLite has no intervals)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return cast(func.extract("epoch", later - earlier), Float)  # numeric since PostgreSQL 14


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks of sorted `values` (numpy's default)."""
    position = (len(values) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _durations(
    session: Session,
    moment: Any,
    start: datetime,
    end: datetime,
    *,
    resolved_only: bool = False,
) -> Durations:
    """Median and 90th percentile of `moment - created_at` for the events in the week.

    One column of floats comes back (tens of thousands at most: cheap to sort here); both
    databases agree on the answer, which `percentile_cont` (PostgreSQL only) would not give.
    """
    elapsed = seconds_between(session, moment, col(Report.created_at))
    where = [col(moment) >= start, col(moment) < end, col(Report.status) != ReportStatus.DUPLICATE]
    if resolved_only:
        where.append(col(Report.status) == ReportStatus.RESOLVED)
    values = sorted(max(v, 0.0) for v in session.exec(select(elapsed).where(*where)).all())
    if not values:
        return Durations(0, None, None)
    return Durations(
        count=len(values),
        median=timedelta(seconds=round(percentile(values, 0.5))),
        p90=timedelta(seconds=round(percentile(values, 0.9))),
    )


# --------------------------------------------------------------------------- themes


def _week_reports(start: datetime, end: datetime) -> list[Any]:
    return [
        col(Report.status).in_(COUNTED),
        col(Report.created_at) >= start,
        col(Report.created_at) < end,
    ]


def _themes(
    session: Session, start: datetime, end: datetime, week_size: int
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
    week = select(Report.id).where(*_week_reports(start, end))
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
    rows = session.connection().execute(_masks_query(session, start, end, bits)).all()
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    masks = np.fromiter((int(row[1]) for row in rows), dtype=np.uint64, count=len(rows))
    found = sorted(_cluster(masks), key=lambda members: (-len(members), int(ids[members].min())))
    if not found:
        return [], 0
    details = {rid: (me_too, location) for rid, _, me_too, location in rows}
    themes = [
        _theme(session, [int(i) for i in ids[members]], details, masks[members])
        for members in found[:THEME_LIMIT]
    ]
    return themes, len(found)


def _masks_query(session: Session, start: datetime, end: datetime, bits: dict[str, int]) -> Any:
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
            .where(*_week_reports(start, end))
            .group_by(col(Report.id))
        )
    summed = (
        select(ReportTerm.report_id, mask)
        .where(col(ReportTerm.report_id).in_(select(Report.id).where(*_week_reports(start, end))))
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
    example = _lines(session, _line_query(col(Report.id) == example_id))[0]
    return Theme(
        reports=len(member_ids),
        me_too=sum(details[rid][0] for rid in member_ids),
        locations=ranked[:3],
        more_locations=max(len(ranked) - 3, 0),
        example=example,
    )


# --------------------------------------------------------------------------- you said, we did


def build_you_said_we_did(
    session: Session,
    *,
    period: str,
    zone: ZoneInfo,
    confidential: Sequence[str] = (),
    limit: int = 15,
) -> YouSaidWeDid:
    """What was resolved in the week and shared with colleagues by the leader who resolved it,
    most *me too* first; never a report in a `confidential` category. Anonymous reporters
    come back with `reporter_id=None`: nothing downstream can name them by mistake."""
    start, end = week_bounds(period, zone)
    where = [
        col(Report.status) == ReportStatus.RESOLVED,
        col(Report.resolved_at) >= start,
        col(Report.resolved_at) < end,
        col(Report.solution_shared) == true(),
    ]
    if confidential:
        where.append(col(Report.category).not_in(list(confidential)))
    total, colleagues = session.exec(
        select(func.count(), func.coalesce(func.sum(Report.me_too_count), 0)).where(*where)
    ).one()
    rows = session.execute(
        sa_select(
            col(Report.id),
            col(Report.text),
            col(Report.category),
            col(Report.resolution_note),
            case((col(Report.anonymous), None), else_=col(Report.reporter_id)),
            col(Report.me_too_count),
        )
        .where(*where)
        .order_by(col(Report.me_too_count).desc(), col(Report.resolved_at), col(Report.id))
        .limit(limit)
    ).all()
    items = [
        Resolution(
            id=rid,
            text=said,
            category=category,
            note=note or "",
            reporter_id=reporter,
            me_too_count=me_too,
        )
        for rid, said, category, note, reporter, me_too in rows
    ]
    return YouSaidWeDid(
        period=period,
        start=start,
        end=end,
        items=items,
        total=int(total),
        still_open=_still_open_at(session, end),
        colleagues=int(colleagues),
    )


# --------------------------------------------------------------------------- CSV

CSV_COLUMNS = (
    "reference",
    "filed",
    "category",
    "location",
    "urgency",
    "status",
    "reporter",
    "me_too",
    "customers_affected",
    "acknowledged",
    "resolved",
    "follow_up",
    "duplicate_of",
    "text",
    "resolution",
    "card",
)


def _as_text(column: Any) -> ColumnElement[str]:
    """User text a spreadsheet shows as text: a leading `=`, `+`, `-` or `@` would make it a
    formula, so such a cell starts with an apostrophe."""
    return case(
        (func.substr(column, 1, 1).in_(FORMULA_START), literal("'", String) + column),
        else_=column,
    )


def _reference(report_id: Any) -> ColumnElement[str]:
    return literal("FB-", String) + cast(report_id + REFERENCE_OFFSET, String)


def week_csv(
    session: Session,
    *,
    period: str,
    zone: ZoneInfo,
    link_base: str | None = None,
) -> bytes:
    """Every report filed in the week (duplicates too, marked), as UTF-8 CSV with a byte-order
    mark so spreadsheet programs read umlauts right. Times are local to the digest; reporters
    who chose anonymity are `anonymous`; customer contacts are never included; `card` links
    to the report's card when `link_base` (the workspace URL) is known.

    Tens of thousands of rows: the database writes each cell's final text (references,
    links, the formula guard; on PostgreSQL the local times too, and the CSV itself with
    COPY), so no value needs Python work beyond SQLite's local times.
    """
    start, end = week_bounds(period, zone)
    local, (filed, acknowledged, resolved, follow_up) = _local_times(session, zone)
    card: ColumnElement[Any] = null()
    if link_base:
        card = case(
            (
                col(OutboxMessage.result_ts).is_not(None),
                literal(f"{link_base.rstrip('/')}/archives/", String)
                + col(OutboxMessage.result_channel)
                + "/p"
                + func.replace(col(OutboxMessage.result_ts), ".", ""),
            ),
        )
    cells = (
        _reference(col(Report.id)),
        filed,
        _as_text(col(Report.category)),
        _as_text(col(Report.location)),
        type_coerce(Report.urgency, String),
        type_coerce(Report.status, String),
        case((col(Report.anonymous), "anonymous"), else_=col(Report.reporter_id)),
        col(Report.me_too_count),
        col(Report.customers_affected),
        acknowledged,
        resolved,
        follow_up,
        case((col(Report.duplicate_of_id).is_not(None), _reference(col(Report.duplicate_of_id)))),
        _as_text(col(Report.text)),
        _as_text(col(Report.resolution_note)),
        card,
    )
    query: Any = (
        sa_select(*(cell.label(name) for cell, name in zip(cells, CSV_COLUMNS, strict=True)))
        .outerjoin(OutboxMessage, col(OutboxMessage.id) == col(Report.card_message_id))
        .where(col(Report.created_at) >= start, col(Report.created_at) < end)
        .order_by(col(Report.created_at), col(Report.id))
    )
    if local is None:
        return _copy_csv(session, query)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    result = session.connection().execute(query)
    while chunk := result.fetchmany(5000):
        writer.writerows(
            (
                row[0],
                local(row[1]),
                *row[2:9],
                local(row[9]),
                local(row[10]),
                local(row[11]),
                *row[12:],
            )
            for row in chunk
        )
    return out.getvalue().encode("utf-8-sig")


def _copy_csv(session: Session, query: Any) -> bytes:
    """PostgreSQL writes the CSV itself (`COPY … TO STDOUT`): no row passes through Python."""
    compiled = query.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    out = io.BytesIO()
    out.write("\ufeff".encode())
    driver: Any = session.connection().connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(
            f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER)", compiled.params
        ) as copy,
    ):
        for block in copy:
            out.write(block)
    return out.getvalue()


_MOMENTS = ("created_at", "acknowledged_at", "resolved_at", "follow_up_at")


def _local_times(
    session: Session, zone: ZoneInfo
) -> tuple[Callable[[str | None], str] | None, list[ColumnElement[str]]]:
    """The CSV's four moments as `2026-11-18 10:00` in `zone`: the columns to select, and
    what still turns their values into that text (None: nothing, they already are).

    PostgreSQL formats them itself (`timezone()` follows the same IANA rules as zoneinfo).
    SQLite has no timezones; it returns its stored UTC text (`2026-11-18 09:00:00.000000`),
    converted here once per distinct minute: a week's reports share a few thousand minutes,
    so tens of thousands of values cost a dict lookup each."""
    columns = [getattr(Report, name) for name in _MOMENTS]
    if session.get_bind().dialect.name != "sqlite":
        return None, [
            func.to_char(func.timezone(zone.key, column), "YYYY-MM-DD HH24:MI")
            for column in columns
        ]
    minutes: dict[str, str] = {}

    def local(stored: str | None) -> str:
        if stored is None:
            return ""
        key = stored[:16]
        shown = minutes.get(key)
        if shown is None:
            moment = datetime.fromisoformat(key).replace(tzinfo=UTC).astimezone(zone)
            shown = minutes[key] = moment.replace(tzinfo=None).isoformat(" ", "minutes")
        return shown

    return local, [type_coerce(column, String) for column in columns]
