"""Which reminder steps are due for one report, computed from what was sent before (pure)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from feedbot.core.config import RuntimeConfig
from feedbot.core.reports import OPEN_STATUSES
from feedbot.core.working_time import WorkingHours
from feedbot.models import (
    Report,
    ReportStatus,
    Urgency,
)

ZoneFor = Callable[[str | None], ZoneInfo]
"""A person's timezone (their Slack one, else the workspace's); `None` asks for the latter."""


class Kind(StrEnum):
    ACK = "ack"
    ACK_ESCALATION = "ack_escalation"
    FOLLOW_UP = "follow_up"
    FOLLOW_UP_ESCALATION = "follow_up_escalation"
    CALLBACK = "callback"

    @property
    def escalation(self) -> bool:
        return self in (Kind.ACK_ESCALATION, Kind.FOLLOW_UP_ESCALATION)

    @property
    def to_owner(self) -> bool:
        return self in (Kind.FOLLOW_UP, Kind.CALLBACK)


SEND_ORDER = (
    Kind.ACK,
    Kind.FOLLOW_UP,
    Kind.CALLBACK,
    Kind.ACK_ESCALATION,
    Kind.FOLLOW_UP_ESCALATION,
)
"""A critical report's first reminder goes before its escalation, which ends the cycle."""


@dataclass(frozen=True)
class Sent:
    """One earlier step of a report, as far as the rules need it."""

    kind: Kind
    sequence: int
    due_at: datetime
    sent_at: datetime
    next_due_at: datetime | None = None


@dataclass(frozen=True)
class Due:
    """A step due now: the `(report_id, kind, sequence)` key, its place in the cycle
    (`number`; for escalations the reminders before it, for call backs every reminder about
    it so far) and who gets it (the owner for direct messages; `None` for the card thread or
    the escalation target)."""

    report_id: int
    reference: str
    kind: Kind
    sequence: int
    number: int
    due_at: datetime
    recipient: str | None = None


@dataclass(frozen=True)
class Rules:
    """The configuration the rules read, parsed once per scan."""

    hours: WorkingHours
    targets: dict[Urgency, timedelta]
    interval: timedelta
    cap: int
    zone: ZoneInfo
    """The workspace's timezone: leadership and escalation channels live in it."""

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> Rules:
        hours = WorkingHours.from_config(config)
        return cls(
            hours=hours,
            targets={
                Urgency(urgency): hours.duration(raw)
                for urgency, raw in config.response_targets.items()
            },
            interval=hours.duration(config.reminder_interval),
            cap=config.reminder_cap,
            zone=config.zone,
        )


def follow_up_anchor(report: Report) -> datetime | None:
    """When the current follow-up cycle starts: the date, or the end of a later snooze."""
    if report.follow_up_at is None:
        return None
    if report.snoozed_until is not None and report.snoozed_until > report.follow_up_at:
        return report.snoozed_until
    return report.follow_up_at


def callback_anchor(report: Report) -> datetime:
    """When the current call-back cycle starts: the end of the new owner's quiet hour or of a
    snooze (reports claimed before reminders existed fall back to their acknowledgement)."""
    return report.snoozed_until or report.acknowledged_at or report.created_at


def _cycle(history: Sequence[Sent], kind: Kind, anchor: datetime | None = None) -> list[Sent]:
    return [h for h in history if h.kind == kind and (anchor is None or h.due_at >= anchor)]


def _next_sequence(history: Sequence[Sent], kind: Kind) -> int:
    return max((h.sequence for h in history if h.kind == kind), default=0) + 1


def due_steps(
    report: Report,
    history: Sequence[Sent],
    *,
    now: datetime,
    rules: Rules,
    zone_for: ZoneFor,
    working_now: Callable[[ZoneInfo], bool] | None = None,
) -> list[Due]:
    """The steps of `report` due at `now`, given the steps sent before (`history`, in
    sequence order). Pure: the scan and the re-check under lock both call it."""
    assert report.id is not None

    def working(zone: ZoneInfo) -> bool:
        return working_now(zone) if working_now else rules.hours.is_working(now, zone)

    hours, cap = rules.hours, rules.cap
    steps: list[Due] = []

    def after(last: Sent, zone: ZoneInfo) -> datetime:
        return last.next_due_at or hours.add(last.sent_at, rules.interval, zone)

    def step(kind: Kind, number: int, due_at: datetime, recipient: str | None = None) -> None:
        steps.append(
            Due(
                report.id or 0,
                report.reference,
                kind,
                _next_sequence(history, kind),
                number,
                due_at,
                recipient,
            )
        )

    if report.status not in OPEN_STATUSES:
        return steps

    if (
        report.status == ReportStatus.OPEN
        and report.acknowledged_at is None
        and report.escalated_at is None
        and report.card_message_id is not None
        and report.incident_id is None  # its incident group's cycle stands for it
        and working(rules.zone)
    ):
        target = hours.add(report.created_at, rules.targets[Urgency(report.urgency)], rules.zone)
        sent = _cycle(history, Kind.ACK)
        after_last = after(sent[-1], rules.zone) if sent else target
        if len(sent) < cap and after_last <= now:
            step(Kind.ACK, len(sent) + 1, after_last)
        escalate_at = (
            target
            if report.urgency == Urgency.CRITICAL
            else (after_last if len(sent) >= cap else None)
        )
        if escalate_at is not None and escalate_at <= now:
            step(Kind.ACK_ESCALATION, len(sent), escalate_at)

    owner = report.owner_id
    anchor = follow_up_anchor(report)
    if owner and anchor is not None and anchor <= now:
        zone = zone_for(owner)
        sent = _cycle(history, Kind.FOLLOW_UP, anchor)
        if not _cycle(history, Kind.FOLLOW_UP_ESCALATION, anchor):
            due_at = after(sent[-1], zone) if sent else anchor
            if due_at > now:
                pass
            elif len(sent) < cap:
                if working(zone):
                    step(Kind.FOLLOW_UP, len(sent) + 1, due_at, owner)
            elif working(rules.zone):
                step(Kind.FOLLOW_UP_ESCALATION, len(sent), due_at)

    if owner and report.callback_requested and report.customer_called_at is None:
        anchor = callback_anchor(report)
        zone = zone_for(owner)
        if anchor <= now and working(zone):
            sent = _cycle(history, Kind.CALLBACK, anchor)
            due_at = after(sent[-1], zone) if sent else anchor
            if due_at <= now:  # numbered among all call-back reminders: the wait shows
                step(Kind.CALLBACK, _next_sequence(history, Kind.CALLBACK), due_at, owner)
    return steps
