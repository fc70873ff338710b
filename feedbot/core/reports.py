"""Filing reports, *me too*, and looking them up.

Every way in (modal, command, shortcut, DM, intake channel) ends in `create_report`, so the
rules (validation, reference, timeline, search terms) live in one place. Service functions
are keyword-only, take `now` explicitly, and leave committing to the caller: one Slack request
is one transaction.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert
from sqlmodel import Session, col, select

from feedbot.core import similarity
from feedbot.core.config import RuntimeConfig
from feedbot.core.identity import Identities
from feedbot.errors import InvalidValue, NotFound
from feedbot.models import (
    REFERENCE_OFFSET,
    MeToo,
    Report,
    ReportSource,
    ReportStatus,
    ReportTerm,
    TimelineEntry,
    Urgency,
)

MAX_TEXT = 3000
"""Longest report text typed into the form or the command (Slack's input limit)."""
MAX_MESSAGE_TEXT = 40_000
"""Longest text taken from a Slack message; Slack itself cuts messages there."""
MAX_CONTACT = 500
MAX_LOCATION = 200
MAX_CUSTOMERS = 10_000_000

OPEN_STATUSES = (ReportStatus.OPEN, ReportStatus.ACKNOWLEDGED)
_REFERENCE = re.compile(r"^\s*(?:FB-?)?(\d{1,12})\s*$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf"
_INVISIBLE = re.compile(
    # Direction marks, embeddings, overrides and isolates: they make text read otherwise
    # than it is stored ("gpj.exe" shown as "exe.jpg").
    "[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
    # Zero-width characters, which hide inside words (`@chan\u200bnel`); a joiner between two
    # emoji stays, as it draws one of them (a woman and a wrench: a mechanic).
    f"|[\u200b\u200c\u2060-\u2064\ufeff\u180e]|(?<![{_EMOJI}])\u200d|\u200d(?![{_EMOJI}])"
)


@dataclass(frozen=True)
class ReportDraft:
    """What a person told us, before it is a report. Built by the Slack layer from any source."""

    text: str
    source: ReportSource
    category: str | None = None
    location: str | None = None
    urgency: Urgency = Urgency.NORMAL
    customers_affected: int | None = None
    callback_requested: bool = False
    customer_contact: str | None = None
    anonymous: bool = False
    source_channel: str | None = None
    source_ts: str | None = None
    source_permalink: str | None = None


def clean_text(text: str) -> str:
    """Strip control characters (keeping newlines and tabs), characters that disguise text
    (direction overrides, zero-width characters) and surrounding whitespace."""
    return _INVISIBLE.sub("", _CONTROL.sub("", text)).strip()


def default_category(config: RuntimeConfig) -> str:
    """Where quick reports go until someone adds details: "Other", or the last category."""
    if not config.categories or "Other" in config.categories:
        return "Other"
    return config.categories[-1]


def validate(draft: ReportDraft, config: RuntimeConfig) -> ReportDraft:
    """A cleaned draft, or `InvalidValue` naming the field and what is expected."""
    text = clean_text(draft.text)
    limit = (
        MAX_MESSAGE_TEXT
        if draft.source in (ReportSource.DIRECT_MESSAGE, ReportSource.INTAKE_CHANNEL)
        else MAX_TEXT
    )
    if not text:
        raise InvalidValue("Please describe what happened.", field="text", code="text_required")
    if len(text) > limit:
        raise InvalidValue(
            f"Please keep it under {limit:,} characters (this is {len(text):,}).",
            field="text",
            code="text_too_long",
            params={"limit": limit, "length": len(text)},
        )
    category = draft.category or default_category(config)
    if draft.category and draft.category not in config.categories:
        raise InvalidValue(
            f"Unknown category; choose one of: {', '.join(config.categories)}", field="category"
        )
    location = clean_text(draft.location or "") or None
    if location and len(location) > MAX_LOCATION:
        raise InvalidValue(f"Keep the location under {MAX_LOCATION} characters.", field="location")
    if location and config.locations and location not in config.locations:
        raise InvalidValue(
            f"Unknown location; choose one of: {', '.join(config.locations)}", field="location"
        )
    customers = draft.customers_affected
    if customers is not None and not 0 <= customers <= MAX_CUSTOMERS:
        raise InvalidValue("Enter a whole number of customers, 0 or more.", field="customers")
    contact = clean_text(draft.customer_contact or "") or None
    if contact and len(contact) > MAX_CONTACT:
        raise InvalidValue(f"Keep the contact under {MAX_CONTACT} characters.", field="contact")
    if draft.anonymous and not config.allow_anonymous:
        raise InvalidValue("Anonymous reports are turned off here.", field="anonymous")
    return replace(
        draft,
        text=text,
        category=category,
        location=location,
        customer_contact=contact,
        callback_requested=draft.callback_requested or contact is not None,
    )


@dataclass(frozen=True)
class Follower:
    """Someone who hears how a report ends. `anonymous`: they act anonymously on it (its
    anonymous reporter, or a *me too*), so they are written to only through a seal."""

    user_id: str
    anonymous: bool


def _set_reporter(report: Report, user_id: str, identities: Identities) -> None:
    """Name the reporter, or seal them when the report is anonymous."""
    if report.anonymous:
        report.reporter_id = None
        report.reporter_sealed = identities.seal(user_id)
        report.reporter_key = identities.reporter_key(user_id)
    else:
        report.reporter_id = user_id
        report.reporter_sealed = report.reporter_key = None


def reporter_of(report: Report, identities: Identities) -> Follower | None:
    """The reporter, opened from its seal if the report is anonymous (None once forgotten, or
    when the seal was made with a key since lost)."""
    if report.reporter_id:
        return Follower(report.reporter_id, anonymous=False)
    opened = identities.open(report.reporter_sealed)
    return Follower(opened, anonymous=True) if opened else None


def is_reporter(report: Report, user_id: str, identities: Identities) -> bool:
    if report.reporter_id is not None:
        return report.reporter_id == user_id
    return report.reporter_key is not None and hmac.compare_digest(
        report.reporter_key, identities.reporter_key(user_id)
    )


def mine(identities: Identities, user_id: str) -> Any:
    """The condition "filed by `user_id`", named or anonymously."""
    return (col(Report.reporter_id) == user_id) | (
        col(Report.reporter_key) == identities.reporter_key(user_id)
    )


def check_rate(
    session: Session,
    *,
    user_id: str,
    identities: Identities,
    config: RuntimeConfig,
    now: datetime,
) -> None:
    """`InvalidValue` (code `rate_limited`) when `user_id` already filed as many reports as
    `report_rate_limit` allows in its window; it says in how many minutes they can again.
    One person flooding feedbot must not delay everyone else's reports."""
    rate = config.rate_limit
    if rate is None:
        return
    count, window = rate
    recent = session.exec(
        select(Report.created_at)
        .where(mine(identities, user_id), col(Report.created_at) > now - window)
        .order_by(col(Report.created_at).desc())
        .limit(count)
    ).all()
    if len(recent) < count:
        return
    free_at = recent[-1] + window  # when the oldest of the last `count` leaves the window
    minutes = max(1, -(-int((free_at - now).total_seconds()) // 60))
    raise InvalidValue(
        f"You filed {count} reports in a short time, the most one person can. You can send "
        f"this one in {minutes} minutes; it is kept until then.",
        field="text",
        code="rate_limited",
        params={"count": count, "wait": timedelta(minutes=minutes)},
    )


def create_report(
    session: Session,
    *,
    reporter_id: str,
    draft: ReportDraft,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Report:
    """Store a new report (validated) with its first timeline entry and its search terms.
    `InvalidValue` for bad input, and for a person over the rate limit (`check_rate`)."""
    report = new_report(
        session,
        reporter_id=reporter_id,
        draft=draft,
        config=config,
        now=now,
        identities=identities,
    )
    store_report(session, report, now=now)
    return report


def new_report(
    session: Session,
    *,
    reporter_id: str,
    draft: ReportDraft,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Report:
    """A new report, validated and not yet stored (`store_report` does). Filing places it
    in its incident group in between, so that its row is written once, with its group.
    `InvalidValue` for bad input, and for a person over the rate limit (`check_rate`)."""
    draft = validate(draft, config)
    check_rate(session, user_id=reporter_id, identities=identities, config=config, now=now)
    assert draft.category is not None
    report = Report(
        created_at=now,
        updated_at=now,
        source=draft.source,
        anonymous=draft.anonymous,
        text=draft.text,
        category=draft.category,
        location=draft.location,
        urgency=draft.urgency,
        customers_affected=draft.customers_affected,
        callback_requested=draft.callback_requested,
        customer_contact=draft.customer_contact,
        source_channel=draft.source_channel,
        source_ts=draft.source_ts,
        source_permalink=draft.source_permalink,
        leadership_channel=config.route_for(category=draft.category, location=draft.location),
    )
    _set_reporter(report, reporter_id, identities)
    return report


def store_report(
    session: Session, report: Report, *, now: datetime, grouped_in: str | None = None
) -> None:
    """Write a new report (from `new_report`), its search terms and its first timeline
    entries: *created*, and *grouped* when it joined the incident group `grouped_in` (a
    reference) as it was filed. The entries are one statement: filing writes them for
    every report of a burst."""
    session.add(report)
    session.flush()
    assert report.id is not None
    _index_terms(session, report, new=True)
    entries = [
        {
            "report_id": report.id,
            "actor_id": None if report.anonymous else report.reporter_id,
            "action": "created",
            "at": now,
            "detail": None,
        }
    ]
    if grouped_in is not None:
        entries.append(
            {
                "report_id": report.id,
                "actor_id": None,
                "action": "grouped",
                "at": now,
                "detail": grouped_in,
            }
        )
    session.execute(_INSERT_TIMELINE, entries)


def update_details(
    session: Session,
    *,
    report: Report,
    reporter_id: str,
    draft: ReportDraft,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> Report:
    """The reporter adds details to their own report (from the receipt's *Add details*).

    Made anonymous, a report forgets where it came from: a link to the post or DM would
    name its author (and its text no longer follows edits of that message)."""
    if not is_reporter(report, reporter_id, identities):
        raise NotFound("You can only add details to your own reports.")
    draft = validate(draft, config)
    assert draft.category is not None
    report.text = draft.text
    report.category = draft.category
    report.location = draft.location
    report.urgency = draft.urgency
    report.customers_affected = draft.customers_affected
    report.callback_requested = draft.callback_requested
    report.customer_contact = draft.customer_contact
    report.anonymous = draft.anonymous
    _set_reporter(report, reporter_id, identities)
    if report.anonymous:
        report.source_channel = report.source_ts = report.source_permalink = None
    report.updated_at = now
    session.add(report)
    _index_terms(session, report)
    record(
        session, report, actor=None if report.anonymous else reporter_id, action="details", now=now
    )
    return report


def update_text_from_message(
    session: Session, *, channel: str, ts: str, text: str, now: datetime
) -> Report | None:
    """Follow an edit of the intake message a report was made from."""
    report = find_by_source(session, channel=channel, ts=ts)
    text = clean_text(text)[:MAX_MESSAGE_TEXT]
    if report is None or not text or text == report.text:
        return None
    report.text = text
    report.updated_at = now
    session.add(report)
    _index_terms(session, report)
    record(session, report, actor=None, action="edited", now=now)
    return report


def find_by_source(session: Session, *, channel: str, ts: str) -> Report | None:
    return session.exec(
        select(Report).where(Report.source_channel == channel, Report.source_ts == ts)
    ).first()


def _index_terms(session: Session, report: Report, *, new: bool = False) -> None:
    """Store the report's search terms (replacing its earlier ones, unless it is `new`), in
    one statement: as ORM objects, a report's dozen terms cost more than its own row."""
    assert report.id is not None
    if not new:
        session.execute(delete(ReportTerm).where(col(ReportTerm.report_id) == report.id))
    rows = [{"report_id": report.id, "term": term} for term in similarity.terms(report.text)]
    if rows:
        session.execute(_INSERT_TERMS, rows)


_INSERT_TERMS = insert(ReportTerm.__table__)  # type: ignore[attr-defined]


def record(
    session: Session,
    report: Report,
    *,
    actor: str | None,
    action: str,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Add an entry to the report's timeline. Written at once, as one plain insert: nothing
    reads an entry back in the transaction that writes it, and an ORM object per entry
    cost more than the statement."""
    assert report.id is not None
    session.execute(
        _INSERT_TIMELINE,
        {"report_id": report.id, "actor_id": actor, "action": action, "at": now, "detail": detail},
    )


_INSERT_TIMELINE = insert(TimelineEntry.__table__)  # type: ignore[attr-defined]


def parse_reference(text: str) -> int:
    """The report id in `FB-1042`, `fb1042` or `1042`; `InvalidValue` otherwise."""
    match = _REFERENCE.match(text)
    if not match or int(match.group(1)) <= REFERENCE_OFFSET:
        raise InvalidValue(
            "Enter a report reference like FB-1042.", field="reference", code="reference"
        )
    return int(match.group(1)) - REFERENCE_OFFSET


MAX_ID = 2**31 - 1


def find_report(session: Session, report_id: int | None) -> Report | None:
    """The report, or None; ids from payloads may be anything, so out-of-range ones are None."""
    if report_id is None or not 0 < report_id <= MAX_ID:
        return None
    return session.get(Report, report_id)


def get_reports(session: Session, report_ids: Collection[int]) -> dict[int, Report]:
    """Those of `report_ids` that exist, by id, in one query."""
    if not report_ids:
        return {}
    found = session.exec(_REPORTS_BY_ID, params={"ids": list(report_ids)})
    return {report.id: report for report in found if report.id is not None}


_REPORTS_BY_ID = select(Report).where(col(Report.id).in_(bindparam("ids", expanding=True)))
"""Built once: filing asks for every receipt, and building a statement costs more than
running it."""


def get_report(session: Session, report_id: int) -> Report:
    report = find_report(session, report_id)
    if report is None:
        reference = f"FB-{REFERENCE_OFFSET + report_id}"
        raise NotFound(
            f"There is no report {reference}.", code="no_such_report", params={"ref": reference}
        )
    return report


def add_me_too(
    session: Session, *, report: Report, user_id: str, now: datetime, identities: Identities
) -> bool:
    """Count `user_id` as affected too. False if they already were, or reported it themselves.
    Saying *me too* is anonymous: they are stored sealed and the timeline names nobody."""
    if is_reporter(report, user_id, identities):
        return False
    assert report.id is not None
    key = identities.me_too_key(report.id, user_id)
    exists = session.exec(
        select(MeToo.id).where(MeToo.report_id == report.id, MeToo.user_key == key)
    ).first()
    if exists is not None:
        return False
    session.add(
        MeToo(
            report_id=report.id,
            user_sealed=identities.seal(user_id),
            user_key=key,
            created_at=now,
        )
    )
    session.flush()
    refresh_me_too_count(session, report)
    record(session, report, actor=None, action="me_too", now=now)
    return True


def said_me_too(session: Session, *, report: Report, user_id: str, identities: Identities) -> bool:
    assert report.id is not None
    key = identities.me_too_key(report.id, user_id)
    found = session.exec(
        select(MeToo.id).where(MeToo.report_id == report.id, MeToo.user_key == key)
    ).first()
    return found is not None


def refresh_me_too_count(session: Session, report: Report) -> None:
    report.me_too_count = session.exec(
        select(func.count()).select_from(MeToo).where(MeToo.report_id == report.id)
    ).one()
    session.add(report)


def followers(session: Session, report: Report, identities: Identities) -> list[Follower]:
    """Everyone who hears about the outcome: the reporter, then everyone who said *me too*
    (each once; a seal made with a lost key is skipped: that person no longer hears)."""
    people: dict[str, Follower] = {}
    reporter = reporter_of(report, identities)
    if reporter is not None:
        people[reporter.user_id] = reporter
    for sealed in session.exec(
        select(MeToo.user_sealed).where(MeToo.report_id == report.id).order_by(col(MeToo.id))
    ).all():
        opened = identities.open(sealed)
        if opened and opened not in people:
            people[opened] = Follower(opened, anonymous=True)
    return list(people.values())
