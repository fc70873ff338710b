"""Outgoing webhooks: report events for ticket systems, signed, through the durable outbox.

An admin adds a webhook (a URL and the events it wants); every chosen event about a report
queues one outbox entry per webhook in the same transaction as the change, so an event is
sent if and only if the change was stored. Entries go to the conversation `webhook:{id}`,
one lane per report: a receiver gets each report's events in order, one failing receiver
waits alone, and Slack's messages never wait for any receiver (the Slack sender does not
claim webhook entries at all; `feedbot.slack.webhook_sender` delivers them).

A body names nobody: no reporter (named or anonymous), no *me too*, no leader, no customer
contact. Reports in a confidential category are never sent. The body is versioned
(`version`); fields may be added within a version, never removed or changed.

Signatures follow Slack's scheme: HMAC-SHA256 with the webhook's secret over
`v1:{timestamp}:{body}`, sent as `X-Feedbot-Signature: v1=<hex>` with
`X-Feedbot-Request-Timestamp`. A ticket system calling back signs the same way with the
same secret (see `verify`).
"""

from feedbot.core.webhooks.callbacks import (
    MAX_AUTHOR,
    MAX_COMMENT,
    actor_of,
    comment,
    find_report,
    is_actor,
    resolve,
)
from feedbot.core.webhooks.events import (
    build_body,
    emit,
    emit_outcome,
    report_fields,
)
from feedbot.core.webhooks.health import (
    Health,
    describe,
    health,
)
from feedbot.core.webhooks.receivers import (
    CONVERSATION,
    EVENTS,
    MAX_URL,
    METHOD,
    PING,
    VERSION,
    Added,
    add,
    all_webhooks,
    check_url,
    conversation_of,
    event_for,
    get,
    new_secret,
    parse_events,
    remove,
    secret_of,
    subscribed,
    webhook_id_of,
)
from feedbot.core.webhooks.sending import (
    Attempt,
    post,
    retry_after,
)
from feedbot.core.webhooks.signatures import (
    MAX_REQUEST_AGE,
    NONCE_KEPT,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_HEADER,
    Refused,
    signature,
    signed_headers,
    verify,
)

__all__ = [
    "CONVERSATION",
    "EVENTS",
    "MAX_AUTHOR",
    "MAX_COMMENT",
    "MAX_REQUEST_AGE",
    "MAX_URL",
    "METHOD",
    "NONCE_KEPT",
    "PING",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "VERSION",
    "WEBHOOK_HEADER",
    "Added",
    "Attempt",
    "Health",
    "Refused",
    "actor_of",
    "add",
    "all_webhooks",
    "build_body",
    "check_url",
    "comment",
    "conversation_of",
    "describe",
    "emit",
    "emit_outcome",
    "event_for",
    "find_report",
    "get",
    "health",
    "is_actor",
    "new_secret",
    "parse_events",
    "post",
    "remove",
    "report_fields",
    "resolve",
    "retry_after",
    "secret_of",
    "signature",
    "signed_headers",
    "subscribed",
    "verify",
    "webhook_id_of",
]
