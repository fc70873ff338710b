"""What leaders do to reminders (follow-up dates, snoozes, new owners) and what they read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, true, update
from sqlmodel import Session, col, select

from feedbot.core import reports
from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders.steps import Kind, callback_anchor, follow_up_anchor
from feedbot.core.reports import OPEN_STATUSES
from feedbot.core.triage import Outcome, require_leader
from feedbot.core.working_time import WorkingHours
from feedbot.errors import Conflict, InvalidValue, NotAllowed
from feedbot.models import (
    OutboxMessage,
    OutboxStatus,
    Reminder,
    ReminderMessage,
    Report,
    TimelineEntry,
)

QUIET_FOR_NEW_OWNER = timedelta(hours=1)
"""Working time a new owner gets before their reminders start (the first call-back reminder
comes then; an overdue follow-up too)."""


class SnoozeChoice(StrEnum):
    HOUR = "hour"
    TOMORROW = "tomorrow"
    NEXT_WEEK = "next_week"


def snooze_until(
    choice: SnoozeChoice, *, now: datetime, hours: WorkingHours, zone: ZoneInfo
) -> datetime:
    """When a snooze ends: in an hour, at the start of the next working day, or of next week
    (in the owner's timezone; a reminder then still waits for their working hours)."""
    if choice == SnoozeChoice.HOUR:
        return now + timedelta(hours=1)
    today = now.astimezone(zone).date()
    if choice == SnoozeChoice.TOMORROW:
        return hours.morning_of(today + timedelta(days=1), zone)
    return hours.morning_of(today + timedelta(days=7 - today.weekday()), zone)


def set_follow_up(
    session: Session,
    *,
    report: Report,
    actor: str,
    day: date,
    config: RuntimeConfig,
    zone: ZoneInfo,
    now: datetime,
) -> Outcome:
    """Remind the owner on `day`, at the start of their working hours (`zone` is theirs).

    Any leader may set it; the report needs an owner, since the reminder goes to them. A
    date set after a longer snooze wins over the snooze.
    """
    require_leader(config, actor, report)
    if report.status not in OPEN_STATUSES:
        raise Conflict(f"{report.reference} is already {report.status.value}; reopen it first.")
    if not report.owner_id:
        raise Conflict(
            "Claim or assign the report first; the follow-up reminds its owner.", code="no_owner"
        )
    if day < now.astimezone(zone).date():
        raise InvalidValue("Pick today or a later date.", field="date", code="follow_up_past")
    hours = WorkingHours.from_config(config)
    moment = max(now, datetime.combine(day, hours.start, tzinfo=zone).astimezone(UTC))
    report.follow_up_at = moment
    if report.snoozed_until is not None and report.snoozed_until > moment:
        report.snoozed_until = moment
    report.updated_at = now
    session.add(report)
    reports.record(
        session, report, actor=actor, action="follow_up", now=now, detail=day.isoformat()
    )
    return Outcome(report, "follow_up", actor, day.isoformat())


def snooze(
    session: Session,
    *,
    report: Report,
    actor: str,
    until: datetime,
    zone: ZoneInfo,
    now: datetime,
) -> Outcome:
    """Hold back the owner's reminders about `report` until `until`; only the owner may."""
    if report.owner_id != actor:
        raise NotAllowed(
            "Only the report's owner can snooze its reminders.", code="not_reminder_owner"
        )
    if report.status not in OPEN_STATUSES:
        raise Conflict(f"{report.reference} is already {report.status.value}.")
    report.snoozed_until = until
    report.updated_at = now
    session.add(report)
    shown = f"{until.astimezone(zone):%Y-%m-%d %H:%M} ({zone.key})"
    reports.record(
        session, report, actor=actor, action="snoozed", now=now, detail=until.isoformat()
    )
    return Outcome(report, "snoozed", actor, shown)


def quiet_for_new_owner(
    report: Report, *, now: datetime, config: RuntimeConfig, zone: ZoneInfo
) -> None:
    """A report just claimed or assigned: its owner's reminders (an overdue follow-up, the
    call back) start after one working hour of theirs, as a new cycle."""
    hours = WorkingHours.from_config(config)
    report.snoozed_until = hours.add(now, QUIET_FOR_NEW_OWNER, zone)


def _still_wanted(report: Report, reminder: Reminder, conversation: str) -> bool:
    """Whether a queued reminder message still says something true about `report`."""
    if report.status not in OPEN_STATUSES:
        return False
    kind = Kind(reminder.kind)
    if kind in (Kind.ACK, Kind.ACK_ESCALATION):
        return report.acknowledged_at is None
    if kind == Kind.CALLBACK and report.customer_called_at is not None:
        return False
    if kind.to_owner and conversation != report.owner_id:
        return False
    anchor = follow_up_anchor(report) if kind != Kind.CALLBACK else callback_anchor(report)
    return anchor is not None and reminder.due_at >= anchor


def withdraw_stale(session: Session, *, report: Report) -> int:
    """Withdraw reminder messages still waiting in the outbox that the report's new state
    made wrong (acknowledged, resolved, snoozed, handed over): they are never sent. One the
    outbox sender already took stays, and is edited like any sent one."""
    session.flush()
    rows = session.exec(
        select(Reminder, OutboxMessage)
        .join(ReminderMessage, col(ReminderMessage.reminder_id) == col(Reminder.id))
        .join(OutboxMessage, col(OutboxMessage.id) == col(ReminderMessage.message_id))
        .where(
            col(Reminder.report_id) == report.id,
            col(OutboxMessage.status) == OutboxStatus.PENDING,
        )
    ).all()
    withdrawn = 0
    for reminder, message in rows:
        if _still_wanted(report, reminder, message.conversation):
            continue
        result = session.execute(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.id) == message.id,
                col(OutboxMessage.status) == OutboxStatus.PENDING,
            )
            .values(status=OutboxStatus.SUPERSEDED, last_error="reminder withdrawn")
            .execution_options(synchronize_session=False)
        )
        withdrawn += int(result.rowcount)  # type: ignore[attr-defined]
    return withdrawn


