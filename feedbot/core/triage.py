"""What leaders do with a report, and who hears about it.

Each action checks the actor's role, changes the report, writes the timeline, and returns the
`Notice`s owed to people (reporter, *me too*s, a new owner). The Slack layer turns those into
messages; the rules of who is told what live here. Anonymous reporters get the same notices:
they are addressed by id and never shown to leaders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, select

from feedbot.core import reports
from feedbot.core.config import RuntimeConfig
from feedbot.core.config_values import CHANNEL_ID, USER_ID
from feedbot.core.identity import Identities
from feedbot.errors import Conflict, InvalidValue, NotAllowed
from feedbot.models import IncidentGroup, MeToo, Report, ReportStatus

MAX_NOTE = 3000


class NoticeKind(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    REPLIED = "replied"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    MERGED = "merged"
    CUSTOMER_CALLED = "customer_called"
    ASSIGNED = "assigned"


@dataclass(frozen=True)
class Notice:
    """Something a person must be told about a report. `anonymous`: they act anonymously on
    it, so the message must not name them anywhere it is stored (see `feedbot.core.identity`)."""

    user_id: str
    kind: NoticeKind
    report_id: int
    text: str | None = None
    other_report_id: int | None = None
    anonymous: bool = False


@dataclass
class Outcome:
    """What an action did: `action` names it on the timeline and in the card's thread, with
    `actor` (None when it was the reporter, who may be anonymous) and an optional `detail`."""

    report: Report
    action: str
    actor: str | None
    detail: str | None = None
    notices: list[Notice] = field(default_factory=list)


def require_leader(
    config: RuntimeConfig, actor: str, report: Report | IncidentGroup | None = None
) -> None:
    """Refuse anyone who does not lead the leadership channel `report` (or incident group) is
    shown in (without one: any channel). A regional leader is refused on another region's reports like a non-leader."""
    allowed = (
        config.leads(actor, report.leadership_channel)
        if report is not None
        else bool(config.led_channels(actor))
    )
    if not allowed:
        raise NotAllowed("Only leaders and admins can triage reports.", code="not_leader")


def _note(text: str | None, *, required: bool, what: str) -> str | None:
    value = reports.clean_text(text or "")
    if required and not value:
        raise InvalidValue(f"Please write {what}.", field="note")
    if len(value) > MAX_NOTE:
        raise InvalidValue(f"Please keep it under {MAX_NOTE:,} characters.", field="note")
    return value or None


def _tell_reporter(
    report: Report, identities: Identities, kind: NoticeKind, text: str | None = None
) -> list[Notice]:
    assert report.id is not None
    reporter = reports.reporter_of(report, identities)
    if reporter is None:
        return []
    return [Notice(reporter.user_id, kind, report.id, text, anonymous=reporter.anonymous)]


def _touch(
    session: Session,
    report: Report,
    actor: str,
    action: str,
    now: datetime,
    detail: str | None = None,
) -> None:
    report.updated_at = now
    session.add(report)
    reports.record(session, report, actor=actor, action=action, now=now, detail=detail)


def _require_open(report: Report) -> None:
    if report.status in (ReportStatus.RESOLVED, ReportStatus.DUPLICATE):
        raise Conflict(f"{report.reference} is already {report.status.value}; reopen it first.")


