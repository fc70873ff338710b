"""Reminders in Slack: the scan that sends what is due, the follow-up date, Snooze and Hand
over, and keeping reminders already sent truthful once the report moves on.

`send_due` is what the scheduler's `reminders` job runs every minute (and `feedbot reminders
run`). The rules, the exactly-once claim and working hours live in `feedbot.core.reminders`;
this module only turns a claimed step into outbox messages, in the claim's transaction. What
reminders do after a triage action is `feedbot.slack.flows.reminders_follow`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from feedbot.core import outbox, reminders, reports, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.reminders import Due, GroupDue, Kind, SnoozeChoice
from feedbot.core.working_time import WorkingHours
from feedbot.errors import Conflict, FeedbotError, InvalidValue
from feedbot.models import OutboxMessage, Report
from feedbot.slack import codecs, delivery, flows
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import deferred, explain, refuse, refusing, tell
from feedbot.slack.features.incident_reminders import send_due_groups
from feedbot.slack.i18n import t
from feedbot.slack.ids import Action, Callback, Field
from feedbot.slack.views import Message, slack_date
from feedbot.slack.views.reminders import (
    build_ack_reminder,
    build_callback_reminder,
    build_escalation,
    build_follow_up_form,
    build_follow_up_reminder,
    build_my_follow_ups,
    build_note,
    parse_follow_up_block,
    parse_reminder_block,
    read_follow_up_form,
)

log = logging.getLogger(__name__)

CLOSING = frozenset({"resolved", "merged", "merged_by_reporter"})
"""Outcomes after which every reminder sent about the report says it is done."""
MINE_FOLLOW_UPS = 10


def register(app: App, deps: Deps) -> None:
    app.action(Action.FOLLOW_UP)(_open_follow_up_form(deps))
    app.view(Callback.FOLLOW_UP_FORM)(_follow_up_submitted(deps))
    app.action(Action.FOLLOW_UP_PICK)(_follow_up_picked(deps))
    app.action(Action.SNOOZE)(_snoozed(deps))
    app.action(Action.HAND_OVER)(_handed_over(deps))


# --------------------------------------------------------------------------- the scan


def send_due(deps: Deps, *, dry_run: bool = False) -> list[Due | GroupDue]:
    """Send every reminder and escalation due now, of reports and of incident groups;
    returns what was sent (with `dry_run`, what is due, sending nothing).

    Each step is claimed and queued in a transaction of its own, so one failure (a lock
    timeout, say) costs only that step, which the next scan retries.
    """
    config = deps.config()
    now = deps.clock()

    def zone_for(user: str | None) -> ZoneInfo:  # a job may wait for Slack
        return deps.timezone_for(user, budget=None)

    with Session(deps.engine) as session:
        due = reminders.find_due(session, now=now, config=config, zone_for=zone_for)
        group_due = reminders.find_due_groups(session, now=now, config=config)
    if dry_run:
        return [*due, *group_due]
    # Who gets what is looked up now (Slack's users.info may take a moment), so no
    # transaction below waits on Slack.
    people = {item.recipient for item in due if item.recipient}
    escalating = [item.kind.escalation for item in due] + [g.kind.escalation for g in group_due]
    if any(escalating) and not config.escalation_channel:
        people |= {*config.admins, *config.bootstrap_admins}
    if any(escalating):  # a route's own leaders hear of its escalations by direct message
        routes = {str(route["channel"]) for route in config.leadership_routes}
        people |= {leader for channel in routes for leader in config.route_leaders(channel)}
    for person in people:
        deps.people.profile(person)
    sent = []
    for item in due:
        try:
            with deps.transaction() as session:
                if _send(session, deps, item, config=config, now=now):
                    sent.append(item)
        except Exception:
            log.exception(
                "could not send %s %s #%s; the next scan tries again",
                item.reference,
                item.kind,
                item.sequence,
            )
    sent_all: list[Due | GroupDue] = [*sent]
    sent_all += send_due_groups(
        deps, group_due, mentions=lambda channel: _leader_mentions(config, channel), config=config
    )
    if sent_all:
        log.info("sent %s reminders and escalations", len(sent_all))
    return sent_all


def _send(session: Session, deps: Deps, due: Due, *, config: RuntimeConfig, now: datetime) -> bool:
    claimed = reminders.claim(
        session,
        due=due,
        now=now,
        config=config,
        zone_for=lambda user: deps.timezone_for(user, budget=None),
    )
    if claimed is None:
        return False
    report, reminder = claimed.report, claimed.reminder
    assert reminder.id is not None
    messages: list[outbox.Queued] = []
    recipient: str | None = None
    if due.kind == Kind.ACK:
        card = session.get(OutboxMessage, report.card_message_id)
        if card is not None:
            recipient = card.conversation
            message = build_ack_reminder(
                report,
                number=due.number,
                cap=config.reminder_cap,
                mentions=_leader_mentions(config, report.leadership_channel),
                locale=_channel_locale(config, card.conversation),
            )
            messages.append(_post(session, card.conversation, message, now, due, thread_of=card))
    elif due.kind.to_owner and report.owner_id:
        recipient = report.owner_id
        locale = deps.locale_for(recipient)
        if due.kind == Kind.FOLLOW_UP:
            message = build_follow_up_reminder(
                report,
                reminder_id=reminder.id,
                number=due.number,
                cap=config.reminder_cap,
                locale=locale,
            )
        else:
            message = build_callback_reminder(
                report, reminder_id=reminder.id, number=due.number, locale=locale
            )
        messages.append(_post(session, recipient, message, now, due))
    elif due.kind.escalation:
        recipient, messages = _escalate(session, deps, report, due, config=config, now=now)
    reminders.attach_messages(session, reminder=reminder, messages=messages, recipient=recipient)
    return True


def _post(
    session: Session,
    conversation: str,
    message: Message,
    now: datetime,
    due: Due,
    *,
    thread_of: outbox.Entry | None = None,
) -> outbox.Queued:
    return delivery.post(
        session,
        conversation=conversation,
        message=message,
        now=now,
        purpose=f"reminder_{due.kind}",
        thread_of=thread_of,
        lane=thread_of.lane if thread_of else None,
    )


def _escalate(
    session: Session,
    deps: Deps,
    report: Report,
    due: Due,
    *,
    config: RuntimeConfig,
    now: datetime,
) -> tuple[str | None, list[outbox.Queued]]:
    """To the escalation channel, or else to each admin by direct message; a routed report
    also to its route's own leaders by direct message (they answer for it)."""
    history = reminders.history(session, report=report)

    def build(locale: str) -> Message:
        return build_escalation(
            report,
            kind=due.kind,
            count=due.number,
            target=config.response_targets.get(str(report.urgency), "?"),
            history=history,
            locale=locale,
        )

    route_leaders = config.route_leaders(report.leadership_channel)[:20]
    to_route = [
        _post(session, leader, build(deps.locale_for(leader)), now, due) for leader in route_leaders
    ]
    channel = config.escalation_channel
    if channel:
        message = build(_channel_locale(config, channel))
        return channel, [_post(session, channel, message, now, due), *to_route]
    admins = [
        admin
        for admin in dict.fromkeys([*config.admins, *config.bootstrap_admins])
        if admin not in route_leaders
    ]
    if not admins and not to_route:
        log.warning(
            "%s is escalated, but there is no escalation channel or admin", report.reference
        )
    return None, [
        *to_route,
        *(_post(session, admin, build(deps.locale_for(admin)), now, due) for admin in admins),
    ]


