"""Outage bursts: when many people report the same problem within minutes, their reports
join one incident group, so leadership reads one story instead of a flood of cards.

Below `burst_threshold` similar reports in `burst_window_minutes`, every report keeps its own
card. From the threshold on, a group is formed from the recent similar reports, and every
further similar report joins it. Each report is still stored, receipted and linked; triage on
the group applies to every report in it and reaches every reporter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, text
from sqlmodel import Session, col, select

from feedbot.core import burst_keys, reports, similar_reports, similarity, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.identity import Identities
from feedbot.core.reminders.groups import most_urgent
from feedbot.core.reports import OPEN_STATUSES
from feedbot.core.triage import Notice, NoticeKind
from feedbot.db import holds_sqlite_write_lock
from feedbot.errors import Conflict, InvalidValue
from feedbot.models import IncidentGroup, Report, ReportStatus
from feedbot.models.incidents import INCIDENT_OFFSET

BURST_LOCK_NAMESPACE = 0x6275  # "bu": first key of the burst locks, one per leadership channel
BURST_SIMILARITY = 0.3
"""Stricter than suggestions: only reports about the same thing form an incident."""


@dataclass(frozen=True)
class Placement:
    group: IncidentGroup
    created: bool
    absorbed: tuple[Report, ...] = ()
    """Reports filed before the group formed that it took in: their cards now point at it."""


def place(
    session: Session, *, report: Report, config: RuntimeConfig, now: datetime
) -> Placement | None:
    """Put a new report, not stored yet (`reports.new_report`), into an incident group if
    it is part of a burst; None otherwise. Its row is then written with its group.

    Two keys find the burst (`burst_keys`): reports with shared terms (one wording), and
    reports at the same place, in the same category, naming the same kind of problem (any
    wording, German or English). An open group either key reaches is joined, the one of the
    shared terms first; otherwise the reports either key found, with this one, form a group
    once they reach `burst_threshold`. Only reports and groups of the report's own leadership
    channel count: a route's leaders must be able to act on every report of its groups.
    """
    if config.burst_threshold <= 0:
        return None
    placement, alone = _find_place(session, report=report, config=config, now=now)
    joining = placement is not None and not placement.created
    if not alone and not joining and session.get_bind().dialect.name == "postgresql":
        # Two reports of one burst filed at the same moment must each see the other: the
        # one that goes first holds this lock until it commits, and the other one looks
        # again once the lock is its own, finding the group started or the report filed
        # meanwhile. (On SQLite the transaction holds the write lock by now, see
        # `store_and_place`, which serialises all of this.) A report with nothing
        # alike, or with a group to join, never waits for the lock.
        lock_burst(session, report.leadership_channel)
        session.flush()
        session.expire_all()  # what the first look loaded may have changed meanwhile
        similar_reports.forget_lookups(session)
        placement, _ = _find_place(session, report=report, config=config, now=now)
    if placement is None or not placement.created:
        return _joined(session, placement, report, now)
    group = placement.group
    session.add(group)
    session.flush()
    loose = sorted(placement.absorbed, key=lambda other: other.id or 0)
    _join(session, group, [*loose, report], now)
    return Placement(group, created=True, absorbed=tuple(loose))


def lock_burst(session: Session, channel: str | None) -> None:
    """Hold, until the transaction ends, the lock (PostgreSQL) under which reports of
    leadership channel `channel` start a group. One per channel: reports and groups of other
    channels never meet in `place`, so their bursts need not wait for each other (two
    channels whose names hash alike share one, which only makes them take turns)."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:channel))"),
        {"namespace": BURST_LOCK_NAMESPACE, "channel": channel or ""},
    )


