"""Follow-up reminders and escalations: who is owed a nudge about which report, and when.

Three cycles run on a report, each a series of numbered steps:

- `ack`: a report nobody acknowledged within its response target is reminded in its card's
  thread, again every `reminder_interval`, `reminder_cap` times; the next step escalates. A
  critical report escalates as soon as it misses its target. Ends when acknowledged.
- `follow_up`: from its follow-up date the owner gets a direct message, repeated up to the
  cap, then escalated. A snooze, a new date or a new owner starts a new cycle.
- `callback`: while a customer waits for a call back, the owner is reminded every interval,
  from one working hour after they took the report until the call is recorded. No cap and no
  escalation: the customer is still waiting, and the owner is the one who can call.

Time counts in working time only (working days and hours minus holidays, `WorkingHours`),
in the recipient's own timezone: a channel reads the workspace's, a person their Slack one.
Messages go out only in the recipient's working hours, so a step due at night goes out in
the morning.

Nothing assumes the scan runs on time. Each step's due moment follows from what was actually
sent before: a `reminder` row records when it went out and when its successor is due (one
interval of working time later, in its recipient's zone). A scan after an outage sends each
overdue step once, not a burst, and the next one an interval later. The same columns let the
scan's queries select almost exactly the reports with a step due (`_candidates`), so a scan
costs what is due, not what is open.

Exactly once: a step is the unique key `(report, kind, sequence)`. `claim` inserts its row
(`ON CONFLICT DO NOTHING`) first, which takes the write lock on SQLite and the key on
PostgreSQL, then locks and re-reads the report and checks the step is still due; the caller
queues its messages in that same transaction. A second process finds the row and skips; an
acknowledgement, resolution or snooze that committed first makes the re-check fail.

`report.snoozed_until` holds back the owner's reminders: a snooze sets it, and so does a new
owner taking the report (one working hour, see `QUIET_FOR_NEW_OWNER`). `report.escalated_at`
is the latest escalation and ends the acknowledgement cycle.

Incident groups have the `ack` cycle too, in their card's thread (`groups`); the reports in
a group have none of their own.
"""

from feedbot.core.reminders.actions import (
    QUIET_FOR_NEW_OWNER,
    HistoryItem,
    SnoozeChoice,
    history,
    open_follow_ups,
    quiet_for_new_owner,
    reminder_message,
    sent_messages,
    set_follow_up,
    snooze,
    snooze_until,
    withdraw_stale,
)
from feedbot.core.reminders.groups import (
    ClaimedGroup,
    GroupDue,
    claim_group,
    find_due_groups,
    group_due_steps,
    group_history,
    most_urgent,
    sent_group_messages,
    withdraw_stale_group,
)
from feedbot.core.reminders.scan import Claimed, attach_messages, claim, find_due
from feedbot.core.reminders.steps import (
    SEND_ORDER,
    Due,
    Kind,
    Rules,
    Sent,
    ZoneFor,
    callback_anchor,
    due_steps,
    follow_up_anchor,
)

__all__ = [
    "QUIET_FOR_NEW_OWNER",
    "SEND_ORDER",
    "Claimed",
    "ClaimedGroup",
    "Due",
    "GroupDue",
    "HistoryItem",
    "Kind",
    "Rules",
    "Sent",
    "SnoozeChoice",
    "ZoneFor",
    "attach_messages",
    "callback_anchor",
    "claim",
    "claim_group",
    "due_steps",
    "find_due",
    "find_due_groups",
    "follow_up_anchor",
    "group_due_steps",
    "group_history",
    "history",
    "most_urgent",
    "open_follow_ups",
    "quiet_for_new_owner",
    "reminder_message",
    "sent_group_messages",
    "sent_messages",
    "set_follow_up",
    "snooze",
    "snooze_until",
    "withdraw_stale",
    "withdraw_stale_group",
]
