"""When each digest channel's digest is due, and since when the channel has wanted one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from feedbot.core.config import RuntimeConfig
from feedbot.core.config_values import WEEKDAYS
from feedbot.core.digest.periods import monday, period_of, shift, week_bounds
from feedbot.db import upsert_insert
from feedbot.models import (
    ConfigEntry,
    DigestSubscription,
)


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
    covers: str | None = None
    """A route's digest counts only the reports routed to this leadership channel."""
    routes: tuple[str, ...] = ()
    """The company digest's routes, each summed up in a line of its own."""


def digest_channels(config: RuntimeConfig) -> list[DigestChannel]:
    """Every channel that gets a weekly post, with its schedule: the leadership channel (the
    whole company, a line per route), each route's channel (its own reports), and the
    all-staff channel. The one place that knows where digests go."""
    schedule = Schedule.parse(config.digest_schedule, config.zone)
    routes = [
        str(route["channel"])
        for route in config.leadership_routes
        if route["channel"] != config.leadership_channel
    ]
    routes = list(dict.fromkeys(routes))
    targets = []
    if config.leadership_channel:
        targets.append(
            DigestChannel(
                DigestKind.LEADERSHIP,
                config.leadership_channel,
                schedule,
                config.language,
                routes=tuple(routes),
            )
        )
    for channel in routes:
        targets.append(
            DigestChannel(
                DigestKind.LEADERSHIP,
                channel,
                schedule,
                config.language_of_channel(channel),
                setting="leadership_routes",
                covers=channel,
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
