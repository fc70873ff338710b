"""Follow-up reminders and escalations: who is owed a nudge about which report, and when.

Three cycles run on a report, each a series of numbered steps:

- `ack`: a report nobody acknowledged within its response target is reminded in its card's
  thread, again every `reminder_interval`, `reminder_cap` times; the next step escalates. A
  critical report escalates as soon as it misses its target. Ends when acknowledged.
- `follow_up`: from its follow-up date the owner gets a direct message, repeated up to the
  cap, then escalated. A snooze, a new date or a new owner starts a new cycle.
- `callback`: while a customer waits for a call back, the owner is reminded every interval,
  from one working hour after they took the report until the call is recorded. No cap and no
  escalation: the customer is still waiting, and the owner is the one who can call.

Time counts in working time only (working days and hours minus holidays, `WorkingHours`),
in the recipient's own timezone: a channel reads the workspace's, a person their Slack one.
Messages go out only in the recipient's working hours, so a step due at night goes out in
the morning.

Nothing assumes the scan runs on time. Each step's due moment follows from what was actually
sent before: a `reminder` row records when it went out and when its successor is due (one
interval of working time later, in its recipient's zone). A scan after an outage sends each
overdue step once, not a burst, and the next one an interval later. The same columns let the
scan's queries select almost exactly the reports with a step due (`_candidates`), so a scan
costs what is due, not what is open.

Exactly once: a step is the unique key `(report, kind, sequence)`. `claim` inserts its row
(`ON CONFLICT DO NOTHING`) first, which takes the write lock on SQLite and the key on
PostgreSQL, then locks and re-reads the report and checks the step is still due; the caller
queues its messages in that same transaction. A second process finds the row and skips; an
acknowledgement, resolution or snooze that committed first makes the re-check fail.

`report.snoozed_until` holds back the owner's reminders: a snooze sets it, and so does a new
owner taking the report (one working hour, see `QUIET_FOR_NEW_OWNER`). `report.escalated_at`
is the latest escalation and ends the acknowledgement cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, delete, exists, func, or_, true, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from feedbot.core import reports
from feedbot.core.config import WEEKDAYS, RuntimeConfig
from feedbot.core.reports import OPEN_STATUSES
from feedbot.core.triage import Outcome, require_leader
from feedbot.errors import Conflict, InvalidValue, NotAllowed
from feedbot.models import (
    OutboxMessage,
    OutboxStatus,
    Reminder,
    ReminderMessage,
    Report,
    ReportStatus,
    TimelineEntry,
    Urgency,
)

ZoneFor = Callable[[str | None], ZoneInfo]
"""A person's timezone (their Slack one, else the workspace's); `None` asks for the latter."""

QUIET_FOR_NEW_OWNER = timedelta(hours=1)
"""Working time a new owner gets before their reminders start (the first call-back reminder
comes then; an overdue follow-up too)."""
MAX_DAYS = 3700
"""How far working-time arithmetic looks ahead before deciding no working day is left."""
CHUNK = 500
"""Report ids per `IN (...)`: well under SQLite's variable limit."""


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


