"""What follows when something happens to a report: every step, in one place.

Listeners (`feedbot.slack.features`) and jobs call these after the domain (`feedbot.core`)
changed something; each flow does its steps explicitly, in the caller's transaction, and
`feedbot.slack.delivery` queues the messages. Nothing here is called from below.

- `file_report`: store it, place it in an incident or post its card, receipt, Homes.
- `report_triaged`: the card, its thread, the people told, the reminders that follow.
- `group_triaged`: the same for every report of an incident group, and its one card.
- `reporter_answered`: a reporter's answer in the card's thread.
- `report_changed` / `refresh_homes` / `publish_home`: the Home tabs that show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from feedbot.core import (
    attachments,
    incidents,
    reminders,
    reports,
    similar_reports,
    triage,
    webhooks,
)
from feedbot.core.attachments import IncomingFile
from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders import Kind
from feedbot.core.reports import ReportDraft
from feedbot.core.working_time import WorkingHours
from feedbot.metrics import count_report
from feedbot.models import (
    IncidentGroup,
    OutboxMessage,
    Report,
    ReportSource,
    ReportStatus,
)
from feedbot.slack import delivery, homes
from feedbot.slack import files as slack_files
from feedbot.slack.deps import Deps
from feedbot.slack.i18n import t
from feedbot.slack.views import slack_date
from feedbot.slack.views.files import build_files_taken, files_label
from feedbot.slack.views.incident_reminders import build_group_reminder_done
from feedbot.slack.views.notices import Suggestion, build_plain, build_receipt
from feedbot.slack.views.reminders import build_follow_up_prompt, build_note

CLOSING = frozenset({"resolved", "merged", "merged_by_reporter"})
"""Outcomes after which every reminder sent about the report says it is done."""
MEMBERS_BUDGET = 0.3
"""Seconds a receipt waits for Slack to say who is in an intake channel; slower, and the
similar report's text is not shown."""


# --------------------------------------------------------------------------- filing


def file_report(
    session: Session,
    deps: Deps,
    *,
    reporter_id: str,
    draft: ReportDraft,
    config: RuntimeConfig,
    now: datetime,
    receipt: bool = True,
    files: Sequence[IncomingFile] = (),
) -> Report:
    """Store a report, then: join an incident group or post its card, count it, refresh the
    Homes that show it, and (with `receipt`) tell the reporter. Every way in ends here.
    Its `files` are recorded with it (so the card counts them) and copied into the card's
    thread afterwards, by the outbox.

    Raises `InvalidValue` for bad input, and `IntegrityError` when the same Slack message was
    already filed (a retry that raced the first delivery).
    """
    report = reports.new_report(
        session,
        reporter_id=reporter_id,
        draft=draft,
        config=config,
        now=now,
        identities=deps.identities,
    )
    placement = incidents.store_and_place(session, report=report, config=config, now=now)
    taken = attachments.add_files(session, report=report, files=files, now=now) if files else None
    if placement is None:
        # Without files there are none to count: the card needs no look in the database.
        known = attachments.FileSummary() if taken is None else None
        delivery.post_card(session, report=report, config=config, now=now, files=known)
    elif placement.created:
        delivery.post_group_card(session, group=placement.group, config=config, now=now)
        for absorbed in placement.absorbed:  # their cards now point at the group's
            delivery.refresh_card(session, report=absorbed, config=config, now=now)
    else:
        delivery.refresh_group_card(session, group=placement.group, config=config, now=now)
    webhooks.emit(session, event="report.filed", report=report, config=config, now=now)
    if taken is not None:
        files_follow(session, deps, report=report, taken=taken, reporter_id=reporter_id, now=now)
    count_report(report.source.value)
    homes.refresh_homes(session, deps, report=report)
    if receipt:
        send_receipt(session, deps, report=report, reporter_id=reporter_id, config=config, now=now)
    return report


