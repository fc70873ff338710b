"""Database tables, one module per domain; import them from here.

`core` holds the naming convention, the shared enums and the tables every feature uses
(configuration, events, outbox, reports); later modules add their own tables.
"""

from feedbot.models.admin import AuditEntry, RevokedToken, SlackUser
from feedbot.models.attachments import Attachment, AttachmentState
from feedbot.models.core import (
    REFERENCE_OFFSET,
    ConfigEntry,
    DmDraft,
    MeToo,
    OutboxMessage,
    OutboxStatus,
    ProcessedEvent,
    Report,
    ReportSource,
    ReportStatus,
    ReportTerm,
    TimelineEntry,
    Urgency,
    metadata,
    utcnow,
)
from feedbot.models.digest import DigestRun, DigestSubscription
from feedbot.models.inbox import ARRIVAL, ARRIVALS_METADATA, InboxEntry, InboxStatus
from feedbot.models.incidents import IncidentGroup, IncidentReminder
from feedbot.models.reminders import Reminder, ReminderMessage
from feedbot.models.webhooks import Webhook, WebhookNonce

__all__ = [
    "ARRIVAL",
    "ARRIVALS_METADATA",
    "REFERENCE_OFFSET",
    "Attachment",
    "AttachmentState",
    "AuditEntry",
    "ConfigEntry",
    "DigestRun",
    "DigestSubscription",
    "DmDraft",
    "InboxEntry",
    "InboxStatus",
    "IncidentGroup",
    "IncidentReminder",
    "MeToo",
    "OutboxMessage",
    "OutboxStatus",
    "ProcessedEvent",
    "Reminder",
    "ReminderMessage",
    "Report",
    "ReportSource",
    "ReportStatus",
    "ReportTerm",
    "RevokedToken",
    "SlackUser",
    "TimelineEntry",
    "Urgency",
    "Webhook",
    "WebhookNonce",
    "metadata",
    "utcnow",
]
