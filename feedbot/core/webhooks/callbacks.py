"""A ticket system answering back: comments and resolutions acted out like a leader's."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlmodel import Session

from feedbot.core import reports, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.identity import Identities
from feedbot.core.webhooks.signatures import Refused
from feedbot.errors import InvalidValue
from feedbot.models import (
    Report,
    Webhook,
)

MAX_COMMENT = triage.MAX_NOTE


MAX_AUTHOR = 80


def actor_of(webhook: Webhook) -> str:
    """How a ticket system appears on a report's timeline (never a Slack user id)."""
    return f"webhook:{webhook.id}"


def is_actor(actor: str) -> bool:
    """Whether a report's `resolved_by` (and the like) is a ticket system, not a person."""
    return actor.startswith("webhook:")


def _as_leader(config: RuntimeConfig, actor: str) -> RuntimeConfig:
    """The configuration in which `actor` may triage: a signed call from a webhook's receiver
    acts for leadership, with the webhook's secret as its credential."""
    return replace(config, group_leaders=config.group_leaders | {actor})


def comment(
    session: Session,
    *,
    webhook: Webhook,
    report: Report,
    text: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> triage.Outcome:
    """A ticket system's answer to the reporter, as a leader's reply."""
    actor = actor_of(webhook)
    return triage.reply(
        session,
        report=report,
        actor=actor,
        text=text,
        config=_as_leader(config, actor),
        now=now,
        identities=identities,
    )


def resolve(
    session: Session,
    *,
    webhook: Webhook,
    report: Report,
    note: str,
    config: RuntimeConfig,
    now: datetime,
    identities: Identities,
) -> triage.Outcome:
    """A ticket system resolving the report, as a leader would (the solution is not offered
    to colleagues: nobody in leadership chose to share it)."""
    actor = actor_of(webhook)
    return triage.resolve(
        session,
        report=report,
        actor=actor,
        note=note,
        config=_as_leader(config, actor),
        now=now,
        identities=identities,
        share=False,
    )


def find_report(session: Session, reference: str) -> Report:
    try:
        report = reports.find_report(session, reports.parse_reference(reference))
    except InvalidValue:
        report = None
    if report is None:
        raise Refused(404, "no_such_report", f"There is no report {reference[:20]}.")
    return report