def files_follow(
    session: Session,
    deps: Deps,
    *,
    report: Report,
    taken: attachments.Taken,
    reporter_id: str,
    now: datetime,
) -> None:
    """After files were attached: copies of the accepted ones are queued for the card's
    thread (or its incident card's), and the reporter hears which were refused and why, in
    their language (sealed when the report is anonymous)."""
    thread = delivery.card_entry(session, report) or _group_card_of(session, report)
    if thread is not None and taken.accepted:
        slack_files.queue_copies(
            session,
            report=report,
            rows=taken.accepted,
            thread=thread,
            locale=deps.config().language_of_channel(thread.conversation),
            now=now,
        )
    message = build_files_taken(report, taken, locale=deps.locale_for(reporter_id))
    if message is not None:
        delivery.dm(
            session,
            user=reporter_id,
            message=message,
            now=now,
            purpose="files_refused",
            sealed_by=deps.identities if report.anonymous else None,
            about=report.id,
        )


def files_added(
    session: Session,
    deps: Deps,
    *,
    report: Report,
    files: Sequence[IncomingFile],
    reporter_id: str,
    config: RuntimeConfig,
    now: datetime,
) -> None:
    """*Add details* with more files: the card counts them, its thread says so, copies follow."""
    taken = attachments.add_files(session, report=report, files=files, now=now)
    if taken.accepted:
        delivery.refresh_card(session, report=report, config=config, now=now)
        card = delivery.card_entry(session, report)
        locale = config.language_of_channel(card.conversation if card else "")
        added = attachments.FileSummary(
            photos=sum(1 for row in taken.accepted if row.is_image),
            files=sum(1 for row in taken.accepted if not row.is_image),
        )
        delivery.thread_line(
            session,
            report=report,
            config=config,
            action="files_added",
            actor=None,
            detail=files_label(added, locale),
            now=now,
        )
    files_follow(session, deps, report=report, taken=taken, reporter_id=reporter_id, now=now)


def suggestions(
    session: Session, deps: Deps, report: Report, *, asker: str
) -> tuple[list[Suggestion], Report | None]:
    """Up to three similar open reports, and the closest one already resolved whose solution
    was shared (one lookup, answered from filing's own when it ran), as `asker` may see them.

    Reports in a confidential category are never suggested. A similar report's text is shown
    only when `asker` could read it already: their own report, or a named post in an intake
    channel they are in. Otherwise they see its reference, category and how many colleagues
    it affects, enough to say *me too*; an anonymous report's text only leaders ever read."""
    config = deps.config()
    found = [
        alike
        for alike in similar_reports.alike_reports(
            session,
            text=report.text,
            category=report.category,
            exclude_id=report.id,
            statuses=similar_reports.SUGGESTIONS.statuses,
            candidates=similar_reports.SUGGESTIONS.candidates,
            limit=12,
        )
        if not config.is_confidential(alike.category or "")
    ]
    # Only the reports shown are loaded: the first three open ones, and the resolved ones
    # (the first whose solution was shared is shown).
    open_ones = [alike for alike in found if alike.status != ReportStatus.RESOLVED][:3]
    resolved = [alike for alike in found if alike.status == ReportStatus.RESOLVED]
    loaded = reports.get_reports(session, [alike.report_id for alike in open_ones + resolved])
    similar = [
        Suggestion(other, readable=_readable(deps, other, asker))
        for alike in open_ones
        if (other := loaded.get(alike.report_id)) is not None
    ]
    solved = next(
        (
            other
            for alike in resolved
            if (other := loaded.get(alike.report_id)) is not None and other.solution_shared
        ),
        None,
    )
    return similar, solved


def _readable(deps: Deps, other: Report, asker: str) -> bool:
    """Whether `asker` could read `other`'s text where it was posted."""
    if reports.is_reporter(other, asker, deps.identities):
        return True
    if other.anonymous or other.source != ReportSource.INTAKE_CHANNEL or not other.source_channel:
        return False
    members = deps.channels.members(other.source_channel, budget=MEMBERS_BUDGET)
    return members is not None and asker in members


