"""ISO weeks in a timezone: the periods a digest speaks of.

A week runs Monday 00:00 to the next Monday 00:00 local time, so one with a daylight-saving
change is 167 or 169 hours long and a report filed on Sunday at 23:30 local time still
belongs to that Sunday's week.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from feedbot.errors import InvalidValue
from feedbot.models import (
    ReportStatus,
)

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
