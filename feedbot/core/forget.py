"""Forgetting a person on request (`feedbot forget-user`): everywhere feedbot stored them.

Their reports stay, as anonymous reports; their *me too*s still count. Every place that names
them is cleared or rewritten: the columns that hold their id (reporter, owner, who
acknowledged or resolved a report or an incident, reminders, the audit log), the sealed ones
(anonymous reports, *me too*s, direct messages waiting for an answer), the settings that list
them, their direct messages with feedbot (the outbox entries and their DM channel), the files
they reported with (feedbot's copies, deleted in Slack too), and every
text that mentions them (report texts, notes, the messages feedbot posted), where they
become "a former colleague". The messages feedbot posted that mentioned them are returned, to
be edited in Slack too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, delete, false, func, or_, update
from sqlmodel import Session, col, select

from feedbot.core import attachments, reports
from feedbot.core.identity import Identities
from feedbot.models import (
    AuditEntry,
    ConfigEntry,
    DmDraft,
    IncidentGroup,
    MeToo,
    OutboxMessage,
    OutboxStatus,
    Reminder,
    Report,
    ReportSource,
    SlackUser,
    TimelineEntry,
    metadata,
)

FORGOTTEN_CONVERSATION = "forgotten"


@dataclass
class Forgotten:
    """What forgetting changed, for the operator who asked."""

    report_ids: list[int] = field(default_factory=list)
    """Reports whose card should be shown again (they named the person)."""
    reports_made_anonymous: int = 0
    roles_cleared: int = 0
    me_toos: int = 0
    settings: list[str] = field(default_factory=list)
    direct_messages: int = 0
    texts_rewritten: int = 0
    messages_to_edit: list[int] = field(default_factory=list)
    """Outbox entries Slack shows with the person in them, now rewritten."""
    profile_removed: bool = False
    files_to_delete: list[str] = field(default_factory=list)
    """feedbot's copies of the files they reported with, to delete in Slack (their photos
    may show them, or where they were)."""

    def describe(self) -> str:
        settings = ", ".join(self.settings) or "none"
        return (
            f"{self.reports_made_anonymous} reports are now anonymous, "
            f"{self.roles_cleared} roles on reports, incidents and reminders cleared, "
            f"{self.me_toos} me-toos kept as anonymous counts, "
            f"settings changed: {settings}, "
            f"{self.direct_messages} direct messages forgotten, "
            f"{self.texts_rewritten} texts rewritten, "
            f"{len(self.messages_to_edit)} Slack messages to edit, "
            f"{len(self.files_to_delete)} copies of files to delete, "
            f"stored Slack profile {'removed' if self.profile_removed else 'not found'}."
        )


def forget_user(
    session: Session,
    *,
    user_id: str,
    identities: Identities,
    replacement: str,
    now: datetime,
) -> Forgotten:
    """Remove `user_id` from every table; `replacement` ("a former colleague", in the
    workspace's language) takes their place in texts."""
    done = Forgotten()
    dm_channels = _dm_channels(session, user_id)
    theirs = [r for r in session.exec(select(Report.id).where(reports.mine(identities, user_id)))]
    done.files_to_delete = attachments.forget_files(session, theirs)
    done.report_ids = _forget_on_reports(session, user_id, identities, dm_channels, done)
    done.me_toos = _forget_me_toos(session, user_id, identities)
    session.execute(
        delete(DmDraft).where(col(DmDraft.user_key) == identities.key("draft", user_id))
    )
    done.settings = _forget_in_settings(session, user_id, now)
    done.direct_messages = _forget_direct_messages(session, user_id, dm_channels)
    posted = _posted_mentions(session, [user_id, *dm_channels])
    done.texts_rewritten = _rewrite_texts(session, [user_id, *dm_channels], replacement)
    done.messages_to_edit = posted
    profile = session.get(SlackUser, user_id)
    if profile is not None:
        session.delete(profile)
        done.profile_removed = True
    return done


def _dm_channels(session: Session, user_id: str) -> list[str]:
    """The channels of the person's direct messages with feedbot, as feedbot saw them."""
    found = set(
        session.exec(
            select(OutboxMessage.result_channel).where(
                col(OutboxMessage.conversation) == user_id,
                col(OutboxMessage.result_channel).is_not(None),
            )
        ).all()
    )
    found |= set(
        session.exec(
            select(Report.source_channel).where(
                col(Report.reporter_id) == user_id,
                col(Report.source) == ReportSource.DIRECT_MESSAGE,
                col(Report.source_channel).is_not(None),
            )
        ).all()
    )
    return sorted(str(channel) for channel in found if channel)


def _forget_on_reports(
    session: Session,
    user_id: str,
    identities: Identities,
    dm_channels: list[str],
    done: Forgotten,
) -> list[int]:
    roles = ("owner_id", "acknowledged_by", "resolved_by")
    touched = set(
        session.exec(
            select(Report.id).where(
                or_(
                    reports.mine(identities, user_id),
                    *(getattr(Report, role) == user_id for role in roles),
                )
            )
        ).all()
    )
    if dm_channels:  # a DM's channel names the person it is with
        session.execute(
            update(Report)
            .where(col(Report.source_channel).in_(dm_channels))
            .values(source_channel=None, source_ts=None, source_permalink=None)
            .execution_options(synchronize_session=False)
        )
    done.reports_made_anonymous = _count(
        session,
        update(Report)
        .where(reports.mine(identities, user_id))
        .values(reporter_id=None, reporter_sealed=None, reporter_key=None, anonymous=True),
    )
    for role in roles:
        done.roles_cleared += _count(
            session, update(Report).where(getattr(Report, role) == user_id).values({role: None})
        )
    for role in ("acknowledged_by", "resolved_by"):
        done.roles_cleared += _count(
            session,
            update(IncidentGroup)
            .where(getattr(IncidentGroup, role) == user_id)
            .values({role: None}),
        )
    done.roles_cleared += _count(
        session, update(Reminder).where(col(Reminder.recipient) == user_id).values(recipient=None)
    )
    _count(
        session,
        update(TimelineEntry).where(col(TimelineEntry.actor_id) == user_id).values(actor_id=None),
    )
    _count(  # "assigned to <them>"
        session,
        update(TimelineEntry).where(col(TimelineEntry.detail) == user_id).values(detail=None),
    )
    _count(session, update(AuditEntry).where(col(AuditEntry.actor) == user_id).values(actor=None))
    return sorted(report_id for report_id in touched if report_id is not None)


def _forget_me_toos(session: Session, user_id: str, identities: Identities) -> int:
    """Their *me too*s keep counting, under a placeholder nobody can open. Each seal is
    opened to find them: me-toos carry no key that would link one person's across reports."""
    forgotten = 0
    for row in session.exec(select(MeToo)).all():
        if identities.open(row.user_sealed) == user_id:
            row.user_sealed, row.user_key = "", f"forgotten-{row.id}"
            session.add(row)
            forgotten += 1
    return forgotten


def _forget_in_settings(session: Session, user_id: str, now: datetime) -> list[str]:
    """Take them out of every setting that lists them (leaders, admins, routes' leaders);
    the audit log records the change without naming them."""
    changed = []
    for entry in session.exec(select(ConfigEntry)).all():
        if user_id not in entry.value:
            continue
        value = _without(json.loads(entry.value), user_id)
        entry.value = json.dumps(value)
        entry.updated_at, entry.updated_by = now, None
        session.add(entry)
        session.add(
            AuditEntry(
                at=now,
                actor=None,
                key=entry.key,
                old_value="(a person since forgotten)",
                new_value="(without them)",
            )
        )
        changed.append(entry.key)
    return changed


def _without(value: Any, user_id: str) -> Any:
    if isinstance(value, list):
        return [_without(item, user_id) for item in value if item != user_id]
    if isinstance(value, dict):
        return {key: _without(item, user_id) for key, item in value.items()}
    return None if value == user_id else value


def _forget_direct_messages(session: Session, user_id: str, dm_channels: list[str]) -> int:
    """Their direct messages with feedbot: nothing left says to whom, or what (one still
    waiting is never sent)."""
    mine = or_(
        col(OutboxMessage.conversation) == user_id,
        col(OutboxMessage.result_channel).in_(dm_channels) if dm_channels else false(),
    )
    ids = list(session.exec(select(OutboxMessage.id).where(mine)).all())
    if not ids:
        return 0
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(ids), col(OutboxMessage.status) == OutboxStatus.PENDING)
        .values(status=OutboxStatus.SUPERSEDED)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(ids))
        .values(
            conversation=FORGOTTEN_CONVERSATION,
            payload="{}",
            result_channel=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return len(ids)


def _posted_mentions(session: Session, needles: list[str]) -> list[int]:
    """Messages feedbot posted where Slack still shows the person: to edit there too."""
    found = session.exec(
        select(OutboxMessage.id).where(
            col(OutboxMessage.status) == OutboxStatus.SENT,
            col(OutboxMessage.method) == "chat.postMessage",
            col(OutboxMessage.result_ts).is_not(None),
            or_(*(col(OutboxMessage.payload).contains(needle) for needle in needles)),
        )
    ).all()
    return sorted(entry_id for entry_id in found if entry_id is not None)


def _rewrite_texts(session: Session, needles: list[str], replacement: str) -> int:
    """Every text column of every table, the person's mentions and ids replaced. Sealed
    columns and lookup keys are left alone: they name nobody, and editing would break them."""
    rewritten = 0
    for table in metadata.sorted_tables:
        for column in table.columns:
            kind = getattr(column.type, "impl", column.type)  # SQLModel wraps String
            if not isinstance(kind, String | Text) or column.primary_key:
                continue
            if column.name.endswith(("_sealed", "_key")):
                continue
            for needle in needles:
                value: Any = column
                for form in (f"<@{needle}>", needle):
                    value = func.replace(value, form, replacement)
                result = session.execute(
                    update(table).where(column.contains(needle)).values({column.name: value})
                )
                rewritten += int(result.rowcount)  # type: ignore[attr-defined]
    return rewritten


def _count(session: Session, statement: Any) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]
