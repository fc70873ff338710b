"""The acknowledgement cycle of incident groups: a group is reminded and escalated like a
report, so reports absorbed into one are never forgotten.

The cycle is the report's `ack` cycle (`steps.due_steps`) applied to the group: its response
target is that of its most urgent report (`IncidentGroup.urgency`, kept up to date as
reports join), counted in working time from when the group formed (its card went up then);
it is reminded in the incident card's thread every `reminder_interval`, `reminder_cap`
times, then escalated (a critical group as soon as it misses its target). It ends when the
group is acknowledged (on its card, or by a reply to everyone) or resolved, or merged into
another group. Reports inside a group have no cycle of their own (see `due_steps`): the
group's is theirs.

Steps are rows of `incident_reminder`, keyed `(incident_id, kind, sequence)` and claimed
exactly as a report's (`scan.claim`): insert the row `ON CONFLICT DO NOTHING`, lock and
re-read the group, re-check. The rows hang off the group, not off its first report, so the
candidate query reads `incident_group` alone through `ix_incident_group_ack_scan` (groups are
few; their reports may be thousands) and never joins the reports.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders.steps import Kind, Rules, Sent
from feedbot.models import (
    IncidentGroup,
    IncidentReminder,
    OutboxMessage,
    OutboxStatus,
    ReportStatus,
    Urgency,
)

URGENCY_RANK = {Urgency.LOW: 0, Urgency.NORMAL: 1, Urgency.HIGH: 2, Urgency.CRITICAL: 3}


def most_urgent(*urgencies: Urgency | str) -> Urgency:
    return max((Urgency(u) for u in urgencies), key=URGENCY_RANK.__getitem__)


@dataclass(frozen=True)
class GroupDue:
    """A step of a group's cycle due now: the `(group_id, kind, sequence)` key and its place
    in the cycle (`number`; for an escalation, the reminders before it)."""

    group_id: int
    reference: str
    kind: Kind
    sequence: int
    number: int
    due_at: datetime


def waiting(group: IncidentGroup) -> bool:
    """Whether the group still waits for acknowledgement (and so has a cycle)."""
    return (
        group.status == ReportStatus.OPEN
        and group.acknowledged_at is None
        and group.merged_into_id is None
    )


def group_due_steps(
    group: IncidentGroup, history: Sequence[Sent], *, now: datetime, rules: Rules
) -> list[GroupDue]:
    """The steps of `group` due at `now`, given the steps sent before (pure; the scan and
    the re-check under lock both call it). Same rules as a report's `ack` cycle."""
    assert group.id is not None
    if (
        not waiting(group)
        or group.escalated_at is not None
        or group.card_message_id is None
        or not rules.hours.is_working(now, rules.zone)
    ):
        return []
    hours = rules.hours
    target = hours.add(group.created_at, rules.targets[Urgency(group.urgency)], rules.zone)
    sent = [h for h in history if h.kind == Kind.ACK]
    if sent:
        last = sent[-1]
        after_last = last.next_due_at or hours.add(last.sent_at, rules.interval, rules.zone)
    else:
        after_last = target
    steps: list[GroupDue] = []

    def step(kind: Kind, number: int, due_at: datetime) -> None:
        sequence = max((h.sequence for h in history if h.kind == kind), default=0) + 1
        steps.append(GroupDue(group.id or 0, group.reference, kind, sequence, number, due_at))

    if len(sent) < rules.cap and after_last <= now:
        step(Kind.ACK, len(sent) + 1, after_last)
    escalate_at = (
        target
        if group.urgency == Urgency.CRITICAL
        else (after_last if len(sent) >= rules.cap else None)
    )
    if escalate_at is not None and escalate_at <= now:
        step(Kind.ACK_ESCALATION, len(sent), escalate_at)
    return steps


def _history(
    session: Session, group_ids: Iterable[int], *, exclude: int | None = None
) -> dict[int, list[Sent]]:
    ids = list(group_ids)
    history: dict[int, list[Sent]] = defaultdict(list)
    if not ids:
        return history
    query = (
        select(IncidentReminder)
        .where(col(IncidentReminder.incident_id).in_(ids))
        .order_by(col(IncidentReminder.incident_id), col(IncidentReminder.sequence))
    )
    if exclude is not None:
        query = query.where(col(IncidentReminder.id) != exclude)
    for row in session.exec(query):
        history[row.incident_id].append(
            Sent(Kind(row.kind), row.sequence, row.due_at, row.sent_at, row.next_due_at)
        )
    return history


