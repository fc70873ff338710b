"""One outbox entry's call to Slack's Web API, and what Slack's answers mean for it.

Every post carries message metadata naming its outbox entry (`METADATA_EVENT`), so when an
attempt's outcome is unknown the sender can look for it in the conversation before posting
again (`find_posted`). Which errors are final and which leave the outcome open is decided
here, next to the calls, from Slack's documentation of each method.
"""

from __future__ import annotations

import base64
import gzip
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from feedbot.models import OutboxMessage
from feedbot.slack import files

log = logging.getLogger(__name__)

METADATA_EVENT = "feedbot_outbox"
RECHECK_PAGES = 20
"""How many pages (of 200 messages) of a conversation to search for an earlier attempt."""

UNCERTAIN_ERRORS = frozenset({"fatal_error", "internal_error", "request_timeout"})
"""Answers after which Slack may have posted the message anyway (its docs say so for
`fatal_error`); a 5xx counts too. The retry of a post then checks before posting again."""

PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_arguments",
        "invalid_metadata_format",
        "user_not_found",
        "users_not_found",
        "cannot_dm_bot",
        "user_disabled",
        "account_inactive",
        "cant_update_message",
        "edit_window_closed",
        "message_not_found",
        "thread_not_found",
        "restricted_action",
        "missing_scope",
        "not_allowed_token_type",
        "msg_blocks_too_long",
        "too_many_blocks",
        "invalid_blocks_format",
        "view_too_large",
    }
)


def find_posted(
    client: WebClient, entry: OutboxMessage, payload: dict[str, Any]
) -> tuple[str, str] | None:
    """The (channel, ts) of an earlier attempt of `entry` that Slack did accept, if any.

    Pages through the conversation (or thread) since the entry was queued: the retry may
    come long after the first attempt, behind more than one page of newer messages.
    """
    assert entry.id is not None
    posts = _posts_of(client, entry.id, since=entry.created_at.timestamp(), payload=payload)
    # The first to land: a dead sender's late call may have made another, which
    # `remove_copies` deletes.
    first = min(posts, key=float, default=None)
    return None if first is None else (payload["channel"], first)


def remove_copies(client: WebClient, payload: dict[str, Any]) -> dict[str, Any]:
    """Delete the posts of outbox entry `payload["copies_of"]` but the one it recorded
    (`kept`). A sender that died mid-call may have had its post land after the entry was
    taken over and rechecked; `REMOVE_COPIES` says when this runs."""
    entry_id = int(payload["copies_of"])
    copies = [
        ts
        for ts in _posts_of(client, entry_id, since=float(payload["since"]), payload=payload)
        if ts != payload["kept"]
    ]
    for ts in copies:
        try:
            client.chat_delete(channel=payload["channel"], ts=ts)
        except SlackApiError as exc:
            if exc.response.get("error") != "message_not_found":  # deleted meanwhile
                raise
    if copies:
        log.warning(
            "outbox #%s: deleted %s copies a call that landed late posted", entry_id, len(copies)
        )
    return {"channel": payload["channel"], "removed": len(copies)}