def store_and_place(
    session: Session, *, report: Report, config: RuntimeConfig, now: datetime
) -> Placement | None:
    """Store a new report (`reports.new_report`) and put it in its incident group, if any
    (`place`).

    Placed first where that is safe, its row is written once, with its group, and its
    timeline's first entries in one statement: filing does this for every report of a
    burst. Two reports of one burst must not both place themselves unseen by the other: on
    PostgreSQL `place` takes a lock for that, and on SQLite the transaction must hold the
    one write lock already, as the inbox worker's does from taking its entry. Otherwise the
    report is stored first: its INSERT takes the lock.
    """
    if session.get_bind().dialect.name != "postgresql" and not holds_sqlite_write_lock(session):
        reports.store_report(session, report, now=now)
        _counted(session, report)
        return place(session, report=report, config=config, now=now)
    earlier = similar_reports.last_lookup(session)
    placement = place(session, report=report, config=config, now=now)
    grouped_in = placement.group.reference if placement is not None else None
    reports.store_report(session, report, now=now, grouped_in=grouped_in)
    assert report.id is not None
    similar_reports.stored_after_lookup(session, report.id, earlier=earlier)
    _counted(session, report)
    return placement


def _counted(session: Session, report: Report) -> None:
    """The words' counts the lookups keep count the report just stored."""
    similar_reports.FREQUENCIES.indexed(session, similarity.terms(report.text))


def _joined(
    session: Session, placement: Placement | None, report: Report, now: datetime
) -> Placement | None:
    if placement is not None:
        _join(session, placement.group, [report], now)
    return placement


def _find_place(
    session: Session, *, report: Report, config: RuntimeConfig, now: datetime
) -> tuple[Placement | None, bool]:
    """Where the report belongs, without changing anything: an open group to join, a new
    group (not yet stored) with the loose reports it would take in, or None; and whether
    nothing alike was found at all."""
    since = now - timedelta(minutes=config.burst_window_minutes)
    channel = report.leadership_channel
    alike = [
        found
        for found in similar_reports.alike_reports(
            session,
            text=report.text,
            category=report.category,
            exclude_id=report.id,
            statuses=OPEN_STATUSES,
            limit=50,
            threshold=BURST_SIMILARITY,
            candidates=100,
            created_since=since,
            # The receipt's suggestions look the same text up next: found in one statement.
            alongside=(similar_reports.SUGGESTIONS,),
        )
        if found.leadership_channel == channel
    ]
    group = _open_group_among(session, [found.incident_id for found in alike])
    same_place: list[Report] = []
    if group is None:
        same_place = [
            other
            for other in burst_keys.same_place_and_problem(session, report=report, since=since)
            if other.leadership_channel == channel
        ]
        group = _open_group_among(session, [other.incident_id for other in same_place])
    if group is not None:
        return Placement(group, created=False), False
    loose_ids = {found.report_id for found in alike if found.incident_id is None} | {
        other.id for other in same_place if other.incident_id is None
    }
    if len(loose_ids) + 1 < config.burst_threshold:
        return None, not loose_ids
    loose = session.exec(select(Report).where(col(Report.id).in_(loose_ids))).all()
    new = IncidentGroup(
        created_at=now,
        updated_at=now,
        category=report.category,
        example=report.text,
        leadership_channel=report.leadership_channel,
        urgency=report.urgency,
    )
    return Placement(new, created=True, absorbed=tuple(loose)), False


def _open_group_among(session: Session, incident_ids: list[int | None]) -> IncidentGroup | None:
    """The open group most of the reports found are in, if any."""
    grouped = [group_id for group_id in incident_ids if group_id is not None]
    for group_id in sorted(set(grouped), key=lambda g: (-grouped.count(g), g)):
        group = session.get(IncidentGroup, group_id)
        if group is not None and group.status in OPEN_STATUSES and group.merged_into_id is None:
            return group
    return None


def _join(session: Session, group: IncidentGroup, members: list[Report], now: datetime) -> None:
    """Members join; the group's urgency (its response target) becomes its most urgent
    report's. A member not stored yet (the report being filed) is written with its group,
    and its timeline says so then (`reports.store_report`)."""
    urgency = group.urgency
    for member in members:
        member.incident_id = group.id
        group.urgency = most_urgent(group.urgency, member.urgency)
        if member.id is None:
            continue
        session.add(member)
        reports.record(
            session, member, actor=None, action="grouped", now=now, detail=group.reference
        )
    if group.urgency != urgency:
        # Written only when it changes: every report of a burst joins the group, and on
        # PostgreSQL a written row stays locked until its transaction ends, so reports
        # filed in parallel queued behind each other for it.
        group.updated_at = now
        session.add(group)