def find_due_groups(session: Session, *, now: datetime, config: RuntimeConfig) -> list[GroupDue]:
    """Every group step due at `now`, reminders before escalations. Reads only."""
    rules = Rules.from_config(config)
    hours, zone = rules.hours, rules.zone
    if not hours.is_working(now, zone):
        return []
    bounds = {
        urgency: hours.subtract(now, target, zone) for urgency, target in rules.targets.items()
    }
    pending = exists().where(
        col(IncidentReminder.incident_id) == col(IncidentGroup.id),
        col(IncidentReminder.kind) == Kind.ACK.value,
        col(IncidentReminder.next_due_at) > now,
    )
    candidates = session.exec(
        select(IncidentGroup).where(
            col(IncidentGroup.status) == ReportStatus.OPEN,
            col(IncidentGroup.acknowledged_at).is_(None),
            col(IncidentGroup.escalated_at).is_(None),
            col(IncidentGroup.merged_into_id).is_(None),
            col(IncidentGroup.card_message_id).is_not(None),
            col(IncidentGroup.created_at) <= max(bounds.values()),
            or_(
                *(
                    and_(col(IncidentGroup.urgency) == urgency, col(IncidentGroup.created_at) <= b)
                    for urgency, b in bounds.items()
                )
            ),
            or_(col(IncidentGroup.urgency) == Urgency.CRITICAL, ~pending),
        )
    ).all()
    history = _history(session, (group.id or 0 for group in candidates))
    steps = [
        due
        for group in candidates
        for due in group_due_steps(group, history.get(group.id or 0, []), now=now, rules=rules)
    ]
    order = (Kind.ACK, Kind.ACK_ESCALATION)
    return sorted(steps, key=lambda due: (order.index(due.kind), due.group_id))


@dataclass(frozen=True)
class ClaimedGroup:
    reminder: IncidentReminder
    group: IncidentGroup
    due: GroupDue


def _insert(session: Session) -> Any:
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(IncidentReminder)


def claim_group(
    session: Session, *, due: GroupDue, now: datetime, config: RuntimeConfig
) -> ClaimedGroup | None:
    """Take `due` for sending, or `None` if another process has it or it is no longer due;
    the caller queues its messages in this transaction (see `scan.claim`)."""
    rules = Rules.from_config(config)
    next_due_at = None
    if not due.kind.escalation:
        next_due_at = rules.hours.add(now, rules.interval, rules.zone)
    inserted = session.execute(
        _insert(session)
        .values(
            incident_id=due.group_id,
            kind=due.kind.value,
            sequence=due.sequence,
            due_at=due.due_at,
            sent_at=now,
            next_due_at=next_due_at,
        )
        .on_conflict_do_nothing(index_elements=["incident_id", "kind", "sequence"])
        .returning(col(IncidentReminder.id))
    ).scalar_one_or_none()
    if inserted is None:
        return None
    group = session.exec(
        select(IncidentGroup)
        .where(col(IncidentGroup.id) == due.group_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    history = _history(session, [due.group_id], exclude=inserted)
    still_due = any(
        step.kind == due.kind and step.sequence == due.sequence
        for step in group_due_steps(group, history.get(due.group_id, []), now=now, rules=rules)
    )
    if not still_due:
        session.execute(delete(IncidentReminder).where(col(IncidentReminder.id) == inserted))
        return None
    reminder = session.get(IncidentReminder, inserted)
    assert reminder is not None
    if due.kind.escalation:
        group.escalated_at = now
        session.add(group)
    return ClaimedGroup(reminder=reminder, group=group, due=due)


def group_history(session: Session, group: IncidentGroup) -> list[IncidentReminder]:
    """The group's reminder steps so far, oldest first (for an escalation's history)."""
    return list(
        session.exec(
            select(IncidentReminder)
            .where(col(IncidentReminder.incident_id) == group.id)
            .order_by(col(IncidentReminder.sent_at), col(IncidentReminder.id))
        )
    )


def withdraw_stale_group(session: Session, *, group: IncidentGroup) -> int:
    """Once a group no longer waits (acknowledged, resolved, merged), its reminders still
    queued in the outbox are never sent."""
    if waiting(group):
        return 0
    session.flush()
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id).in_(
                select(IncidentReminder.message_id).where(
                    col(IncidentReminder.incident_id) == group.id
                )
            ),
            col(OutboxMessage.status) == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.SUPERSEDED, last_error="reminder withdrawn")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def sent_group_messages(
    session: Session, *, group: IncidentGroup
) -> list[tuple[IncidentReminder, OutboxMessage]]:
    """Reminder messages of `group` that reached Slack (or are on their way), to edit."""
    rows = session.exec(
        select(IncidentReminder, OutboxMessage)
        .join(OutboxMessage, col(OutboxMessage.id) == col(IncidentReminder.message_id))
        .where(
            col(IncidentReminder.incident_id) == group.id,
            col(OutboxMessage.status).in_([OutboxStatus.SENT, OutboxStatus.SENDING]),
            col(OutboxMessage.method) == "chat.postMessage",
        )
        .order_by(col(IncidentReminder.id))
    ).all()
    return [(reminder, message) for reminder, message in rows]
