"""Event bodies, and queueing one outbox entry per subscribed receiver with the change."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Session

from feedbot.core import outbox, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.webhooks.receivers import (
    EVENTS,
    METHOD,
    VERSION,
    all_webhooks,
    conversation_of,
    event_for,
    subscribed,
)
from feedbot.models import (
    Report,
)


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def report_fields(session: Session, report: Report) -> dict[str, Any]:
    """What a receiver learns of a report: the problem, never the people.

    No reporter (named or anonymous), owner, leader, *me too* or customer contact: a ticket
    system's data goes to more people, and for longer, than feedbot's own."""
    duplicate_of = session.get(Report, report.duplicate_of_id) if report.duplicate_of_id else None
    return {
        "reference": report.reference,
        "category": report.category,
        "urgency": str(report.urgency),
        "location": report.location,
        "status": str(report.status),
        "text": report.text,
        "customers_affected": report.customers_affected,
        "callback_requested": report.callback_requested,
        "me_too_count": report.me_too_count,
        "created_at": _when(report.created_at),
        "acknowledged_at": _when(report.acknowledged_at),
        "resolved_at": _when(report.resolved_at),
        "resolution_note": report.resolution_note,
        "duplicate_of": duplicate_of.reference if duplicate_of is not None else None,
    }


def build_body(
    *,
    event: str,
    report: dict[str, Any] | None,
    now: datetime,
    comment: str | None = None,
    delivery_id: str | None = None,
) -> str:
    """The JSON sent, as text (the signature covers exactly these bytes)."""
    body: dict[str, Any] = {
        "version": VERSION,
        "event": event,
        "id": delivery_id or uuid.uuid4().hex,
        "occurred_at": _when(now),
    }
    if report is not None:
        body["report"] = report
    if comment is not None:
        body["comment"] = {"text": comment}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def emit(
    session: Session,
    *,
    event: str,
    report: Report,
    config: RuntimeConfig,
    now: datetime,
    comment: str | None = None,
    exclude: int | None = None,
) -> list[outbox.Queued]:
    """Queue `event` about `report` for every webhook that chose it, in the caller's
    transaction. `comment` is an answer to the reporter (for `report.replied`); `exclude`
    the webhook that caused the change (it knows already)."""
    if event not in EVENTS or config.is_confidential(report.category):
        return []
    receivers = [w for w in all_webhooks(session) if subscribed(w, event) and w.id != exclude]
    if not receivers:
        return []
    session.flush()
    body = build_body(event=event, report=report_fields(session, report), now=now, comment=comment)
    return [
        outbox.enqueue(
            session,
            conversation=conversation_of(webhook),
            method=METHOD,
            payload={"body": body},
            purpose=event,
            lane=f"report:{report.id}",
            now=now,
        )
        for webhook in receivers
    ]


def emit_outcome(
    session: Session,
    *,
    outcome: triage.Outcome,
    config: RuntimeConfig,
    now: datetime,
    exclude: int | None = None,
) -> list[outbox.Queued]:
    """The event of a triage action, if it has one (an answer to the reporter carries its
    text as `comment`)."""
    event = event_for(outcome.action)
    if event is None:
        return []
    comment = next(
        (n.text for n in outcome.notices if n.kind == triage.NoticeKind.REPLIED and n.text),
        None,
    )
    return emit(
        session,
        event=event,
        report=outcome.report,
        config=config,
        now=now,
        comment=comment if event == "report.replied" else None,
        exclude=exclude,
    )
