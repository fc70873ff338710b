"""The scan: find the reports with a step due, and claim each step exactly once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, delete, exists, func, or_, true
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from feedbot.core import outbox, reports
from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders.steps import SEND_ORDER, Due, Kind, Rules, Sent, ZoneFor, due_steps
from feedbot.core.reports import OPEN_STATUSES
from feedbot.models import (
    Reminder,
    ReminderMessage,
    Report,
    ReportStatus,
    Urgency,
)

CHUNK = 500
"""Report ids per `IN (...)`: well under SQLite's variable limit."""


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
                col(Report.incident_id).is_(None),
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
    messages: Sequence[outbox.Entry],
    recipient: str | None,
) -> None:
    """Remember what a claimed step queued, so it can be withdrawn or edited later."""
    assert reminder.id is not None
    for message in messages:
        session.add(ReminderMessage(reminder_id=reminder.id, message_id=message.id or 0))
    reminder.message_id = messages[0].id if messages else None
    reminder.recipient = recipient or reminder.recipient
    session.add(reminder)