def sent_messages(
    session: Session, *, report: Report, kinds: Iterable[Kind] | None = None
) -> list[tuple[Reminder, OutboxMessage]]:
    """Reminder messages of `report` that reached Slack (or are on their way), to edit."""
    query = (
        select(Reminder, OutboxMessage)
        .join(ReminderMessage, col(ReminderMessage.reminder_id) == col(Reminder.id))
        .join(OutboxMessage, col(OutboxMessage.id) == col(ReminderMessage.message_id))
        .where(
            col(Reminder.report_id) == report.id,
            col(OutboxMessage.status).in_([OutboxStatus.SENT, OutboxStatus.SENDING]),
            col(OutboxMessage.method) == "chat.postMessage",
        )
        .order_by(col(Reminder.id), col(OutboxMessage.id))
    )
    if kinds is not None:
        query = query.where(col(Reminder.kind).in_([kind.value for kind in kinds]))
    return [(reminder, message) for reminder, message in session.exec(query).all()]


def reminder_message(
    session: Session, *, reminder_id: int, report_id: int, recipient: str
) -> tuple[Reminder, OutboxMessage]:
    """A reminder and its (first) message, e.g. the DM whose button was pressed: only one
    about `report_id` that went to `recipient`, whatever ids a forged press names."""
    reminder = session.get(Reminder, reminder_id)
    message = session.get(OutboxMessage, reminder.message_id) if reminder else None
    if (
        reminder is None
        or message is None
        or reminder.report_id != report_id
        or reminder.recipient != recipient
    ):
        raise Conflict("That reminder is gone.")
    return reminder, message


@dataclass(frozen=True)
class HistoryItem:
    """One line of a report's history in an escalation: a timeline entry or a reminder."""

    at: datetime
    action: str
    detail: str | None = None
    number: int | None = None


def history(session: Session, *, report: Report, limit: int = 12) -> list[HistoryItem]:
    """What happened to `report` and which reminders went unanswered: the newest `limit`
    items, oldest first. Actors are left out: an escalation must not unmask anyone."""
    items = [
        HistoryItem(entry.at, entry.action, entry.detail)
        for entry in session.exec(
            select(TimelineEntry).where(col(TimelineEntry.report_id) == report.id)
        )
        if entry.action != "escalated"
    ]
    numbers: dict[str, int] = defaultdict(int)
    for reminder in session.exec(
        select(Reminder)
        .where(col(Reminder.report_id) == report.id)
        .order_by(col(Reminder.sequence))
    ):
        numbers[reminder.kind] += 1
        items.append(
            HistoryItem(
                reminder.sent_at, f"reminder_{reminder.kind}", number=numbers[reminder.kind]
            )
        )
    items.sort(key=lambda item: item.at)
    return items[-limit:]


def open_follow_ups(session: Session, *, owner_id: str, limit: int = 10) -> list[Report]:
    """The open reports `owner_id` owns with a follow-up date or a call back still owed,
    soonest follow-up first: what `/feedback mine` shows a leader."""
    return list(
        session.exec(
            select(Report)
            .where(
                col(Report.owner_id) == owner_id,
                col(Report.status).in_(OPEN_STATUSES),
                or_(
                    col(Report.follow_up_at).is_not(None),
                    and_(
                        col(Report.callback_requested) == true(),
                        col(Report.customer_called_at).is_(None),
                    ),
                ),
            )
            .order_by(col(Report.follow_up_at).is_(None), col(Report.follow_up_at), col(Report.id))
            .limit(limit)
        )
    )