def acknowledge(
    session: Session,
    *,
    report: Report,
    actor: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Outcome:
    require_leader(config, actor, report)
    _require_open(report)
    if report.acknowledged_at is not None:
        raise Conflict(f"{report.reference} was already acknowledged.")
    report.status = ReportStatus.ACKNOWLEDGED
    report.acknowledged_at = now
    report.acknowledged_by = actor
    _touch(session, report, actor, "acknowledged", now)
    return Outcome(
        report,
        "acknowledged",
        actor,
        notices=_tell_reporter(report, identities, NoticeKind.ACKNOWLEDGED),
    )


def _acknowledge_implicitly(
    report: Report, actor: str, now: datetime, identities: Identities
) -> list[Notice]:
    """Claiming, assigning, replying or resolving also acknowledges: the reporter is told once."""
    if report.acknowledged_at is not None:
        return []
    report.acknowledged_at = now
    report.acknowledged_by = actor
    if report.status == ReportStatus.OPEN:
        report.status = ReportStatus.ACKNOWLEDGED
    return _tell_reporter(report, identities, NoticeKind.ACKNOWLEDGED)


def claim(
    session: Session,
    *,
    report: Report,
    actor: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Outcome:
    return assign(
        session,
        report=report,
        actor=actor,
        assignee=actor,
        config=config,
        now=now,
        identities=identities,
    )


def assign(
    session: Session,
    *,
    report: Report,
    actor: str,
    assignee: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Outcome:
    require_leader(config, actor, report)
    _require_open(report)
    if not USER_ID.match(assignee):
        raise InvalidValue("Pick a person to assign.", field="assignee")
    notices = _acknowledge_implicitly(report, actor, now, identities)
    report.owner_id = assignee
    assert report.id is not None
    if assignee == actor:
        _touch(session, report, actor, "claimed", now)
        return Outcome(report, "claimed", actor, notices=notices)
    _touch(session, report, actor, "assigned", now, detail=assignee)
    notices.append(Notice(assignee, NoticeKind.ASSIGNED, report.id))
    return Outcome(report, "assigned", actor, assignee, notices)


def reply(
    session: Session,
    *,
    report: Report,
    actor: str,
    text: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Outcome:
    require_leader(config, actor, report)
    message = _note(text, required=True, what="your reply")
    notices = _acknowledge_implicitly(report, actor, now, identities)
    _touch(session, report, actor, "replied", now, detail=message)
    notices += _tell_reporter(report, identities, NoticeKind.REPLIED, message)
    return Outcome(report, "replied", actor, notices=notices)


def forward(
    session: Session,
    *,
    report: Report,
    actor: str,
    channel: str,
    config: RuntimeConfig,
    now: datetime,
) -> Outcome:
    require_leader(config, actor, report)
    if not CHANNEL_ID.match(channel or ""):
        raise InvalidValue("Pick a channel to forward to.", field="channel")
    leadership = {*config.leadership_channels, config.escalation_channel}
    if config.is_confidential(report.category) and channel not in leadership:
        raise NotAllowed(
            f"{report.category} is confidential: its reports stay in leadership channels.",
            code="confidential_forward",
            field="channel",
            params={"category": report.category},
        )
    _touch(session, report, actor, "forwarded", now, detail=channel)
    return Outcome(report, "forwarded", actor, channel)


def resolve(
    session: Session,
    *,
    report: Report,
    actor: str,
    note: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
    share: bool = True,
) -> Outcome:
    """Resolve the report; everyone following it hears how. With `share`, colleagues who
    later report something similar are offered the solution (never for a confidential
    category, whatever was ticked)."""
    require_leader(config, actor, report)
    _require_open(report)
    resolution = _note(note, required=True, what="how it was resolved")
    _acknowledge_implicitly(report, actor, now, identities)  # the resolution says enough
    report.status = ReportStatus.RESOLVED
    report.resolved_at = now
    report.resolved_by = actor
    report.resolution_note = resolution
    report.solution_shared = share and not config.is_confidential(report.category)
    _touch(session, report, actor, "resolved", now, detail=resolution)
    assert report.id is not None
    notices = [
        Notice(
            person.user_id, NoticeKind.RESOLVED, report.id, resolution, anonymous=person.anonymous
        )
        for person in reports.followers(session, report, identities)
    ]
    return Outcome(report, "resolved", actor, notices=notices)


def reopen(
    session: Session,
    *,
    report: Report,
    actor: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Outcome:
    require_leader(config, actor, report)
    if report.status not in (ReportStatus.RESOLVED, ReportStatus.DUPLICATE):
        raise Conflict(f"{report.reference} is still open.")
    if report.duplicate_of_id is not None:
        raise Conflict(
            f"{report.reference} was merged into another report; reopen that one instead."
        )
    report.status = ReportStatus.ACKNOWLEDGED if report.acknowledged_at else ReportStatus.OPEN
    report.resolved_at = None
    report.resolved_by = None
    report.solution_shared = False
    _touch(session, report, actor, "reopened", now)
    return Outcome(
        report, "reopened", actor, notices=_tell_reporter(report, identities, NoticeKind.REOPENED)
    )


def check_duplicate_target(report: Report, target: Report) -> None:
    """`InvalidValue` when `report` cannot be folded into `target` (the duplicate form shows
    it before the form closes)."""
    if target.id == report.id:
        raise InvalidValue("A report cannot be a duplicate of itself.", field="reference")
    if target.status == ReportStatus.DUPLICATE:
        raise InvalidValue(
            f"{target.reference} is itself a duplicate; pick the report it was merged into.",
            field="reference",
        )


def merge_duplicate(
    session: Session,
    *,
    report: Report,
    target: Report,
    actor: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
    by_reporter: bool = False,
) -> Outcome:
    """Fold `report` into `target`: its reporter and *me too*s count for the target from now on.

    Leaders do this from the card; a reporter does it for their own new report by choosing
    *Me too instead* on a suggested similar report (`by_reporter`).
    """
    if by_reporter:
        if not reports.is_reporter(report, actor, identities):
            raise NotAllowed("You can only merge your own report.")
    else:
        require_leader(config, actor, report)
    _require_open(report)
    check_duplicate_target(report, target)
    assert report.id is not None and target.id is not None
    movers = reports.followers(session, report, identities)
    already = {person.user_id for person in reports.followers(session, target, identities)}
    for row in session.exec(select(MeToo).where(MeToo.report_id == report.id)).all():
        session.delete(row)
    session.flush()
    for person in movers:
        if person.user_id not in already:
            session.add(
                MeToo(
                    report_id=target.id,
                    user_sealed=identities.seal(person.user_id),
                    user_key=identities.me_too_key(target.id, person.user_id),
                    merged_from_id=report.id,
                    created_at=now,
                )
            )
    session.flush()
    reports.refresh_me_too_count(session, report)
    reports.refresh_me_too_count(session, target)
    report.status = ReportStatus.DUPLICATE
    report.duplicate_of_id = target.id
    report.resolved_at = now
    report.resolved_by = actor
    _touch(session, report, actor, "merged", now, detail=target.reference)
    reports.record(
        session,
        target,
        actor=None if by_reporter else actor,
        action="merged_in",
        now=now,
        detail=report.reference,
    )
    notices = (
        []
        if by_reporter
        else [
            Notice(
                person.user_id,
                NoticeKind.MERGED,
                report.id,
                other_report_id=target.id,
                anonymous=person.anonymous,
            )
            for person in movers
        ]
    )
    if by_reporter:
        return Outcome(report, "merged_by_reporter", None, target.reference, notices)
    return Outcome(report, "merged", actor, target.reference, notices)


def reveal_contact(
    session: Session, *, report: Report, actor: str, config: RuntimeConfig, now: datetime
) -> str:
    """The customer's contact, for the report's owner only; every reveal is on the timeline."""
    require_leader(config, actor, report)
    if report.owner_id != actor:
        raise NotAllowed("Only the report's owner can see the customer's contact. Claim it first.")
    if not report.customer_contact:
        raise Conflict(f"{report.reference} has no customer contact.")
    reports.record(session, report, actor=actor, action="contact_revealed", now=now)
    return report.customer_contact


def record_customer_called(
    session: Session,
    *,
    report: Report,
    actor: str,
    note: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Outcome:
    require_leader(config, actor, report)
    if report.owner_id != actor:
        raise NotAllowed("Only the report's owner records the call back. Claim it first.")
    if not report.callback_requested:
        raise Conflict(f"{report.reference} did not ask for a call back.")
    outcome = _note(note, required=True, what="how the call went")
    report.customer_called_at = now
    _touch(session, report, actor, "customer_called", now, detail=outcome)
    return Outcome(
        report,
        "customer_called",
        actor,
        notices=_tell_reporter(report, identities, NoticeKind.CUSTOMER_CALLED, outcome),
    )