def send_receipt(
    session: Session,
    deps: Deps,
    *,
    report: Report,
    reporter_id: str,
    config: RuntimeConfig,
    now: datetime,
    conversation: str | None = None,
    only_if_suggestions: bool = False,
) -> None:
    """A direct message with the reference, similar open reports, and an earlier solution;
    sealed when the report is anonymous.

    `only_if_suggestions` is for reports whose reference was already given elsewhere (the
    intake thread): the DM is then sent only when it has something to add.
    """
    similar, solved = suggestions(session, deps, report, asker=reporter_id)
    if only_if_suggestions and not similar and not solved:
        return
    message = build_receipt(
        report,
        locale=deps.locale_for(reporter_id),
        similar=similar,
        solved_before=solved,
        leadership_ready=bool(report.leadership_channel),
        details_button=report.source in (ReportSource.DIRECT_MESSAGE, ReportSource.INTAKE_CHANNEL),
    )
    if report.anonymous:
        delivery.dm(
            session,
            user=reporter_id,
            message=message,
            now=now,
            purpose="receipt",
            sealed_by=deps.identities,
            about=report.id,
        )
        return
    delivery.post(
        session,
        conversation=conversation or reporter_id,
        message=message,
        now=now,
        purpose="receipt",
    )


# --------------------------------------------------------------------------- triage


def report_triaged(
    session: Session, deps: Deps, *, outcome: triage.Outcome, config: RuntimeConfig, now: datetime
) -> None:
    """After a triage action: the card shows it, its thread records it, people are told,
    reminders follow, and the Homes that show the report are refreshed."""
    report = outcome.report
    delivery.refresh_card(session, report=report, config=config, now=now)
    delivery.thread_line(
        session,
        report=report,
        config=config,
        action=outcome.action,
        actor=outcome.actor,
        detail=outcome.detail,
        now=now,
    )
    delivery.notify(
        session,
        notices=outcome.notices,
        locale_for=deps.locale_for,
        now=now,
        identities=deps.identities,
    )
    reminders_follow(session, deps, outcome=outcome, config=config, now=now)
    webhooks.emit_outcome(session, outcome=outcome, config=config, now=now)
    homes.report_changed(session, deps, report, actor=outcome.actor)


def group_triaged(
    session: Session,
    deps: Deps,
    *,
    outcome: incidents.GroupOutcome,
    config: RuntimeConfig,
    now: datetime,
) -> None:
    """After triage on an incident card: the group card, each member's own card (if it had
    one) and reminders, one thread line, one notice per person."""
    group = outcome.group
    delivery.refresh_group_card(session, group=group, config=config, now=now)
    group_reminders_follow(session, group=group, config=config, now=now)
    for member in outcome.outcomes:
        delivery.refresh_card(session, report=member.report, config=config, now=now)
        reminders_follow(session, deps, outcome=member, config=config, now=now)
        webhooks.emit_outcome(session, outcome=member, config=config, now=now)
        homes.report_changed(session, deps, member.report, actor=outcome.actor)
    card = delivery.group_card_entry(session, group)
    delivery.line_under(
        session,
        card=card,
        config=config,
        action=f"incident_{outcome.action}",
        actor=outcome.actor,
        detail=str(len(outcome.changed)),
        now=now,
    )
    delivery.notify(
        session,
        notices=outcome.notices,
        locale_for=deps.locale_for,
        now=now,
        identities=deps.identities,
    )


def reporter_answered(
    session: Session, deps: Deps, *, report: Report, text: str, user_id: str
) -> None:
    """The reporter's answer in the card's thread (or its incident card's), under the
    reference and without a name when the report is anonymous, and a word back to them."""
    now = deps.clock()
    config = deps.config()
    delivery.line_under(
        session,
        card=delivery.card_entry(session, report) or _group_card_of(session, report),
        config=config,
        action="reporter_replied",
        actor=None,
        detail=text,
        now=now,
    )
    delivery.dm(
        session,
        user=user_id,
        message=build_plain(
            t(deps.locale_for(user_id), "reporter_reply.sent", ref=report.reference)
        ),
        now=now,
        purpose="reply_sent",
        sealed_by=deps.identities if report.anonymous else None,
        about=report.id,
    )
    homes.report_changed(session, deps, report, actor=user_id)