def _posts_of(
    client: WebClient, entry_id: int, *, since: float, payload: dict[str, Any]
) -> Iterator[str]:
    """The `ts` of each post of outbox entry `entry_id` in the conversation (or thread) of
    `payload`, among those since a minute before `since` (epoch seconds)."""
    channel = payload["channel"]
    oldest = f"{since - 60:.6f}"
    cursor: str | None = None
    for _ in range(RECHECK_PAGES):
        if "thread_ts" in payload:
            response = client.conversations_replies(
                channel=channel,
                ts=payload["thread_ts"],
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
        else:
            response = client.conversations_history(
                channel=channel,
                oldest=oldest,
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
        messages: list[dict[str, Any]] = response.get("messages") or []
        for message in messages:
            metadata = message.get("metadata") or {}
            if (
                float(message.get("ts") or 0) >= since - 60  # a thread's are all listed
                and metadata.get("event_type") == METADATA_EVENT
                and (metadata.get("event_payload") or {}).get("outbox_id") == entry_id
            ):
                yield str(message["ts"])
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return
    log.warning(
        "outbox #%s: searched %s pages, not back to when it was queued", entry_id, RECHECK_PAGES
    )


def retry_after(headers: dict[str, Any]) -> float:
    """Seconds from a `Retry-After` header in any letter case; 1 if absent or unreadable."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(float(raw), 1.0)
            except (TypeError, ValueError):
                return 1.0
    return 1.0


RESPONSE_URL = "response_url"
"""Outbox method of an answer to a slash command or button, posted to its `response_url`
(`payload["response_url"]`): it reaches the person wherever they typed, bot member or not."""

RESPONSE_URL_LIFETIME = timedelta(minutes=29)
"""How long after its answer was queued a command's `response_url` is still tried: Slack
takes 5 posts within 30 minutes of the command, which came before (by as long as it waited
in the inbox). One it refuses sooner is answered by DM all the same."""
ANSWER_PREFIX = "respond:"
"""An answer's outbox conversation: this, then the person's Slack id (each person's in
order)."""
RESPONSE_ONLY = ("response_url", "response_type", "replace_original", "delete_original")
"""Arguments of a `response_url` post that a message posted with chat.postMessage has not."""


def answer_conversation(user: str) -> str:
    return f"{ANSWER_PREFIX}{user}"[:64]


def as_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A `response_url` answer as chat.postMessage arguments (without its channel)."""
    return {key: value for key, value in payload.items() if key not in RESPONSE_ONLY}


FILE_UPLOAD = "files.upload_v2"
"""Outbox method of a file upload: `payload["content_gzip_base64"]` holds the file."""


RECHECK_METHODS = ("conversations.history", "conversations.replies")
"""What `find_posted` calls to look for an earlier attempt of a post."""

REMOVE_COPIES = "feedbot.remove_copies"
"""Outbox method of a second look for a post whose sender died mid-call and which was taken
over before that call could time out (see `feedbot.core.liveness`): the call may still land
after the post was rechecked. Due once it no longer can (`may_land_until`), it deletes every
copy but the one recorded (`remove_copies`)."""


def methods_called(method: str) -> tuple[str, ...]:
    """The Web API methods an outbox entry of `method` calls. Slack limits each method on its
    own, so a wait Slack asks for holds back only the entries that would call that method."""
    if method == RESPONSE_URL:
        return ()
    if method == FILE_UPLOAD:
        return ("files.getUploadURLExternal", "files.completeUploadExternal")
    if method == files.COPY_FILE:
        return ("files.info", "files.getUploadURLExternal", "files.completeUploadExternal")
    if method == REMOVE_COPIES:
        return (*RECHECK_METHODS, "chat.delete")
    return (method,)


def limited_method(client: WebClient, exc: SlackApiError) -> str | None:
    """The Web API method an error came from (its URL ends with it), or None if the call was
    not to the Web API (a `response_url`)."""
    url = str(exc.response.api_url or "")
    if not url.startswith(client.base_url):
        return None
    return url.removeprefix(client.base_url).strip("/") or None


def call_api(client: WebClient, method: str, payload: dict[str, Any]) -> Any:
    """One Web API call for an outbox entry. A file upload is slack_sdk's `files_upload_v2`
    (three calls: get an upload URL, upload, complete), with the content stored gzipped and
    base64-encoded in the payload: the outbox stores JSON, and a week's CSV shrinks from
    megabytes to a fraction.

    An upload carries no message metadata, so after a crash mid-upload (outcome unknown)
    it is not rechecked like a post: at worst the file is attached twice; the digest's own
    message is still posted once. The same holds for a copy of a report's file
    (`files.COPY_FILE`, see `feedbot.slack.files`), which the sender settles with
    `files.after_copy`; `files.DELETE_FILE` deletes one of feedbot's copies."""
    if method == RESPONSE_URL:
        return _respond(client, payload)
    if method == files.COPY_FILE:
        return files.copy_file(client, payload)
    if method == files.DELETE_FILE:
        return files.delete_file(client, payload)
    if method == REMOVE_COPIES:
        return remove_copies(client, payload)
    if method != FILE_UPLOAD:
        return client.api_call(method, json=payload)
    arguments = dict(payload)
    content = gzip.decompress(base64.b64decode(arguments.pop("content_gzip_base64")))
    return client.files_upload_v2(file=content, **arguments)


def _respond(client: WebClient, payload: dict[str, Any]) -> Any:
    """Post to a `response_url` (the URL travels in the payload, the message is the rest)."""
    from slack_sdk.webhook import WebhookClient

    url = str(payload.get("response_url") or "")
    body = {key: value for key, value in payload.items() if key != "response_url"}
    answer = WebhookClient(url, timeout=client.timeout).send_dict(body)
    if answer.status_code >= 500:
        raise OSError(f"response_url answered {answer.status_code}")
    refused = answer.status_code >= 400 or '"ok": false' in (answer.body or "").replace(
        '"ok":false', '"ok": false'
    )
    if refused:
        from slack_sdk.web import SlackResponse

        response = SlackResponse(
            client=client,
            http_verb="POST",
            api_url=url,
            req_args={},
            data={"ok": False, "error": answer.body or "response_url_refused"},
            headers=answer.headers,
            status_code=answer.status_code,
        )
        raise SlackApiError("response_url refused the answer", response)  # type: ignore[no-untyped-call]
    return {"ok": True}
