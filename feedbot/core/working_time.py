"""Working time: when people work, and arithmetic that skips nights, weekends and holidays.

Reminders count in it and go out only inside it; snoozes end at the start of a working day.
Every method takes the timezone to apply (the recipient's), so one `WorkingHours` serves a
whole workspace whose people live in several zones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from feedbot.core.config import RuntimeConfig
from feedbot.core.config_values import WEEKDAYS
from feedbot.errors import InvalidValue

MAX_DAYS = 3700
"""How far working-time arithmetic looks ahead before deciding no working day is left."""


@dataclass(frozen=True)
class WorkingHours:
    """When reminders may go out: working days, a daily window and holidays, applied in
    whatever timezone the caller gives (the recipient's).

    Windows are half-open, `[start, end)`: 18:00 is after hours. Durations in working time
    skip nights, non-working days and holidays.
    """

    days: frozenset[int]
    """Weekday numbers, Monday = 0."""
    start: time
    end: time
    holidays: frozenset[date] = frozenset()
    """The admin-kept list (`holidays`)."""
    region: str | None = None
    """`holiday_region`, like `DE-NW`: its public holidays count as well."""

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> WorkingHours:
        first, _, last = config.working_hours.partition("-")
        return cls(
            days=frozenset(WEEKDAYS.index(day) for day in config.working_days),
            start=time.fromisoformat(first),
            end=time.fromisoformat(last),
            holidays=frozenset(date.fromisoformat(day) for day in config.holidays),
            region=config.holiday_region,
        )

    @property
    def day_length(self) -> timedelta:
        today = date(2000, 1, 3)
        return datetime.combine(today, self.end) - datetime.combine(today, self.start)

    def duration(self, raw: str) -> timedelta:
        """`90m`, `4h` or `2d` (as normalised by the config) in working time; a day is one
        working day's window."""
        amount, unit = int(raw[:-1]), raw[-1].lower()
        if unit == "m":
            return timedelta(minutes=amount)
        if unit == "h":
            return timedelta(hours=amount)
        return self.day_length * amount

    def is_working_day(self, day: date) -> bool:
        return (
            day.weekday() in self.days
            and day not in self.holidays
            and (self.region is None or day not in public_holidays(self.region, day.year))
        )

    def window(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The day's working window in UTC (local wall-clock times, so DST is respected)."""
        start = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)
        return start, end

    def is_working(self, moment: datetime, zone: ZoneInfo) -> bool:
        local = moment.astimezone(zone)
        return self.is_working_day(local.date()) and self.start <= local.time() < self.end

    def add(self, moment: datetime, amount: timedelta, zone: ZoneInfo) -> datetime:
        """`moment` plus `amount` of working time: always a moment inside working hours (an
        amount that ends a day exactly lands on the next working morning)."""
        remaining = amount
        day = moment.astimezone(zone).date()
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                start, end = self.window(day, zone)
                begin = max(moment, start)
                if begin < end:
                    if remaining < end - begin:
                        return begin + remaining
                    remaining -= end - begin
            day += timedelta(days=1)
        raise InvalidValue("no working day in the next ten years; check working_days/holidays")

    def subtract(self, moment: datetime, amount: timedelta, zone: ZoneInfo) -> datetime:
        """The latest moment with `amount` of working time between it and `moment`: whatever
        started later cannot be `amount` of working time old by `moment` (`add` from it
        ends after `moment`). What the scan's queries compare creation times with."""
        remaining = amount
        day = moment.astimezone(zone).date()
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                start, end = self.window(day, zone)
                stop = min(moment, end)
                if stop > start:
                    if remaining <= stop - start:
                        return stop - remaining
                    remaining -= stop - start
            day -= timedelta(days=1)
        raise InvalidValue("no working day in the last ten years; check working_days/holidays")

    def next_working_moment(self, moment: datetime, zone: ZoneInfo) -> datetime:
        return self.add(moment, timedelta(0), zone)

    def first_working_day(self, day: date) -> date:
        """`day` itself if people work then, else the next day they do."""
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise InvalidValue("no working day in the next ten years; check working_days/holidays")

    def morning_of(self, day: date, zone: ZoneInfo) -> datetime:
        """The start of work on `day`, or on the first working day after it."""
        return self.window(self.first_working_day(day), zone)[0]


@lru_cache(maxsize=64)
def public_holidays(region: str, year: int) -> frozenset[date]:
    """A region's public holidays in one year (`DE`, `DE-NW`), from the `holidays` package.

    Computed once per region and year: working-time arithmetic asks for every day it
    walks over, and the package builds a year's calendar on each first question."""
    import holidays

    country, _, subdivision = region.partition("-")
    return frozenset(holidays.country_holidays(country, subdiv=subdivision or None, years=year))