def _group_card_of(session: Session, report: Report) -> OutboxMessage | None:
    group = session.get(IncidentGroup, report.incident_id) if report.incident_id else None
    return delivery.group_card_entry(session, group) if group is not None else None


# --------------------------------------------------------------------------- reminders


def reminders_follow(
    session: Session, deps: Deps, *, outcome: triage.Outcome, config: RuntimeConfig, now: datetime
) -> None:
    """After any triage action: a new owner gets an hour of quiet (and, on a claim, the offer
    of a follow-up date); queued reminders the action made wrong are withdrawn; and once the
    report is resolved (or its call back made), the reminders already sent say so."""
    report = outcome.report
    if outcome.action in ("claimed", "assigned") and report.owner_id:
        zone = deps.timezone_for(report.owner_id)
        reminders.quiet_for_new_owner(report, now=now, config=config, zone=zone)
        session.add(report)
        if outcome.action == "claimed":
            _offer_follow_up(session, deps, report, config=config, zone=zone, now=now)
    reminders.withdraw_stale(session, report=report)
    if outcome.action in CLOSING:
        sent = reminders.sent_messages(session, report=report)
    elif outcome.action == "customer_called":
        sent = reminders.sent_messages(session, report=report, kinds=[Kind.CALLBACK])
    else:
        return
    for _reminder, message in sent:
        conversation = message.conversation
        locale = (
            deps.locale_for(conversation)
            if conversation[:1] in {"U", "W"}
            else config.language_of_channel(conversation)
        )
        note = build_note(_settled_text(report, outcome.action, locale))
        delivery.edit_sent(session, message=message, edit=note, now=now, purpose="reminder_update")


def group_reminders_follow(
    session: Session, *, group: IncidentGroup, config: RuntimeConfig, now: datetime
) -> None:
    """Once a group no longer waits, its queued reminders are withdrawn and those in its
    card's thread say so."""
    if reminders.groups.waiting(group):
        return
    reminders.withdraw_stale_group(session, group=group)
    for _reminder, message in reminders.sent_group_messages(session, group=group):
        locale = config.language_of_channel(message.conversation)
        note = build_group_reminder_done(group, locale=locale)
        delivery.edit_sent(session, message=message, edit=note, now=now, purpose="reminder_update")


def _settled_text(report: Report, action: str, locale: str) -> str:
    if action == "customer_called":
        return t(
            locale,
            "reminder.called",
            ref=report.reference,
            when=slack_date(report.customer_called_at or report.updated_at),
        )
    when = slack_date(report.resolved_at or report.updated_at)
    if action == "resolved" and report.resolved_by and not webhooks.is_actor(report.resolved_by):
        return t(
            locale, "reminder.resolved", ref=report.reference, actor=report.resolved_by, when=when
        )
    return t(locale, "reminder.closed", ref=report.reference, when=when)


def default_follow_up_day(
    report: Report, *, config: RuntimeConfig, zone: ZoneInfo, now: datetime
) -> date:
    """What a date picker starts at: the current follow-up, else the next working day."""
    if report.follow_up_at is not None and report.follow_up_at > now:
        return report.follow_up_at.astimezone(zone).date()
    hours = WorkingHours.from_config(config)
    return hours.first_working_day(now.astimezone(zone).date() + timedelta(days=1))


def _offer_follow_up(
    session: Session,
    deps: Deps,
    report: Report,
    *,
    config: RuntimeConfig,
    zone: ZoneInfo,
    now: datetime,
) -> None:
    """A date picker only the new owner sees, under the card they just claimed."""
    card = delivery.card_entry(session, report)
    if card is None or report.owner_id is None:
        return
    message = build_follow_up_prompt(
        report,
        locale=deps.locale_for(report.owner_id),
        initial=default_follow_up_day(report, config=config, zone=zone, now=now),
    )
    delivery.ephemeral_message(
        session,
        channel=card.conversation,
        user=report.owner_id,
        message=message,
        now=now,
        purpose="follow_up_prompt",
    )
