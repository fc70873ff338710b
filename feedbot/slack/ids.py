"""Every id that Block Kit builders write and listeners match, declared once."""

from __future__ import annotations

from enum import StrEnum

COMMAND = "/feedback"
INPUT = "value"
"""The action_id of every modal input: the block_id says which field it is."""
REPLAYED = "feedbot_inbox_entry"
"""Context key of a request replayed from the inbox (its entry's id)."""
DEFER_SUBMISSION = "feedbot_defer_submission"
"""Context key the inbox sets on a form submission being answered: a function that stores it
for the inbox workers (see `feedbot.slack.features.common.deferred`)."""


class Callback(StrEnum):
    REPORT_FORM = "report_form"
    REPORT_SHORTCUT = "report_to_leadership"
    REPLY_FORM = "reply_form"
    FORWARD_FORM = "forward_form"
    RESOLVE_FORM = "resolve_form"
    DUPLICATE_FORM = "duplicate_form"
    CALLED_FORM = "customer_called_form"
    FOLLOW_UP_FORM = "follow_up_form"
    SETTINGS_FORM = "settings_form"
    INCIDENT_REPLY_FORM = "incident_reply_form"
    INCIDENT_RESOLVE_FORM = "incident_resolve_form"
    INCIDENT_MERGE_FORM = "incident_merge_form"
    REPORTER_REPLY_FORM = "reporter_reply_form"
    WEBHOOKS_FORM = "webhooks_form"


class Action(StrEnum):
    ACKNOWLEDGE = "triage_acknowledge"
    CLAIM = "triage_claim"
    ASSIGN = "triage_assign"
    REPLY = "triage_reply"
    FORWARD = "triage_forward"
    RESOLVE = "triage_resolve"
    REOPEN = "triage_reopen"
    DUPLICATE = "triage_duplicate"
    REVEAL_CONTACT = "triage_reveal_contact"
    CUSTOMER_CALLED = "triage_customer_called"
    ME_TOO = "report_me_too"
    ME_TOO_INSTEAD = "report_me_too_instead"
    ADD_DETAILS = "report_add_details"
    OPEN_FORM = "report_open_form"
    FOLLOW_UP = "reminder_follow_up"
    FOLLOW_UP_PICK = "reminder_follow_up_pick"
    SNOOZE = "reminder_snooze"
    HAND_OVER = "reminder_hand_over"
    EDIT_SETTINGS = "admin_edit_settings"
    EDIT_WEBHOOKS = "admin_edit_webhooks"
    REMOVE_WEBHOOK = "admin_remove_webhook"
    INCIDENT_ACKNOWLEDGE = "incident_acknowledge"
    INCIDENT_REPLY = "incident_reply"
    INCIDENT_RESOLVE = "incident_resolve"
    INCIDENT_MERGE = "incident_merge"
    REPORTER_REPLY = "report_reporter_reply"
    DM_NEW_REPORT = "dm_new_report"
    DM_ABOUT_REPORT = "dm_about_report"


class Field(StrEnum):
    """Block ids of modal inputs; also the keys of validation errors."""

    TEXT = "text"
    CATEGORY = "category"
    LOCATION = "location"
    URGENCY = "urgency"
    CUSTOMERS = "customers"
    CALLBACK = "callback"
    CONTACT = "contact"
    ANONYMOUS = "anonymous"
    FILES = "files"
    NOTE = "note"
    CHANNEL = "channel"
    REFERENCE = "reference"
    FOLLOW_UP_DATE = "follow_up_date"
    SHARE = "share"