def _leader_mentions(config: RuntimeConfig, channel: str | None) -> list[str]:
    """Who a thread reminder names: a route's own leaders (and user groups) in its channel,
    else the leaders (their user group too), else the admins."""
    routes = [r for r in config.leadership_routes if channel and r["channel"] == channel]
    named = [leader for route in routes for leader in route.get("leaders", [])]
    groups = [str(route["leaders_usergroup"]) for route in routes if route.get("leaders_usergroup")]
    if not named and not groups:
        named = config.leaders or [*config.admins, *config.bootstrap_admins]
        groups = [config.leaders_usergroup] if config.leaders_usergroup else []
    mentions = [f"<!subteam^{group}>" for group in dict.fromkeys(groups)]
    return mentions + [f"<@{user}>" for user in dict.fromkeys(named)][:20]


def _channel_locale(config: RuntimeConfig, channel: str) -> str:
    return config.language_of_channel(channel)


def _locale_of(config: RuntimeConfig, locale_for: Callable[[str], str], conversation: str) -> str:
    if conversation[:1] in {"U", "W"}:
        return locale_for(conversation)
    return _channel_locale(config, conversation)


# --------------------------------------------------------------------------- listeners


def _field(action: dict[str, Any], name: str, key: str | None = None) -> str:
    """A string from the element's state (`key` within an object such as selected_option)."""
    value = action.get(name)
    if key is not None:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""


def _apply(session: Session, deps: Deps, outcome: triage.Outcome, config: RuntimeConfig) -> None:
    flows.report_triaged(session, deps, outcome=outcome, config=config, now=deps.clock())


def _set_follow_up(
    session: Session, deps: Deps, *, report_id: int, actor: str, day: date, config: RuntimeConfig
) -> Report:
    report = reports.get_report(session, report_id)
    outcome = reminders.set_follow_up(
        session,
        report=report,
        actor=actor,
        day=day,
        config=config,
        zone=deps.timezone_for(report.owner_id),
        now=deps.clock(),
    )
    _apply(session, deps, outcome, config)
    return report