# --------------------------------------------------------------------------- working time


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

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> WorkingHours:
        first, _, last = config.working_hours.partition("-")
        return cls(
            days=frozenset(WEEKDAYS.index(day) for day in config.working_days),
            start=time.fromisoformat(first),
            end=time.fromisoformat(last),
            holidays=frozenset(date.fromisoformat(day) for day in config.holidays),
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
        return day.weekday() in self.days and day not in self.holidays

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


# --------------------------------------------------------------------------- due steps


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


def _insert(session: Session) -> Any:
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(Reminder)


def _candidates(session: Session, *, now: datetime, rules: Rules) -> list[Report]:
    """Open reports with a step that may be due, selected through indexes of `report`
    (`feedbot.models.reminders`) so the exact rules then run on a small set.

    The bounds are exact where the zone is known: a first reminder in the leadership channel
    is due once the report is its target of working time old in the workspace's zone
    (`subtract`); a repeat once its predecessor's `next_due_at` has passed. Only working
    hours in an owner's own zone are left to the rules.
    """

    def pending(kind: Kind, *cycle: Any) -> Any:
        """An earlier step of this cycle whose successor is not due yet."""
        return exists().where(
            col(Reminder.report_id) == col(Report.id),
            col(Reminder.kind) == kind.value,
            col(Reminder.next_due_at) > now,
            *cycle,
        )

    queries = []
    hours, zone = rules.hours, rules.zone
    if hours.is_working(now, zone):
        bounds = {
            urgency: hours.subtract(now, target, zone) for urgency, target in rules.targets.items()
        }
        queries.append(
            select(Report).where(
                col(Report.status) == ReportStatus.OPEN,
                col(Report.escalated_at).is_(None),
                col(Report.created_at) <= max(bounds.values()),
                col(Report.acknowledged_at).is_(None),
                col(Report.card_message_id).is_not(None),
                or_(
                    *(
                        and_(col(Report.urgency) == urgency, col(Report.created_at) <= bound)
                        for urgency, bound in bounds.items()
                    )
                ),
                or_(col(Report.urgency) == Urgency.CRITICAL, ~pending(Kind.ACK)),
            )
        )
    unsnoozed = or_(col(Report.snoozed_until).is_(None), col(Report.snoozed_until) <= now)
    after_snooze = or_(
        col(Report.snoozed_until).is_(None), col(Reminder.due_at) >= col(Report.snoozed_until)
    )
    queries.append(
        select(Report).where(
            col(Report.status).in_(OPEN_STATUSES),
            col(Report.follow_up_at) <= now,
            col(Report.owner_id).is_not(None),
            unsnoozed,
            or_(
                col(Report.escalated_at).is_(None),
                col(Report.escalated_at) < col(Report.follow_up_at),
                col(Report.escalated_at) < col(Report.snoozed_until),
            ),
            ~pending(
                Kind.FOLLOW_UP, col(Reminder.due_at) >= col(Report.follow_up_at), after_snooze
            ),
        )
    )
    queries.append(
        select(Report).where(
            col(Report.callback_requested) == true(),
            col(Report.customer_called_at).is_(None),
            col(Report.status).in_(OPEN_STATUSES),
            col(Report.owner_id).is_not(None),
            unsnoozed,
            ~pending(Kind.CALLBACK, after_snooze),
        )
    )
    found: dict[int, Report] = {}
    for query in queries:
        for report in session.exec(query):
            found[report.id or 0] = report
    return list(found.values())


def _inline(ids: list[int]) -> Any:
    """Ids written into the statement rather than bound one by one: hundreds of bound
    parameters cost the driver more than the query costs the database."""
    return bindparam("ids", value=ids, expanding=True, literal_execute=True)


def _history(
    session: Session, report_ids: Iterable[int], *, keep: int, exclude: int | None = None
) -> dict[int, list[Sent]]:
    """The latest `keep` steps of each kind per report, oldest first: enough for any cycle
    (at most cap + 1 steps), however long a call back has been owed."""
    ids = list(report_ids)
    history: dict[int, list[Sent]] = defaultdict(list)
    for start in range(0, len(ids), CHUNK):
        ranked = select_columns(
            col(Reminder.report_id),
            col(Reminder.kind),
            col(Reminder.sequence),
            col(Reminder.due_at),
            col(Reminder.sent_at),
            col(Reminder.next_due_at),
            func.row_number()
            .over(
                partition_by=(col(Reminder.report_id), col(Reminder.kind)),
                order_by=col(Reminder.sequence).desc(),
            )
            .label("rank"),
        ).where(col(Reminder.report_id).in_(_inline(ids[start : start + CHUNK])))
        if exclude is not None:
            ranked = ranked.where(col(Reminder.id) != exclude)
        latest = ranked.subquery()
        for row in session.execute(
            select_columns(latest)
            .where(latest.c.rank <= keep)
            .order_by(latest.c.report_id, latest.c.sequence)
        ):
            history[row.report_id].append(
                Sent(Kind(row.kind), row.sequence, row.due_at, row.sent_at, row.next_due_at)
            )
    return history


def find_due(
    session: Session, *, now: datetime, config: RuntimeConfig, zone_for: ZoneFor
) -> list[Due]:
    """Every step due at `now`, reminders before escalations. Reads only: sending a step
    means `claim`ing it."""
    rules = Rules.from_config(config)
    candidates = _candidates(session, now=now, rules=rules)
    history = _history(session, (report.id or 0 for report in candidates), keep=rules.cap + 2)
    zones: dict[str | None, ZoneInfo] = {}
    working: dict[str, bool] = {}

    def zone_of(user: str | None) -> ZoneInfo:
        if user not in zones:
            zones[user] = zone_for(user)
        return zones[user]

    def working_now(zone: ZoneInfo) -> bool:
        if zone.key not in working:
            working[zone.key] = rules.hours.is_working(now, zone)
        return working[zone.key]

    steps = [
        due
        for report in candidates
        for due in due_steps(
            report,
            history.get(report.id or 0, []),
            now=now,
            rules=rules,
            zone_for=zone_of,
            working_now=working_now,
        )
    ]
    return sorted(steps, key=lambda due: (SEND_ORDER.index(due.kind), due.report_id))


@dataclass(frozen=True)
class Claimed:
    """A step this process now sends: its row, and the report, locked and re-checked."""

    reminder: Reminder
    report: Report
    due: Due


def claim(
    session: Session, *, due: Due, now: datetime, config: RuntimeConfig, zone_for: ZoneFor
) -> Claimed | None:
    """Take `due` for sending, or `None` if another process has it or it is no longer due.

    The caller queues the step's messages in this same transaction (`attach_messages`) and
    commits; a rollback, crash or refusal leaves nothing behind, so the step is retried by
    the next scan if it is still due then.
    """
    rules = Rules.from_config(config)
    next_due_at = None
    if not due.kind.escalation:
        zone = zone_for(due.recipient) if due.kind.to_owner else rules.zone
        next_due_at = rules.hours.add(now, rules.interval, zone)
    inserted = session.execute(
        _insert(session)
        .values(
            report_id=due.report_id,
            kind=due.kind.value,
            sequence=due.sequence,
            due_at=due.due_at,
            sent_at=now,
            recipient=due.recipient,
            next_due_at=next_due_at,
        )
        .on_conflict_do_nothing(index_elements=["report_id", "kind", "sequence"])
        .returning(col(Reminder.id))
    ).scalar_one_or_none()
    if inserted is None:
        return None
    report = session.exec(
        select(Report)
        .where(col(Report.id) == due.report_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    history = _history(session, [due.report_id], keep=rules.cap + 2, exclude=inserted)
    still_due = any(
        step.kind == due.kind and step.sequence == due.sequence
        for step in due_steps(
            report, history.get(due.report_id, []), now=now, rules=rules, zone_for=zone_for
        )
    )
    if not still_due:
        session.execute(delete(Reminder).where(col(Reminder.id) == inserted))
        return None
    reminder = session.get(Reminder, inserted)
    assert reminder is not None
    if due.kind.escalation:
        report.escalated_at = now
        session.add(report)
        reports.record(session, report, actor=None, action="escalated", now=now, detail=due.kind)
    return Claimed(reminder=reminder, report=report, due=due)


def attach_messages(
    session: Session,
    *,
    reminder: Reminder,
    messages: Sequence[OutboxMessage],
    recipient: str | None,
) -> None:
    """Remember what a claimed step queued, so it can be withdrawn or edited later."""
    assert reminder.id is not None
    for message in messages:
        session.add(ReminderMessage(reminder_id=reminder.id, message_id=message.id or 0))
    reminder.message_id = messages[0].id if messages else None
    reminder.recipient = recipient or reminder.recipient
    session.add(reminder)


# --------------------------------------------------------------------------- leaders' actions


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
    require_leader(config, actor)
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


# --------------------------------------------------------------------------- reading


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