@dataclass(frozen=True)
class GroupSummary:
    """What the group card counts. People are counted only where they gave their name:
    anonymous reports are counted as reports, so no number tells how many of them one
    person filed."""

    reports: int
    named_people: int
    anonymous_reports: int
    me_too: int
    locations: list[tuple[str, int]]
    latest: list[Report]


def summarise(session: Session, group: IncidentGroup, *, examples: int = 3) -> GroupSummary:
    """What the group card shows, counted in SQL."""
    in_group = col(Report.incident_id) == group.id
    count, people, anonymous, me_too = session.exec(
        select(
            func.count(),
            func.count(func.distinct(Report.reporter_id)),  # NULL for anonymous reports
            func.coalesce(func.sum(case((col(Report.anonymous), 1), else_=0)), 0),
            func.coalesce(func.sum(Report.me_too_count), 0),
        ).where(in_group)
    ).one()
    locations = session.exec(
        select(Report.location, func.count())
        .where(in_group, col(Report.location).is_not(None))
        .group_by(col(Report.location))
        .order_by(func.count().desc())
        .limit(5)
    ).all()
    latest = session.exec(
        select(Report).where(in_group).order_by(col(Report.id).desc()).limit(examples)
    ).all()
    return GroupSummary(
        int(count),
        int(people),
        int(anonymous),
        int(me_too),
        [(str(where), int(n)) for where, n in locations],
        list(latest),
    )


def members(session: Session, group: IncidentGroup) -> list[Report]:
    return list(
        session.exec(select(Report).where(Report.incident_id == group.id).order_by(col(Report.id)))
    )


def get_group(session: Session, group_id: int | None) -> IncidentGroup | None:
    if group_id is None or not 0 < group_id <= reports.MAX_ID:
        return None
    return session.get(IncidentGroup, group_id)


@dataclass
class GroupOutcome:
    group: IncidentGroup
    action: str
    actor: str
    changed: list[Report]
    notices: list[Notice]
    outcomes: list[triage.Outcome]
    """Each member's own outcome, for what follows a report's triage (its reminders)."""


def _each(
    session: Session,
    group: IncidentGroup,
    act: Callable[[Report], triage.Outcome],
) -> tuple[list[Report], list[Notice], list[triage.Outcome]]:
    """Apply `act` to every report of the group it applies to; one notice per person and kind."""
    outcomes: list[triage.Outcome] = []
    notices: dict[tuple[str, NoticeKind], Notice] = {}
    for member in members(session, group):
        try:
            outcome = act(member)
        except Conflict:
            continue  # already acknowledged or resolved on its own
        outcomes.append(outcome)
        for notice in outcome.notices:
            notices.setdefault((notice.user_id, notice.kind), notice)
    return [o.report for o in outcomes], list(notices.values()), outcomes