def _open_follow_up_form(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]
        config = deps.config()
        with deps.transaction() as session:
            try:
                triage.require_leader(config, actor)
                report = reports.get_report(session, codecs.REPORT.first(body) or 0)
                triage.require_leader(config, actor, report)
                if report.owner_id is None:
                    raise Conflict("no owner", code="no_owner")
            except FeedbotError as error:
                refuse(session, deps, body, error)
                return
        zone = deps.timezone_for(report.owner_id)
        view = build_follow_up_form(
            report,
            locale=deps.locale_for(actor),
            initial=flows.default_follow_up_day(report, config=config, zone=zone, now=deps.clock()),
        )
        client.views_open(trigger_id=body["trigger_id"], view=view)

    return handle


def _day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidValue("Pick a date.", field="date", code="follow_up_past") from None


def _snooze_choice(action: dict[str, Any]) -> SnoozeChoice:
    try:
        return SnoozeChoice(_field(action, "selected_option", "value"))
    except ValueError:
        raise InvalidValue("That does not look right; please try again.", code="generic") from None


def _follow_up_submitted(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        actor = body["user"]["id"]
        locale = deps.locale_for(actor)
        raw = read_follow_up_form(view.get("state", {}).get("values", {}))
        report_id = codecs.REPORT_FORM.decode(view) or 0
        try:
            day = _day(raw)
        except InvalidValue:
            ack(
                response_action="errors",
                errors={Field.FOLLOW_UP_DATE: t(locale, "error.follow_up_past")},
            )
            return
        if deferred(context):
            ack()
            return
        try:
            with deps.transaction() as session:
                _set_follow_up(
                    session, deps, report_id=report_id, actor=actor, day=day, config=deps.config()
                )
        except FeedbotError as error:
            ack(response_action="errors", errors={Field.FOLLOW_UP_DATE: explain(error, locale)})
            return
        ack()

    return handle


def _follow_up_picked(deps: Deps) -> Any:
    """The date picker offered after a claim: picking a date sets the follow-up."""

    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actor = body["user"]["id"]
        action = codecs.pressed(body)
        report_id = parse_follow_up_block(_field(action, "block_id"))
        with refusing(deps, body) as session:
            day = _day(_field(action, "selected_date"))
            report = _set_follow_up(
                session,
                deps,
                report_id=report_id or 0,
                actor=actor,
                day=day,
                config=deps.config(),
            )
            text = t(
                deps.locale_for(actor),
                "follow_up.set",
                ref=report.reference,
                date=slack_date(report.follow_up_at or deps.clock()),
            )
            tell(session, deps, body, text)

    return handle


def _reminder_of(body: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    action = codecs.pressed(body)
    ids = parse_reminder_block(_field(action, "block_id"))
    if ids is None:
        raise Conflict("That reminder is gone.")
    return action, ids[0], ids[1]


def _snoozed(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actor = body["user"]["id"]
        config = deps.config()
        now = deps.clock()
        with refusing(deps, body) as session:
            action, report_id, reminder_id = _reminder_of(body)
            choice = _snooze_choice(action)
            zone = deps.timezone_for(actor)
            until = reminders.snooze_until(
                choice, now=now, hours=WorkingHours.from_config(config), zone=zone
            )
            _reminder, message = reminders.reminder_message(
                session, reminder_id=reminder_id, report_id=report_id, recipient=actor
            )
            report = reports.get_report(session, report_id)
            outcome = reminders.snooze(
                session, report=report, actor=actor, until=until, zone=zone, now=now
            )
            _apply(session, deps, outcome, config)
            note = t(deps.locale_for(actor), "reminder.snoozed", until=slack_date(until))
            delivery.edit_sent(
                session, message=message, edit=build_note(note), now=now, purpose="reminder_update"
            )

    return handle


def _handed_over(deps: Deps) -> Any:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actor = body["user"]["id"]
        config = deps.config()
        now = deps.clock()
        with refusing(deps, body) as session:
            action, report_id, reminder_id = _reminder_of(body)
            assignee = _field(action, "selected_user")
            _reminder, message = reminders.reminder_message(
                session, reminder_id=reminder_id, report_id=report_id, recipient=actor
            )
            report = reports.get_report(session, report_id)
            outcome = triage.assign(
                session,
                report=report,
                actor=actor,
                assignee=assignee,
                config=config,
                now=now,
                identities=deps.identities,
            )
            _apply(session, deps, outcome, config)
            note = t(deps.locale_for(actor), "reminder.handed_over", owner=assignee)
            delivery.edit_sent(
                session, message=message, edit=build_note(note), now=now, purpose="reminder_update"
            )

    return handle


def mine(session: Session, deps: Deps, *, user_id: str, locale: str) -> list[Any]:
    """Blocks for `/feedback mine`: a leader's open follow-ups and owed call backs."""
    if not deps.config().led_channels(user_id):
        return []
    follow_ups = reminders.open_follow_ups(session, owner_id=user_id, limit=MINE_FOLLOW_UPS)
    return build_my_follow_ups(follow_ups, locale=locale, now=deps.clock())
