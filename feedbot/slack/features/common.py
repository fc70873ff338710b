"""Small pieces every feature's listeners share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from feedbot.core import reports
from feedbot.core.config import RuntimeConfig
from feedbot.core.errors import FeedbotError
from feedbot.core.reports import ReportDraft
from feedbot.metrics import REPORTS_CREATED
from feedbot.models import Report, ReportSource, ReportStatus
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.directory import Membership
from feedbot.slack.i18n import has, number, t
from feedbot.slack.views.notices import Suggestion, build_plain, build_receipt

log = logging.getLogger(__name__)

CHECK_BUDGET = 1.0
"""Seconds a form waits for Slack to confirm feedbot is in a channel before it answers."""

SUBCOMMANDS_ELSEWHERE = frozenset({"digest", "admin"})
"""`/feedback <word>` handled by other features; everything else is the report feature's."""


def first_word(body: dict[str, Any]) -> str:
    return str(body.get("text") or "").strip().split(" ", 1)[0].lower()


def subcommand(word: str) -> Callable[[dict[str, Any]], bool]:
    """A Bolt matcher for `/feedback <word> …`, for features that own a subcommand (the
    word must be listed in `SUBCOMMANDS_ELSEWHERE`)."""
    assert word in SUBCOMMANDS_ELSEWHERE, word
    return lambda body: first_word(body) == word


def reply_channel(body: dict[str, Any]) -> str:
    """Where to answer a button press: its channel, else the person (a Home tab or a modal
    has no channel; `delivery.ephemeral` then writes a direct message)."""
    return str(
        (body.get("channel") or {}).get("id")
        or (body.get("container") or {}).get("channel_id")
        or body["user"]["id"]
    )


def tell(
    session: Session,
    deps: Deps,
    body: dict[str, Any],
    text: str,
    *,
    anonymously_about: int | None = None,
) -> None:
    """A message only the person who pressed the button sees. `anonymously_about`: it is
    about what they did anonymously on that report (a *me too*), so it is stored sealed."""
    delivery.ephemeral(
        session,
        channel=reply_channel(body),
        user=body["user"]["id"],
        text=text,
        now=deps.clock(),
        sealed_by=deps.identities if anonymously_about is not None else None,
        about=anonymously_about,
    )


def refuse(session: Session, deps: Deps, body: dict[str, Any], error: FeedbotError) -> None:
    """Explain a refused action to the person who tried it; log it for the operator."""
    actor = body["user"]["id"]
    actions = body.get("actions") or [{}]
    log.info("refused %s for %s: %s", actions[0].get("action_id"), actor, type(error).__name__)
    tell(session, deps, body, explain(error, deps.locale_for(actor)))


def explain(error: FeedbotError, locale: str) -> str:
    """The error in the reader's language where a translation exists."""
    if error.code and has(f"error.{error.code}"):
        params = {
            name: number(locale, value)
            if isinstance(value, int) and not isinstance(value, bool)
            else value
            for name, value in error.params.items()
        }
        return t(locale, f"error.{error.code}", **params)
    return str(error)


def file_report(
    session: Session,
    deps: Deps,
    *,
    reporter_id: str,
    draft: ReportDraft,
    config: RuntimeConfig,
    now: datetime,
    receipt: bool = True,
) -> Report:
    """Store a report and queue its card and the reporter's receipt: every way in ends here.

    Raises `InvalidValue` for bad input, and `IntegrityError` when the same Slack message was
    already filed (a retry that raced the first delivery).
    """
    from feedbot.slack.features.incidents import absorb  # the incidents feature uses this module

    report = reports.create_report(
        session,
        reporter_id=reporter_id,
        draft=draft,
        config=config,
        now=now,
        identities=deps.identities,
    )
    if not absorb(session, report=report, config=config, now=now):
        delivery.post_card(session, report=report, config=config, now=now)
    deps.report_changed(session, report)
    REPORTS_CREATED.labels(report.source.value).inc()
    if receipt:
        send_receipt(session, deps, report=report, reporter_id=reporter_id, config=config, now=now)
    return report


MEMBERS_BUDGET = 0.3
"""Seconds a receipt waits for Slack to say who is in an intake channel; slower, and the
similar report's text is not shown."""


def suggestions(
    session: Session, deps: Deps, report: Report, *, asker: str
) -> tuple[list[Suggestion], Report | None]:
    """Up to three similar open reports, and the closest one already resolved whose solution
    was shared (one query), as `asker` may see them.

    Reports in a confidential category are never suggested. A similar report's text is shown
    only when `asker` could read it already: their own report, or a named post in an intake
    channel they are in. Otherwise they see its reference, category and how many colleagues
    it affects, enough to say *me too*; an anonymous report's text only leaders ever read."""
    config = deps.config()
    matches = [
        match
        for match in reports.similar_reports(
            session,
            text=report.text,
            category=report.category,
            exclude_id=report.id,
            statuses=(*reports.OPEN_STATUSES, ReportStatus.RESOLVED),
            limit=12,
        )
        if not config.is_confidential(match.report.category)
    ]
    similar = [
        Suggestion(match.report, readable=_readable(deps, match.report, asker))
        for match in matches
        if match.report.status != ReportStatus.RESOLVED
    ][:3]
    solved = next(
        (
            match.report
            for match in matches
            if match.report.status == ReportStatus.RESOLVED and match.report.solution_shared
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


def membership_problems(
    deps: Deps, fields: dict[str, list[str]], locale: str
) -> tuple[dict[str, str], list[str]]:
    """Refuse a channel the bot cannot post in: better now, in the form, than silently later.

    `fields` maps each form field to the channels it names. Slack is asked about all of them
    at once, within `CHECK_BUDGET`; the channels it did not answer for in time are returned,
    to be checked after the form is answered (`check_later`)."""
    wanted = list(dict.fromkeys(channel for channels in fields.values() for channel in channels))
    found = deps.channels.memberships(wanted, budget=CHECK_BUDGET)
    errors: dict[str, str] = {}
    for field, channels in fields.items():
        for channel in channels:
            if found[channel] == Membership.OUTSIDE:
                errors[field] = t(locale, "admin.not_in_channel", channel=channel)
            elif found[channel] == Membership.UNSEEN:
                errors[field] = t(locale, "admin.unknown_channel", channel=channel)
            else:
                continue
            break
    return errors, [channel for channel in wanted if found[channel] == Membership.UNKNOWN]


def check_later(deps: Deps, *, user_id: str, channels: list[str]) -> None:
    """Finish checking `channels` off the request path and tell `user_id` by direct message
    if feedbot cannot post in one of them."""

    def check() -> None:
        for channel in channels:
            if deps.channels.membership(channel) in (Membership.OUTSIDE, Membership.UNSEEN):
                text = t(
                    deps.locale_for(user_id, budget=None),
                    "admin.not_in_channel_later",
                    channel=channel,
                )
                with deps.transaction() as session:
                    delivery.post(
                        session,
                        conversation=user_id,
                        message=build_plain(text),
                        now=deps.clock(),
                        purpose="channel_check",
                    )

    threading.Thread(target=check, name="channel-check", daemon=True).start()
