"""What a digest says, as plain data for the Slack layer to draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from feedbot.models import (
    REFERENCE_OFFSET,
    ReportStatus,
    Urgency,
)
from feedbot.models.incidents import INCIDENT_OFFSET


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
    incident_reports: int | None = None
    """Set for an incident group (then `id` is the group's): how many reports it holds."""

    @property
    def reference(self) -> str:
        if self.incident_reports is not None:
            return f"INC-{INCIDENT_OFFSET + self.id}"
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
    photo: ReportLine | None = None
    """A report of the theme that came with a photo (its example, if that one did)."""


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
class RouteLine:
    """One route in the company digest: its week at a glance."""

    channel: str
    new: int
    open: int
    overdue: int
    acknowledge_median: timedelta | None


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
    with_photos: int = 0
    """Reports of the week (counted ones) that came with at least one photo."""
    channel: str | None = None
    """The route's leadership channel whose reports alone count; None: the whole company."""
    routes: list[RouteLine] = field(default_factory=list)
    """The company digest's line per route, so its reader sees which region answers slowly."""

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