def acknowledge(
    session: Session,
    *,
    group: IncidentGroup,
    actor: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> GroupOutcome:
    triage.require_leader(config, actor, group)
    if group.status != ReportStatus.OPEN:
        raise Conflict(f"{group.reference} was already acknowledged.")
    changed, notices, outcomes = _each(
        session,
        group,
        lambda r: triage.acknowledge(
            session, report=r, actor=actor, config=config, now=now, identities=identities
        ),
    )
    group.status, group.acknowledged_at, group.acknowledged_by, group.updated_at = (
        ReportStatus.ACKNOWLEDGED,
        now,
        actor,
        now,
    )
    session.add(group)
    return GroupOutcome(group, "acknowledged", actor, changed, notices, outcomes)


def reply(
    session: Session,
    *,
    group: IncidentGroup,
    actor: str,
    text: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> GroupOutcome:
    triage.require_leader(config, actor, group)
    changed, notices, outcomes = _each(
        session,
        group,
        lambda r: triage.reply(
            session,
            report=r,
            actor=actor,
            text=text,
            config=config,
            now=now,
            identities=identities,
        ),
    )
    if group.status == ReportStatus.OPEN:
        group.status, group.acknowledged_at, group.acknowledged_by = (
            ReportStatus.ACKNOWLEDGED,
            now,
            actor,
        )
    group.updated_at = now
    session.add(group)
    return GroupOutcome(group, "replied", actor, changed, notices, outcomes)


def resolve(
    session: Session,
    *,
    group: IncidentGroup,
    actor: str,
    note: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
    share: bool = True,
) -> GroupOutcome:
    triage.require_leader(config, actor, group)
    if group.status == ReportStatus.RESOLVED:
        raise Conflict(f"{group.reference} is already resolved.")
    changed, notices, outcomes = _each(
        session,
        group,
        lambda r: triage.resolve(
            session,
            report=r,
            actor=actor,
            note=note,
            config=config,
            now=now,
            identities=identities,
            share=share,
        ),
    )
    group.status, group.resolved_at, group.resolved_by, group.updated_at = (
        ReportStatus.RESOLVED,
        now,
        actor,
        now,
    )
    group.resolution_note = reports.clean_text(note)
    session.add(group)
    return GroupOutcome(group, "resolved", actor, changed, notices, outcomes)


@dataclass
class MergeOutcome:
    source: IncidentGroup
    target: IncidentGroup
    actor: str
    moved: list[Report]


def parse_reference(raw: str) -> int | None:
    """The group id in a reference like `INC-102` (or `inc 102`, `102`); None otherwise."""
    digits = raw.strip().upper().removeprefix("INC").strip(" -#")
    if not digits.isascii() or not digits.isdigit():
        return None
    group_id = int(digits) - INCIDENT_OFFSET
    return group_id if 0 < group_id <= reports.MAX_ID else None


def merge_target(
    session: Session,
    *,
    source: IncidentGroup,
    target_reference: str,
    actor: str,
    config: RuntimeConfig,
) -> IncidentGroup:
    """The group `source` may be merged into, or why not (`merge` checks it again). Reads
    only, so the merge form can say what to change before it closes."""
    triage.require_leader(config, actor, source)
    if source.merged_into_id is not None or source.status not in OPEN_STATUSES:
        raise Conflict(
            f"{source.reference} is already closed.",
            code="incident_closed",
            params={"ref": source.reference},
        )
    target_id = parse_reference(target_reference)
    target = get_group(session, target_id)
    if target is None or target.id == source.id:
        raise InvalidValue(
            "Enter another open incident's reference, like INC-102.",
            field="reference",
            code="incident_reference",
        )
    if target.merged_into_id is not None or target.status not in OPEN_STATUSES:
        raise Conflict(
            f"{target.reference} is already closed; pick an open incident.",
            code="incident_closed",
            params={"ref": target.reference},
        )
    if target.leadership_channel != source.leadership_channel:
        raise InvalidValue(
            f"{target.reference} is shown in another leadership channel; merge only incidents "
            "of one channel.",
            field="reference",
            code="incident_other_channel",
            params={"ref": target.reference},
        )
    triage.require_leader(config, actor, target)
    return target


def merge(
    session: Session,
    *,
    source: IncidentGroup,
    target_reference: str,
    actor: str,
    config: RuntimeConfig,
    now: datetime,
) -> MergeOutcome:
    """A leader merges `source` into the group `target_reference` names: every report of
    `source` moves to the target, which takes the more urgent urgency of the two; `source`
    is closed as merged (its card and reminders say so). Recorded on each moved report's
    timeline. Reporters are not told: nothing changed for them. A route's own leader may
    merge only groups of their route, into groups of their route."""
    target = merge_target(
        session, source=source, target_reference=target_reference, actor=actor, config=config
    )
    moved = members(session, source)
    for member in moved:
        member.incident_id = target.id
        session.add(member)
        reports.record(
            session,
            member,
            actor=actor,
            action="incident_merged",
            now=now,
            detail=f"{source.reference} -> {target.reference}",
        )
    target.urgency = most_urgent(target.urgency, source.urgency)
    if source.created_at < target.created_at:
        target.example = source.example
    target.updated_at = now
    source.status, source.merged_into_id, source.updated_at = ReportStatus.DUPLICATE, target.id, now
    session.add_all([source, target])
    return MergeOutcome(source, target, actor, moved)
