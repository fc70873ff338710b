"""Small pieces every feature's listeners share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from slack_bolt import BoltContext
from sqlmodel import Session

from feedbot.core.attachments import IncomingFile
from feedbot.errors import FeedbotError
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.directory import Membership
from feedbot.slack.i18n import duration, has, number, t
from feedbot.slack.ids import DEFER_SUBMISSION, REPLAYED
from feedbot.slack.views.notices import build_plain

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


@contextmanager
def refusing(deps: Deps, body: dict[str, Any]) -> Iterator[Session]:
    """One transaction for what a button asks. A `FeedbotError` raised inside undoes it, and
    the person who pressed is told why (in their language) while the operator gets a log
    line; anything else goes on to the app's error handler."""
    try:
        with deps.transaction() as session:
            yield session
    except FeedbotError as error:
        # The failed work is undone by leaving its transaction (only its savepoint when
        # replayed from the inbox, whose own claim must survive); the answer is a new one.
        with deps.transaction() as session:
            refuse(session, deps, body, error)


def refuse(session: Session, deps: Deps, body: dict[str, Any], error: FeedbotError) -> None:
    """Explain a refused action to the person who tried it; log it for the operator."""
    actor = body["user"]["id"]
    actions = body.get("actions") or [{}]
    log.info("refused %s for %s: %s", actions[0].get("action_id"), actor, type(error).__name__)
    tell(session, deps, body, explain(error, deps.locale_for(actor)))


def explain(error: FeedbotError, locale: str, *, kept: bool = True) -> str:
    """The error in the reader's language where a translation exists.

    `kept=False` when what the person sent is not kept for them (a form or command refused
    after Slack had its answer): an error whose usual wording promises that it is then says
    to send it again (its `_resend` wording)."""
    if error.code and has(f"error.{error.code}"):
        params = {name: _shown(value, locale) for name, value in error.params.items()}
        key = f"error.{error.code}"
        if not kept and has(f"{key}_resend"):
            key = f"{key}_resend"
        return t(locale, key, **params)
    return str(error)


def _shown(value: Any, locale: str) -> Any:
    """Numbers and durations in an error, the reader's way."""
    if isinstance(value, timedelta):
        return duration(value, locale)
    if isinstance(value, int) and not isinstance(value, bool):
        return number(locale, value)
    return value


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


def incoming_files(raw: Any) -> list[IncomingFile]:
    """The files of a message or a `file_input`'s state (Slack file objects), as the domain
    takes them; anything that is not a file object is left out."""
    if not isinstance(raw, list):
        return []
    found = (IncomingFile.from_slack(item) for item in raw if isinstance(item, dict))
    return [item for item in found if item is not None]


def deferred(context: BoltContext) -> bool:
    """Hand a form submission that passed the checks Slack must hear about inside the request
    (`response_action: errors`) to the inbox. True when it was stored: the caller acks and
    stops, and an inbox worker replays the submission and does its work. False when there is
    no inbox to take it, or this is the inbox replaying it: do the work now."""
    store = context.get(DEFER_SUBMISSION)
    if store is None:
        return False
    store()
    return True


def replayed(context: BoltContext) -> bool:
    """Whether this is the inbox replaying a request that was checked when it came in: a
    check that asks Slack (channel membership) was done then and is not repeated."""
    return context.get(REPLAYED) is not None
