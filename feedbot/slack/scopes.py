"""Every Web API method and event feedbot uses, with the OAuth scope Slack documents for it.

This table is the one source of the manifest's scopes (`feedbot.slack.manifest`): a method
used in code but missing here is a method the app was never granted. The test bed's fake
Slack refuses any call the installed manifest does not cover, as Slack does (`missing_scope`),
and flags any method called that is not listed here.

Some methods need a different scope per kind of conversation (reading a public channel's
history needs `channels:history`, a DM's `im:history`); feedbot uses public channels, private
channels and direct messages, so it asks for each of those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Conversation(StrEnum):
    CHANNEL = "channel"
    """A public channel."""
    GROUP = "group"
    """A private channel."""
    IM = "im"
    """A direct message between one person and the bot."""


CONVERSATIONS_USED = (Conversation.CHANNEL, Conversation.GROUP, Conversation.IM)
"""Leadership and intake channels may be public or private; reporters talk to the bot by DM."""


@dataclass(frozen=True)
class Needs:
    """What one method needs: a fixed scope, or one per kind of conversation."""

    why: str
    scope: str | None = None
    per_conversation: dict[Conversation, str] = field(default_factory=dict)

    def scopes(self) -> set[str]:
        found = {self.scope} if self.scope else set()
        found |= {self.per_conversation[kind] for kind in CONVERSATIONS_USED if kind in self}
        return found

    def __contains__(self, kind: object) -> bool:
        return kind in self.per_conversation


_HISTORY = {
    Conversation.CHANNEL: "channels:history",
    Conversation.GROUP: "groups:history",
    Conversation.IM: "im:history",
}
_READ = {Conversation.CHANNEL: "channels:read", Conversation.GROUP: "groups:read"}
"""Only channels are checked (DMs with the bot always exist)."""

WEB_API: dict[str, Needs] = {
    "auth.test": Needs("checking the bot token at start; the workspace URL for links"),
    "chat.postMessage": Needs("cards, receipts, notices, reminders, digests", "chat:write"),
    "chat.postEphemeral": Needs("answers only the person who pressed a button sees", "chat:write"),
    "chat.update": Needs("keeping cards and reminders up to date", "chat:write"),
    "chat.delete": Needs(
        "deleting a second copy of a post a bot that died had still under way", "chat:write"
    ),
    "conversations.open": Needs("opening a DM to tell someone about their report", "im:write"),
    "conversations.history": Needs(
        "finding a post after an interrupted send", per_conversation=_HISTORY
    ),
    "conversations.replies": Needs(
        "finding a thread reply after an interrupted send", per_conversation=_HISTORY
    ),
    "conversations.info": Needs(
        "checking that feedbot is in a channel an admin or leader picks", per_conversation=_READ
    ),
    "conversations.members": Needs(
        "showing a similar report's text only to colleagues in the channel it was posted in",
        per_conversation=_READ,
    ),
    "users.info": Needs("each person's language and timezone", "users:read"),
    "users.list": Needs(
        "everyone's language and timezone at once, when Slack limits users.info", "users:read"
    ),
    "usergroups.users.list": Needs("leaders given as a Slack user group", "usergroups:read"),
    "views.open": Needs("the report form and triage forms"),
    "views.push": Needs("a settings form on top of the settings picker"),
    "views.update": Needs("the webhooks form, after a webhook is removed"),
    "views.publish": Needs("the Home tab"),
    "files.getUploadURLExternal": Needs(
        "the digest's chart and CSV; copies of a report's photos and files", "files:write"
    ),
    "files.completeUploadExternal": Needs(
        "the digest's chart and CSV; copies of a report's photos and files", "files:write"
    ),
    "files.info": Needs(
        "finding a reported file's download address (downloading `url_private` needs the same "
        "scope); the report form's file field",
        "files:read",
    ),
    "files.delete": Needs(
        "deleting feedbot's copies of a report's files when the report is purged or its "
        "reporter forgotten",
        "files:write",
    ),
}

EVENTS: dict[str, str | None] = {
    "app_home_opened": None,
    "app_uninstalled": None,
    "tokens_revoked": None,
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
}
"""Bot events the manifest subscribes to, with the scope Slack requires for each."""

OTHER_SCOPES: dict[str, str] = {
    "commands": "the /feedback command and the message shortcut",
}
"""Scopes that no single Web API method needs."""


def bot_scopes() -> list[str]:
    """The manifest's bot scopes: every scope the table above needs, sorted."""
    scopes = set(OTHER_SCOPES)
    for needs in WEB_API.values():
        scopes |= needs.scopes()
    scopes |= {scope for scope in EVENTS.values() if scope}
    return sorted(scopes)
