"""Reminders and escalations of incident groups in Slack: what the reminder scan sends for a
group whose step is due (`send_due_groups`, run by `features.reminders.send_due`).

The rules and the exactly-once claim are `feedbot.core.reminders.groups`; this module turns
a claimed step into outbox messages in the claim's transaction, like `features.reminders`
does for reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session

from feedbot.core import incidents, outbox, reminders
from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders import GroupDue, Kind
from feedbot.models import IncidentGroup
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.views import Message
from feedbot.slack.views.incident_reminders import (
    build_group_ack_reminder,
    build_group_escalation,
)

log = logging.getLogger(__name__)


def send_due_groups(
    deps: Deps,
    due: list[GroupDue],
    *,
    mentions: Callable[[str | None], list[str]],
    config: RuntimeConfig,
) -> list[GroupDue]:
    """Send each group step in `due`, each claimed in a transaction of its own."""
    now = deps.clock()
    sent = []
    for item in due:
        try:
            with deps.transaction() as session:
                if _send(session, deps, item, mentions=mentions, config=config, now=now):
                    sent.append(item)
        except Exception:
            log.exception(
                "could not send %s %s #%s; the next scan tries again",
                item.reference,
                item.kind,
                item.sequence,
            )
    return sent


def _send(
    session: Session,
    deps: Deps,
    due: GroupDue,
    *,
    mentions: Callable[[str | None], list[str]],
    config: RuntimeConfig,
    now: datetime,
) -> bool:
    claimed = reminders.claim_group(session, due=due, now=now, config=config)
    if claimed is None:
        return False
    group, reminder = claimed.group, claimed.reminder
    summary = incidents.summarise(session, group, examples=0)
    messages: list[outbox.Queued] = []
    if due.kind == Kind.ACK:
        card = delivery.group_card_entry(session, group)
        if card is not None:
            reminder.recipient = card.conversation
            message = build_group_ack_reminder(
                group,
                reports=summary.reports,
                number_=due.number,
                cap=config.reminder_cap,
                mentions=mentions(group.leadership_channel),
                locale=config.language_of_channel(card.conversation),
            )
            messages.append(
                delivery.post(
                    session,
                    conversation=card.conversation,
                    message=message,
                    now=now,
                    purpose="reminder_incident_ack",
                    thread_of=card,
                    lane=card.lane,
                )
            )
    else:
        history = reminders.group_history(session, group)

        def build(locale: str) -> Message:
            return build_group_escalation(
                group,
                summary,
                kind=due.kind,
                count=due.number,
                target=config.response_targets.get(str(group.urgency), "?"),
                history=history,
                locale=locale,
            )

        messages = _escalate(session, deps, group, build, config=config, now=now)
        if config.escalation_channel:
            reminder.recipient = config.escalation_channel
    reminder.message_id = messages[0].id if messages else None
    session.add(reminder)
    return True


def _escalate(
    session: Session,
    deps: Deps,
    group: IncidentGroup,
    build: Callable[[str], Message],
    *,
    config: RuntimeConfig,
    now: datetime,
) -> list[outbox.Queued]:
    """To the escalation channel, or else to each admin by direct message (as a report); a
    routed group also to its route's own leaders by direct message."""
    to_route = [
        delivery.post(
            session,
            conversation=leader,
            message=build(deps.locale_for(leader)),
            now=now,
            purpose="reminder_incident_escalation",
        )
        for leader in config.route_leaders(group.leadership_channel)[:20]
    ]
    channel = config.escalation_channel
    if channel:
        message = build(config.language_of_channel(channel))
        return [
            delivery.post(
                session,
                conversation=channel,
                message=message,
                now=now,
                purpose="reminder_incident_escalation",
            ),
            *to_route,
        ]
    admins = [
        admin
        for admin in dict.fromkeys([*config.admins, *config.bootstrap_admins])
        if admin not in {message.conversation for message in to_route}
    ]
    if not admins and not to_route:
        log.warning("%s is escalated, but there is no escalation channel or admin", group.reference)
    return [
        *to_route,
        *(
            delivery.post(
                session,
                conversation=admin,
                message=build(deps.locale_for(admin)),
                now=now,
                purpose="reminder_incident_escalation",
            )
            for admin in admins
        ),
    ]
