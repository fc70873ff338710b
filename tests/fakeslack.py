"""A fake Slack Web API server for end-to-end tests.

Slack is unreachable where the tests run, so the bot's real `slack_sdk.WebClient` is pointed
at this server (`base_url=fake.base_url`). It answers the methods feedbot uses with Slack's
shapes, keeps the workspace state those answers imply (messages, threads, DMs, views,
uploads), records every call, injects faults on demand, checks every message and view
against Block Kit's limits, and holds every method to its rate-limit tier (`METHOD_TIERS`). A payload real Slack would reject is answered with Slack's error
*and* recorded in `violations`, so a test that never looks at the error still fails in
`assert_no_violations()`.

Standard library only, so the fake cannot drift with the SDK it is meant to test.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Json = dict[str, Any]

# Arguments that slack_sdk sends as JSON strings in form bodies; decoded before recording.
TRIGGER_LIFETIME = 3.0
"""Seconds a `trigger_id` opens a view for, after the action that made it."""
_JSON_ARGS = ("blocks", "view", "metadata", "attachments", "files")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]+")
# Control sequences that notify: users, @channel/@here/@everyone, user groups.
_MENTION = re.compile(
    r"<(@[UW][A-Z0-9]+|!(?:channel|here|everyone)|!subteam\^[A-Z0-9]+)(?:\|[^>]*)?>"
)
_TRUE = frozenset({"1", "true", "True", "yes"})

RESPONSE_URL_USES = 5
RESPONSE_URL_LIFETIME = 30 * 60.0
"""A response_url takes 5 posts within 30 minutes of the request that brought it."""
RATE_WINDOW = 60.0
"""Seconds over which a method's tier counts its calls: Slack's tiers are per minute."""
TIER_LIMITS = {1: 1, 2: 20, 3: 50, 4: 100}
"""Calls per minute each tier allows at least (Slack's "Rate limits" page; "1+", "20+"...).
The fake allows exactly that: a bot that keeps within it keeps within Slack."""
METHOD_TIERS = {
    "apps.connections.open": 3,  # Tier 1 on the older method page, Tier 3 in the newer docs
    "usergroups.users.list": 2,
    "users.list": 2,
    "reactions.remove": 2,
    "chat.update": 3,
    "chat.delete": 3,
    "conversations.open": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "conversations.info": 3,
    "files.delete": 3,
    "reactions.add": 3,
    "chat.postEphemeral": 4,
    "conversations.members": 4,
    "users.info": 4,
    "views.open": 4,
    "views.push": 4,
    "views.update": 4,
    "views.publish": 4,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "files.info": 4,
}
"""Each method's documented tier, per app and workspace. The methods of Slack's "special"
tier are not here: `chat.postMessage` is paced per channel (`channel_rate_limit`; its
workspace-wide limit is "several hundred messages per minute", no number), and `auth.test`
and `chat.getPermalink` allow "hundreds of requests per minute"."""


@dataclass
class Call:
    """One Web API call as the fake saw and answered it."""

    method: str
    args: dict[str, Any]
    status: int
    response: dict[str, Any]


# --------------------------------------------------------------------------- Block Kit rules


@dataclass(frozen=True)
class _Rule:
    """Limits of one block, element or composition object, as data rather than an if-chain."""

    plain: tuple[tuple[str, int], ...] = ()  # text-object fields that must be plain_text
    mixed: tuple[tuple[str, int], ...] = ()  # text-object fields where mrkdwn is fine too
    strings: tuple[tuple[str, int], ...] = ()  # plain string fields
    lists: tuple[tuple[str, int, int], ...] = ()  # list fields and their (min, max) length
    required: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these fields must be present
    options: tuple[int, int] | None = None  # (min, max) options for choice elements
    mrkdwn_options: bool = False  # checkboxes/radio buttons may label options with mrkdwn


_PLACEHOLDER = (("placeholder", 150),)
_PICKER = _Rule(plain=_PLACEHOLDER)
_CHOICE = _Rule(options=(1, 10), mrkdwn_options=True)

_BLOCK_RULES: dict[str, _Rule] = {
    "section": _Rule(
        mixed=(("text", 3000),), lists=(("fields", 1, 10),), one_of=("text", "fields")
    ),
    "header": _Rule(plain=(("text", 150),), required=("text",)),
    "divider": _Rule(),
    "actions": _Rule(lists=(("elements", 1, 25),), required=("elements",)),
    "context": _Rule(lists=(("elements", 1, 10),), required=("elements",)),
    "input": _Rule(plain=(("label", 2000), ("hint", 2000)), required=("label", "element")),
    "image": _Rule(
        plain=(("title", 2000),),
        strings=(("image_url", 3000), ("alt_text", 2000)),
        required=("alt_text",),
        one_of=("image_url", "slack_file"),
    ),
    "rich_text": _Rule(required=("elements",)),
    "file": _Rule(strings=(("external_id", 255),), required=("external_id", "source")),
    "video": _Rule(
        plain=(("title", 200), ("description", 200)),
        strings=(("video_url", 3000), ("thumbnail_url", 3000), ("alt_text", 2000)),
        required=("title", "video_url", "thumbnail_url", "alt_text"),
    ),
    "markdown": _Rule(strings=(("text", 12000),), required=("text",)),
}

_ELEMENT_RULES: dict[str, _Rule] = {
    "button": _Rule(
        plain=(("text", 75),),
        strings=(("value", 2000), ("url", 3000), ("accessibility_label", 75)),
        required=("text",),
    ),
    "static_select": _Rule(plain=_PLACEHOLDER, options=(1, 100)),
    "multi_static_select": _Rule(plain=_PLACEHOLDER, options=(1, 100)),
    "checkboxes": _CHOICE,
    "radio_buttons": _CHOICE,
    "overflow": _Rule(options=(2, 5)),
    "plain_text_input": _PICKER,
    "number_input": _Rule(plain=_PLACEHOLDER, required=("is_decimal_allowed",)),
    "image": _Rule(
        strings=(("image_url", 3000), ("alt_text", 2000)),
        required=("alt_text",),
        one_of=("image_url", "slack_file"),
    ),
    **dict.fromkeys(
        (
            *("users_select", "multi_users_select", "channels_select", "multi_channels_select"),
            *("conversations_select", "multi_conversations_select", "external_select"),
            *("multi_external_select", "datepicker", "timepicker", "datetimepicker"),
            *("email_text_input", "url_text_input", "rich_text_input", "file_input"),
        ),
        _PICKER,
    ),
}

_CONFIRM_RULE = _Rule(
    plain=(("title", 100), ("confirm", 30), ("deny", 30)),
    mixed=(("text", 300),),
    required=("title", "text", "confirm", "deny"),
)
_VIEW_RULE = _Rule(
    plain=(("title", 24), ("submit", 24), ("close", 24)),
    strings=(("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)),
)
_STYLES = (None, "primary", "danger")


class _Checker:
    """Collects the Block Kit violations of one payload; every message names the method."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[str] = []
        self.error: str | None = None  # a more specific Slack error than the surface's default
        self._block_ids: set[str] = set()

    def bad(self, rule: str, error: str | None = None) -> None:
        self.problems.append(f"{self.where}: {rule}")
        if error is not None and self.error is None:
            self.error = error

    # -- payloads

    def message(self, payload: Json, *, fallback: bool) -> None:
        """Message rules; `fallback` is whether the method needs top-level text with blocks."""
        text = payload.get("text")
        if text is not None and not isinstance(text, str):
            self.bad("text must be a string")
        elif isinstance(text, str) and len(text) > 40_000:
            self.bad(f"text {len(text)} > 40000", "msg_too_long")
        blocks = payload.get("blocks")
        if blocks in (None, "", []):
            return
        self.blocks(blocks, 50, "message")
        if fallback and not text:
            self.bad("missing fallback text (top-level text is required with blocks)")

    def view(self, view: Any) -> None:
        if not isinstance(view, dict):
            self.bad("view must be a JSON object")
            return
        kind = view.get("type")
        if kind not in ("modal", "home"):
            self.bad(f"view type {kind!r} is not modal or home")
        size = len(json.dumps(view).encode())
        if size > 250_000:
            self.bad(f"view JSON {size} bytes > 250000", "view_too_large")
        self.apply(_VIEW_RULE, view, "view")
        if kind == "modal" and "title" not in view:
            self.bad("modal needs a title")
        if "blocks" not in view:
            self.bad("view needs blocks")
            return
        self.blocks(view["blocks"], 100, str(kind))
        blocks = view["blocks"] if isinstance(view["blocks"], list) else []
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if kind == "modal" and has_input and "submit" not in view:
            self.bad("modal with input blocks needs submit")

    # -- blocks

    def blocks(self, blocks: Any, limit: int, surface: str) -> None:
        if not isinstance(blocks, list):
            self.bad("blocks must be a list")
            return
        if len(blocks) > limit:
            self.bad(f"{len(blocks)} blocks > {limit}")
        for i, block in enumerate(blocks):
            self.block(block, f"blocks[{i}]", surface)

    def block(self, block: Any, path: str, surface: str) -> None:
        if not isinstance(block, dict):
            self.bad(f"{path} must be an object")
            return
        kind = block.get("type")
        rule = _BLOCK_RULES.get(kind) if isinstance(kind, str) else None
        if rule is None:
            self.bad(f"{path} unknown block type {kind!r}")
            return
        path = f"{path} {kind}"
        block_id = block.get("block_id")
        if block_id is not None:
            self.string(block_id, f"{path} block_id", 255)
            if isinstance(block_id, str) and block_id in self._block_ids:
                self.bad(f"{path} duplicate block_id {block_id!r}")
            self._block_ids.add(str(block_id))
        self.apply(rule, block, path)
        action_ids: set[str] = set()
        if kind == "section":
            for i, item in enumerate(self.items(block, "fields")):
                self.text(item, f"{path} fields[{i}]", 2000, plain=False)
            if "accessory" in block:
                self.element(block["accessory"], f"{path} accessory", action_ids)
        elif kind == "actions":
            for i, item in enumerate(self.items(block, "elements")):
                self.element(item, f"{path} elements[{i}]", action_ids)
        elif kind == "context":
            for i, item in enumerate(self.items(block, "elements")):
                if isinstance(item, dict) and item.get("type") == "image":
                    self.element(item, f"{path} elements[{i}]", action_ids)
                else:
                    self.text(item, f"{path} elements[{i}]", 3000, plain=False)
        elif kind == "input":
            if surface == "message":
                self.bad(f"{path} input blocks are only allowed in modals and home tabs")
            if "element" in block:
                self.element(block["element"], f"{path} element", action_ids)

    @staticmethod
    def items(obj: Json, name: str) -> list[Any]:
        value = obj.get(name)
        return value if isinstance(value, list) else []

    # -- elements and composition objects

    def element(self, element: Any, path: str, action_ids: set[str]) -> None:
        if not isinstance(element, dict):
            self.bad(f"{path} must be an object")
            return
        kind = element.get("type")
        rule = _ELEMENT_RULES.get(kind) if isinstance(kind, str) else None
        if rule is None:
            self.bad(f"{path} unknown element type {kind!r}")
            return
        path = f"{path} {kind}"
        self.apply(rule, element, path)
        action_id = element.get("action_id")
        if action_id is not None:
            self.string(action_id, f"{path} action_id", 255)
            if isinstance(action_id, str) and action_id in action_ids:
                self.bad(f"{path} duplicate action_id {action_id!r} in one block")
            action_ids.add(str(action_id))
        if element.get("style") not in _STYLES:
            self.bad(f"{path} style {element.get('style')!r} is not primary or danger")
        if "confirm" in element:
            self.confirm(element["confirm"], f"{path} confirm")
        if rule.options is not None:
            self.choices(element, path, rule)
        if kind == "plain_text_input":
            self.text_input(element, path)
        if kind == "file_input":
            most = element.get("max_files")
            if most is not None and (not isinstance(most, int) or not 1 <= most <= 10):
                self.bad(f"{path} max_files {most!r} not in 1..10")
            types = element.get("filetypes")
            if types is not None and not (
                isinstance(types, list) and all(isinstance(t, str) for t in types)
            ):
                self.bad(f"{path} filetypes must be a list of file extensions")

    def confirm(self, obj: Any, path: str) -> None:
        if not isinstance(obj, dict):
            self.bad(f"{path} must be an object")
            return
        self.apply(_CONFIRM_RULE, obj, path)
        if obj.get("style") not in _STYLES:
            self.bad(f"{path} style {obj.get('style')!r} is not primary or danger")

    def choices(self, element: Json, path: str, rule: _Rule) -> None:
        low, high = rule.options or (0, 0)
        options: list[Any] = []
        if "option_groups" in element and "options" not in element:
            groups = element["option_groups"]
            if not isinstance(groups, list) or not 1 <= len(groups) <= 100:
                self.bad(f"{path} option_groups must be a list of 1..100 groups")
                return
            for g, group in enumerate(groups):
                group = group if isinstance(group, dict) else {}
                self.text(group.get("label"), f"{path} option_groups[{g}] label", 75, plain=True)
                self.count(group.get("options"), f"{path} option_groups[{g}] options", 1, 100)
                options.extend(self.items(group, "options"))
        else:
            if not self.count(element.get("options"), f"{path} options", low, high):
                return
            options = element["options"]
        for i, option in enumerate(options):
            self.option(option, f"{path} options[{i}]", mrkdwn=rule.mrkdwn_options)
        keys = [self.option_key(option) for option in options]
        initial = element.get("initial_option")
        if initial is not None and self.option_key(initial) not in keys:
            self.bad(f"{path} initial_option is not one of the options")
        chosen = element.get("initial_options")
        if isinstance(chosen, list) and any(self.option_key(o) not in keys for o in chosen):
            self.bad(f"{path} initial_options are not all among the options")

    def option(self, option: Any, path: str, *, mrkdwn: bool) -> None:
        if not isinstance(option, dict):
            self.bad(f"{path} must be an object")
            return
        self.text(option.get("text"), f"{path} text", 75, plain=not mrkdwn)
        if "description" in option:
            self.text(option["description"], f"{path} description", 75, plain=not mrkdwn)
        if "value" not in option:
            self.bad(f"{path} needs value")
        else:
            self.string(option["value"], f"{path} value", 150)
        if "url" in option:
            self.string(option["url"], f"{path} url", 3000)

    @staticmethod
    def option_key(option: Any) -> tuple[Any, Any]:
        """Slack matches initial options by value and visible text."""
        if not isinstance(option, dict):
            return (None, None)
        text = option.get("text")
        return (option.get("value"), text.get("text") if isinstance(text, dict) else None)

    def text_input(self, element: Json, path: str) -> None:
        lengths = {name: element.get(name) for name in ("min_length", "max_length")}
        for name, value in lengths.items():
            if value is not None and (not isinstance(value, int) or not 0 <= value <= 3000):
                self.bad(f"{path} {name} {value} > 3000")
        initial, most = element.get("initial_value"), lengths["max_length"]
        if isinstance(initial, str) and isinstance(most, int) and len(initial) > most:
            self.bad(f"{path} initial_value {len(initial)} > max_length {most}")

    # -- primitives

    def apply(self, rule: _Rule, obj: Json, path: str) -> None:
        for name in rule.required:
            if obj.get(name) in (None, "", []):
                self.bad(f"{path} needs {name}")
        if rule.one_of and not any(name in obj for name in rule.one_of):
            self.bad(f"{path} needs {' or '.join(rule.one_of)}")
        for name, limit in rule.plain:
            if name in obj:
                self.text(obj[name], f"{path} {name}", limit, plain=True)
        for name, limit in rule.mixed:
            if name in obj:
                self.text(obj[name], f"{path} {name}", limit, plain=False)
        for name, limit in rule.strings:
            if name in obj:
                self.string(obj[name], f"{path} {name}", limit)
        for name, low, high in rule.lists:
            if name in obj:
                self.count(obj[name], f"{path} {name}", low, high)

    def text(self, obj: Any, path: str, limit: int, *, plain: bool) -> None:
        if not isinstance(obj, dict):
            self.bad(f"{path} must be a text object")
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.bad(f"{path} type {kind!r} is not plain_text or mrkdwn")
        elif plain and kind != "plain_text":
            self.bad(f"{path} must be plain_text, not {kind}")
        value = obj.get("text")
        if not isinstance(value, str) or not value:
            self.bad(f"{path} is empty")
        elif len(value) > limit:
            self.bad(f"{path} {len(value)} > {limit}")

    def string(self, value: Any, path: str, limit: int) -> None:
        if not isinstance(value, str):
            self.bad(f"{path} must be a string")
        elif len(value) > limit:
            self.bad(f"{path} {len(value)} > {limit}")

    def count(self, value: Any, path: str, low: int, high: int) -> bool:
        if not isinstance(value, list):
            self.bad(f"{path} must be a list")
            return False
        if not low <= len(value) <= high:
            self.bad(f"{path} count {len(value)} not in {low}..{high}")
        return True


# --------------------------------------------------------------------------- scopes

# What each method needs, as Slack's method pages document it (bot tokens). Kept here, apart
# from feedbot's own table, so a wrong entry there cannot make the fake agree with it. A
# method whose scope depends on the conversation maps each kind to its scope.
_HISTORY = {
    "channel": "channels:history",
    "group": "groups:history",
    "im": "im:history",
    "mpim": "mpim:history",
}
_READ = {"channel": "channels:read", "group": "groups:read", "im": "im:read", "mpim": "mpim:read"}
METHOD_SCOPES: dict[str, str | dict[str, str] | None] = {
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.getPermalink": None,
    "conversations.open": {"im": "im:write", "mpim": "mpim:write"},
    "conversations.history": _HISTORY,
    "conversations.replies": _HISTORY,
    "conversations.info": _READ,
    "conversations.members": _READ,
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
    "views.open": None,
    "views.push": None,
    "views.update": None,
    "views.publish": None,
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "files.delete": "files:write",
    "files.info": "files:read",
    "reactions.add": "reactions:write",
    "reactions.remove": "reactions:write",
}


ALL_SCOPES = frozenset(
    scope
    for needs in METHOD_SCOPES.values()
    for scope in (needs.values() if isinstance(needs, dict) else [needs])
    if scope
)
"""Every scope of the table: for tests of the fake itself."""


def manifest_scopes() -> frozenset[str]:
    """The bot scopes an admin grants by installing feedbot's manifest as it is generated."""
    from feedbot.slack.manifest import build_manifest

    return frozenset(build_manifest()["oauth_config"]["scopes"]["bot"])


def declared_methods() -> frozenset[str]:
    """The Web API methods feedbot declares it calls (`feedbot.slack.scopes`)."""
    from feedbot.slack.scopes import WEB_API

    return frozenset(WEB_API)


# --------------------------------------------------------------------------- state records


class _ApiError(Exception):
    """Raised by a handler to answer a Slack-level error instead of a result."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        messages: list[str] | None = None,
        extra: Json | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.messages = messages or []
        self.extra = extra or {}


@dataclass
class _Fault:
    method: str
    times: int | None
    status: int
    error: str
    retry_after: int | None
    delay: float


@dataclass
class _Channel:
    id: str
    name: str
    is_private: bool = False
    bot_is_member: bool = True
    members: list[str] | None = None  # None: anyone may be addressed in it
    user: str | None = None  # the other party of a DM
    is_mpim: bool = False  # a group DM
    messages: list[Json] = field(default_factory=list)
    broadcasts: set[str] = field(default_factory=set)  # ts of replies also sent to the channel


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json_reply(status: int, body: Json, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(body).encode(), headers=headers or {})


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, int) and value != 0) or str(value) in _TRUE


def _ts_key(ts: Any) -> Decimal:
    try:
        return Decimal(str(ts))
    except InvalidOperation as exc:
        raise _ApiError("invalid_ts_oldest") from exc


def _tz_offset(tz: str) -> int:
    try:
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset else 0


def _multipart(content_type: str, raw: bytes) -> list[tuple[str, str | None, bytes]]:
    """(name, filename, content) of each part: enough for slack_sdk's and curl's bodies."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return []
    parts: list[tuple[str, str | None, bytes]] = []
    for chunk in raw.split(b"--" + match.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.partition(b"\r\n\r\n")
        header = head.decode("utf-8", "replace")
        name = re.search(r'[;\s]name="([^"]*)"', header)
        filename = re.search(r'filename="([^"]*)"', header)
        parts.append(
            (
                name.group(1) if name else "",
                filename.group(1) if filename else None,
                body.removesuffix(b"\r\n"),
            )
        )
    return parts


# --------------------------------------------------------------------------- the server


class FakeSlack:
    """An in-process Slack Web API: state, call log, fault injection and Block Kit checks."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        bot_user_id: str = "UBOT",
        bot_id: str = "B0BOT",
        team_id: str = "T0TEAM",
        domain: str = "frontline",
        channel_rate_limit: float | None = None,
        tier_limits: bool = True,
        clock: Callable[[], float] | None = None,
        scopes: frozenset[str] | None = None,
        serves_feedbot: bool = True,
    ) -> None:
        """`scopes` are what the app was granted (default: exactly the manifest's). With
        `serves_feedbot`, a call to a method feedbot does not declare is a violation; the
        fake's own tests, which call methods feedbot never uses, turn that off."""
        self.token = token
        self.scopes = manifest_scopes() if scopes is None else frozenset(scopes)
        self._declared = declared_methods() if serves_feedbot else None
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.domain = domain
        self.channel_rate_limit = channel_rate_limit
        self.tier_limits = tier_limits
        """Whether each method is held to its tier (`METHOD_TIERS`); only the fake's own
        tests of other things turn it off."""
        # Seconds since the epoch that message ts values follow; tests that drive the bot with a
        # fake clock pass it here so `oldest`/`latest` filters agree with the bot's idea of now.
        self.clock: Callable[[], float] = clock or time.time
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.files: list[dict[str, Any]] = []
        """Uploads completed through files.completeUploadExternal, in order."""
        self.downloads: list[dict[str, Any]] = []
        """Every request for a file's content: which file, and whether it was served."""
        self.images_shown: list[dict[str, Any]] = []
        """Image blocks of posted or updated messages that show a Slack-hosted file."""
        self.violations: list[str] = []
        # One re-entrant lock guards all state: the bot calls from several threads.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._last_us = 0
        self._users: dict[str, Json] = {}
        self._channels: dict[str, _Channel] = {}
        self._missing: set[str] = set()
        self._usergroups: dict[str, Json] = {}
        self._faults: list[_Fault] = []
        self._triggers_used: set[str] = set()
        self._triggers_issued: dict[str, float] = {}
        self.trigger_lifetime = TRIGGER_LIFETIME
        self._response_urls: dict[str, list[float]] = {}
        """URL -> [when it was issued (`clock`), posts it took]."""
        self.refused_responses: list[str] = []
        """Posts to a response_url Slack no longer takes (used up, or too old)."""
        self._uploads: dict[str, Json] = {}
        self._stored_files: dict[str, Json] = {}  # id -> {"file", "content", "deleted", ...}
        self._last_post: dict[str, float] = {}
        self._rate_limited = 0
        self._tier_calls: dict[str, deque[float]] = {}
        self.rate_limited_by: Counter[str] = Counter()
        """Calls answered 429 by their tier, per method."""
        self._revoked_tokens: set[str] = set()
        self._app_tokens: dict[str, Callable[[], str]] = {}
        self.add_user(bot_user_id, name="feedbot", real_name="Feedbot", is_bot=True)
        self._handlers: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "files.info": self._files_info,
            "files.delete": self._files_delete,
            "reactions.add": self._reactions,
            "reactions.remove": self._reactions,
        }

    # -- lifecycle

    def start(self) -> FakeSlack:
        """Serve on an ephemeral localhost port from a daemon thread, so tests never collide."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; injected delays are cut short so teardown never waits on them."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def _root(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self._root}/api/"

    def serve_socket_mode(self, app_token: str, new_url: Callable[[], str]) -> None:
        """Let the app-level token `app_token` (`xapp-…`) open Socket Mode connections: each
        `apps.connections.open` answers a fresh single-use URL from `new_url`, such as
        `tests.fakesocket.FakeSocketMode.new_url`."""
        with self._lock:
            self._app_tokens[app_token] = new_url

    def new_response_url(self) -> str:
        """A response_url to put into a crafted interaction payload; posts to it are recorded."""
        with self._lock:
            url = f"{self._root}/response/{next(self._ids)}"
            self._response_urls[url] = [self.clock(), 0]
            return url

    def new_trigger_id(self) -> str:
        """A fresh trigger_id for crafted interaction payloads, which expires as Slack's do,
        `trigger_lifetime` seconds from now (any unused string works too, without expiring)."""
        trigger = f"{next(self._ids)}.{self.team_id}.faketrigger"
        with self._lock:
            self._triggers_issued[trigger] = time.monotonic()
        return trigger

    # -- workspace setup

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        locale: str = "en-US",
        tz: str = "Europe/Berlin",
        is_bot: bool = False,
        deleted: bool = False,
    ) -> None:
        name = name or user_id.lower()
        with self._lock:
            self._users[user_id] = {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "real_name": real_name or name,
                "is_bot": is_bot,
                "deleted": deleted,
                "tz": tz,
                "tz_offset": _tz_offset(tz),
                "locale": locale,
            }

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        is_private: bool = False,
        bot_is_member: bool = True,
        members: list[str] | None = None,
    ) -> None:
        with self._lock:
            self._missing.discard(channel_id)
            old = self._channels.get(channel_id)
            self._channels[channel_id] = _Channel(
                channel_id,
                name or channel_id.lower(),
                is_private,
                bot_is_member,
                list(members) if members is not None else None,
                messages=old.messages if old else [],  # re-adding models a membership change
            )

    def remove_channel(self, channel_id: str) -> None:
        with self._lock:
            self._channels.pop(channel_id, None)
            self._missing.add(channel_id)

    def add_usergroup(self, group_id: str, users: list[str], handle: str = "") -> None:
        with self._lock:
            self._usergroups[group_id] = {
                "handle": handle or group_id.lower(),
                "users": list(users),
            }

    def add_message(
        self, channel: str, text: str, *, user: str, thread_ts: str | None = None
    ) -> str:
        """Seed a message a human wrote (events tests deliver elsewhere); returns its ts."""
        with self._lock:
            ch = self._channel(channel, member=False)
            thread = self._thread_parent(ch, thread_ts)
            return str(self._post(ch, text=text, thread_ts=thread, user=user, bot_id=None)["ts"])

    def add_file(
        self,
        user: str,
        name: str,
        content: bytes,
        *,
        mimetype: str = "image/jpeg",
        filetype: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """A file `user` uploads (to attach to a message or put in a form's file field); the
        file object as Slack puts it in `files[]`. `size` may claim more than `content` holds
        (a 150 MB video without 150 MB of test data)."""
        with self._lock:
            return copy.deepcopy(
                self._store_file(
                    user, name, content, mimetype=mimetype, filetype=filetype, size=size
                )
            )

    def delete_file(self, file_id: str) -> None:
        """Its owner deletes a file: Slack no longer serves it."""
        with self._lock:
            self._stored_files[file_id]["deleted"] = True

    def hide_file_content(self, file_id: str) -> None:
        """The file's content is no longer served to the bot (its access went between
        files.info and the download): Slack then answers its sign-in page, status 200."""
        with self._lock:
            self._stored_files[file_id]["hidden"] = True

    def file(self, file_id: str) -> dict[str, Any] | None:
        """A stored file: `file` (the object), `content`, `deleted`, `by_bot`."""
        with self._lock:
            stored = self._stored_files.get(file_id)
            return copy.deepcopy(stored) if stored else None

    # -- inspection

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            cid = self.dm_channel(channel) if channel[:1] in ("U", "W") else channel
            ch = self._channels.get(cid)
            return copy.deepcopy(ch.messages) if ch else []

    def message_as_sent(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The message at (`channel`, `ts`) in the shape Slack puts into interaction payloads
        and history answers (blocks with the block ids Slack gave them), or None."""
        with self._lock:
            cid = self.dm_channel(channel) if channel[:1] in ("U", "W") else channel
            ch = self._channels.get(cid)
            message = self._find(ch, ts) if ch else None
            return self._api_message(ch, message, metadata=False) if ch and message else None

    def dm_channel(self, user_id: str) -> str:
        return "D" + (user_id[1:] if user_id.startswith("U") else user_id)

    def dm_messages(self, user_id: str) -> list[dict[str, Any]]:
        return self.messages(self.dm_channel(user_id))

    @property
    def rate_limited_count(self) -> int:
        with self._lock:
            return self._rate_limited + sum(self.rate_limited_by.values())

    def _keep_tier(self, method: str) -> None:
        """Refuse a call past its method's tier in the last minute, as Slack does: HTTP 429,
        `ratelimited`, and `Retry-After` until the oldest call counted leaves the window. A
        refused call does not count. The window follows `clock`: a test that drives the bot
        with a clock of its own passes it, and Slack sees the minutes that test says pass."""
        tier = METHOD_TIERS.get(method)
        if tier is None or not self.tier_limits:
            return
        now = self.clock()
        calls = self._tier_calls.setdefault(method, deque())
        while calls and calls[0] <= now - RATE_WINDOW:
            calls.popleft()
        if len(calls) >= TIER_LIMITS[tier]:
            self.rate_limited_by[method] += 1
            wait = max(math.ceil(calls[0] + RATE_WINDOW - now), 1)
            raise _ApiError("ratelimited", status=429, headers={"Retry-After": str(wait)})
        calls.append(now)

    def assert_no_violations(self) -> None:
        with self._lock:
            problems = list(self.violations)
        if problems:
            raise AssertionError("Slack contract violations:\n  " + "\n  ".join(problems))

    def mentions(self, obj: Any) -> list[str]:
        """Every notifying control sequence in `obj`, in document order.

        Scans mrkdwn text objects and message-level `text` strings; plain_text objects render
        control sequences literally, so they are skipped. Rich text user/broadcast/usergroup
        elements notify too and are reported in the same `<...>` form.
        """
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, list):
                for item in node:
                    walk(item)
                return
            if not isinstance(node, dict):
                return
            kind = node.get("type")
            if kind == "plain_text":
                return
            text = node.get("text")
            if isinstance(text, str) and kind in (None, "mrkdwn", "message"):
                found.extend(f"<{m}>" for m in _MENTION.findall(text))
            if kind == "user" and "user_id" in node:
                found.append(f"<@{node['user_id']}>")
            elif kind == "broadcast" and "range" in node:
                found.append(f"<!{node['range']}>")
            elif kind == "usergroup" and "usergroup_id" in node:
                found.append(f"<!subteam^{node['usergroup_id']}>")
            for value in node.values():
                if isinstance(value, dict | list):
                    walk(value)

        if isinstance(obj, str):
            return [f"<{m}>" for m in _MENTION.findall(obj)]
        walk(obj)
        return found

    # -- fault injection

    def fail(
        self,
        method: str = "*",
        *,
        times: int | None = 1,
        status: int = 500,
        error: str = "internal_error",
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue a fault; `status=200, error=""` with a delay makes a slow but successful call."""
        with self._lock:
            self._faults.append(_Fault(method, times, status, error, retry_after, delay))

    def uninstall(self) -> None:
        """The workspace removes the app: its bot token is refused from now on."""
        with self._lock:
            self._revoked_tokens.add(self.token)

    def reinstall(self, token: str) -> None:
        """The app is installed again and gets a new bot token."""
        with self._lock:
            self.token = token

    def faults_left(self, method: str) -> int:
        """How many calls of `method` its queued faults still await (a fault whose call
        has arrived is taken, though the call may still be under way: see `delay`)."""
        with self._lock:
            return sum(
                1 if f.times is None else f.times for f in self._faults if f.method == method
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str) -> _Fault | None:
        """The method's own faults go before "*" ones; auth.test is never hit by "*"."""
        with self._lock:
            fault = next((f for f in self._faults if f.method == method), None)
            if fault is None and method != "auth.test":
                fault = next((f for f in self._faults if f.method == "*"), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault

    # -- HTTP plumbing

    def _serve(self, request: BaseHTTPRequestHandler) -> _Reply:
        """Route a request; a crash in the fake becomes a violation rather than a hang-up."""
        try:
            return self._route(request)
        except Exception as exc:
            with self._lock:
                self.violations.append(f"{request.path}: fakeslack crashed: {exc!r}")
            return _json_reply(500, {"ok": False, "error": "fakeslack_crashed"})

    def _route(self, request: BaseHTTPRequestHandler) -> _Reply:
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        if len(raw) < length:
            # The client went away mid-request (a bot killed while sending): like any HTTP
            # server, Slack acts on no part of a body that never fully arrived.
            return _json_reply(400, {"ok": False, "error": "incomplete_request"})
        content_type = request.headers.get("Content-Type") or ""
        if url.path.startswith("/api/"):
            auth = request.headers.get("Authorization") or ""
            return self._serve_api(url.path[5:], auth, content_type, url.query, raw)
        if url.path.startswith("/response/"):
            return self._serve_response_url(self._root + url.path, raw)
        if url.path.startswith("/upload/"):
            return self._serve_upload(url.path[8:], content_type, raw)
        if url.path.startswith("/files-pri/"):
            return self._serve_download(url.path, request.headers.get("Authorization") or "")
        return _json_reply(404, {"ok": False, "error": "not_found"})

    def _serve_api(
        self, method: str, auth: str, content_type: str, query: str, raw: bytes
    ) -> _Reply:
        fault = self._take_fault(method)
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        args: Json = {}
        with self._lock:
            try:
                args = self._parse_args(content_type, query, raw)
                body_token = args.pop("token", None)
                token = body_token or auth.removeprefix("Bearer ").strip()
                if fault is not None and (fault.error or fault.status != 200):
                    headers = {"Retry-After": str(fault.retry_after or 1)}
                    if fault.status == 429:
                        raise _ApiError("ratelimited", status=429, headers=headers)
                    raise _ApiError(
                        fault.error or "internal_error",
                        status=fault.status,
                        headers=headers if fault.retry_after is not None else None,
                    )
                if method == "apps.connections.open":  # the app-level token's one method
                    body = self._apps_connections_open(body_token, auth)
                    self.calls.append(Call(method, args, 200, body))
                    return _json_reply(200, body)
                if token in self._revoked_tokens:
                    raise _ApiError("token_revoked")
                if token != self.token:
                    raise _ApiError("invalid_auth")
                handler = self._handlers.get(method)
                if handler is None:
                    raise _ApiError("unknown_method")
                if self._declared is not None and method not in self._declared:
                    self.violations.append(
                        f"{method}: called, but not listed in feedbot.slack.scopes.WEB_API "
                        "(so the manifest may lack its scope)"
                    )
                self._require_scope(method, args)
                self._keep_tier(method)
                status, body, headers = 200, handler(args), {}
            except _ApiError as exc:
                status, headers = exc.status, exc.headers
                body = {"ok": False, "error": exc.error, **exc.extra}
                if exc.messages:
                    body["response_metadata"] = {"messages": exc.messages}
            self.calls.append(Call(method, args, status, body))
            return _json_reply(status, body, headers)

    def _parse_args(self, content_type: str, query: str, raw: bytes) -> Json:
        args: Json = dict(parse_qsl(query, keep_blank_values=True))
        if raw and "application/json" in content_type:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _ApiError("invalid_json") from exc
            if not isinstance(body, dict):
                raise _ApiError("invalid_json")
            args.update(body)
        elif raw and "multipart/form-data" in content_type:
            for name, filename, content in _multipart(content_type, raw):
                args[name] = content if filename is not None else content.decode()
        elif raw:
            args.update(parse_qsl(raw.decode(), keep_blank_values=True))
        for name in _JSON_ARGS:
            value = args.get(name)
            if isinstance(value, str) and value[:1] in ("[", "{"):
                # Malformed JSON stays a string: the checks then report the field.
                with contextlib.suppress(ValueError):
                    args[name] = json.loads(value)
        return args

    def _serve_response_url(self, url: str, raw: bytes) -> _Reply:
        with self._lock:
            issued = self._response_urls.get(url)
            if issued is None:
                return _json_reply(404, {"ok": False, "error": "no_such_response_url"})
            # "These responses can be sent up to 5 times within 30 minutes of receiving the
            # payload." What Slack answers past that is not documented: a 404 here.
            if issued[1] >= RESPONSE_URL_USES or self.clock() - issued[0] > RESPONSE_URL_LIFETIME:
                self.refused_responses.append(url)
                error = "used_url" if issued[1] >= RESPONSE_URL_USES else "expired_url"
                return _json_reply(404, {"ok": False, "error": error})
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return _json_reply(400, {"ok": False, "error": "invalid_payload"})
            checker = _Checker("response_url")
            checker.message(body, fallback=False)
            empty = not (body.get("text") or body.get("blocks") or body.get("attachments"))
            if empty and not _truthy(body.get("delete_original")):
                checker.bad("no text, blocks or attachments", "no_text")
            if checker.problems:
                self.violations.extend(checker.problems)
                error = checker.error or "invalid_blocks"
                return _json_reply(200, {"ok": False, "error": error})
            issued[1] += 1
            self.responses.append({**body, "_url": url})
            return _json_reply(200, {"ok": True})

    def _serve_upload(self, file_id: str, content_type: str, raw: bytes) -> _Reply:
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None:
                return _Reply(404, b"Not Found", "text/plain")
            if "multipart/form-data" in content_type:
                parts = _multipart(content_type, raw)
                files = [part for part in parts if part[1] is not None] or parts
                raw = files[0][2] if files else b""
            if len(raw) != upload["length"]:
                self.violations.append(
                    f"upload {file_id}: {len(raw)} bytes but files.getUploadURLExternal "
                    f"declared length {upload['length']}"
                )
            upload["content"] = raw
            return _Reply(200, f"OK - {len(raw)}".encode(), "text/plain")

    def _serve_download(self, path: str, auth: str) -> _Reply:
        """`url_private` / `url_private_download`: the content, only for the bot token with
        `files:read`; otherwise, as Slack does, its sign-in page with status 200."""
        match = re.match(r"/files-pri/[A-Z0-9]+-(F[A-Z0-9]+)/", path)
        with self._lock:
            stored = self._stored_files.get(match.group(1)) if match else None
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            allowed = (
                stored is not None
                and not stored["deleted"]
                and not stored.get("hidden")
                and token == self.token
                and token not in self._revoked_tokens
                and "files:read" in self.scopes
            )
            self.downloads.append(
                {"file": match.group(1) if match else None, "served": allowed, "token": token}
            )
            if not allowed or stored is None:
                page = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"
                return _Reply(200, page, "text/html; charset=utf-8")
            return _Reply(200, stored["content"], stored["file"]["mimetype"])

    def _store_file(
        self,
        user: str,
        name: str,
        content: bytes,
        *,
        mimetype: str,
        filetype: str | None = None,
        size: int | None = None,
        title: str | None = None,
        by_bot: bool = False,
    ) -> Json:
        file_id = f"F{next(self._ids):010d}"
        return self._keep_file(
            file_id, user, name, content, mimetype, filetype, size, title, by_bot
        )

    def _keep_file(
        self,
        file_id: str,
        user: str,
        name: str,
        content: bytes,
        mimetype: str,
        filetype: str | None,
        size: int | None,
        title: str | None,
        by_bot: bool,
    ) -> Json:
        from urllib.parse import quote

        now = int(self.clock())
        base = f"{self._root}/files-pri/{self.team_id}-{file_id}"
        kind = filetype or (name.rsplit(".", 1)[-1].lower() if "." in name else "binary")
        obj: Json = {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": title or name,
            "mimetype": mimetype,
            "filetype": kind,
            "pretty_type": kind.upper(),
            "user": user,
            "user_team": self.team_id,
            "editable": False,
            "size": len(content) if size is None else size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base}/{quote(name)}",
            "url_private_download": f"{base}/download/{quote(name)}",
            "permalink": f"https://{self.domain}.slack.com/files/{user}/{file_id}/{quote(name)}",
            "is_starred": False,
            "has_rich_preview": False,
            "file_access": "visible",
        }
        self._stored_files[file_id] = {
            "file": obj,
            "content": content,
            "deleted": False,
            "by_bot": by_bot,
        }
        return obj

    # -- shared handler helpers (all called with the lock held)

    def _require_scope(self, method: str, args: Json) -> None:
        """Answer `missing_scope` like Slack when the installed scopes do not cover the call."""
        needs = METHOD_SCOPES.get(method)
        if isinstance(needs, dict):
            needs = needs.get(self._conversation_kind(method, args))
        if needs is None or needs in self.scopes:
            return
        provided = ",".join(sorted(self.scopes))
        raise _ApiError(
            "missing_scope",
            headers={"x-oauth-scopes": provided, "x-accepted-oauth-scopes": needs},
            extra={"needed": needs, "provided": provided},
        )

    def _conversation_kind(self, method: str, args: Json) -> str:
        """`channel`, `group`, `im` or `mpim`: what kind of conversation a call addresses."""
        if method == "conversations.open" and not args.get("channel"):
            raw = args.get("users") or ""
            users = raw if isinstance(raw, list) else [u for u in str(raw).split(",") if u]
            return "im" if len(users) <= 1 else "mpim"
        raw = args.get("channel")
        if not isinstance(raw, str) or not raw:
            return "channel"
        if raw[0] in ("U", "W", "D"):
            return "im"
        ch = self._channels.get(raw)
        if ch is None:
            return "group" if raw[0] == "G" else "channel"
        if ch.user is not None:
            return "im"
        if ch.is_mpim:
            return "mpim"
        return "group" if ch.is_private else "channel"

    def _require(self, method: str, args: Json, name: str, error: str = "invalid_arguments") -> str:
        value = args.get(name)
        if value in (None, ""):
            self.violations.append(f"{method}: missing required argument {name!r}")
            raise _ApiError(error)
        return str(value)

    def _checked(self, checker: _Checker, default_error: str) -> None:
        if checker.problems:
            self.violations.extend(checker.problems)
            raise _ApiError(checker.error or default_error, messages=checker.problems)

    def _check_message(self, method: str, args: Json) -> None:
        checker = _Checker(method)
        checker.message(args, fallback=True)
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            checker.bad("no text, blocks or attachments", "no_text")
        for file_id in self._slack_files_in(args.get("blocks")):
            stored = self._stored_files.get(file_id)
            if stored is None or stored["deleted"]:
                checker.bad(
                    f"image slack_file {file_id!r} is no file Slack holds", "invalid_blocks"
                )
        self._checked(checker, "invalid_blocks")

    @staticmethod
    def _slack_files_in(blocks: Any) -> list[str]:
        """The ids of Slack-hosted files that image blocks and elements in `blocks` show."""
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, list):
                for item in node:
                    walk(item)
            elif isinstance(node, dict):
                reference = node.get("slack_file")
                if node.get("type") == "image" and isinstance(reference, dict):
                    found.append(str(reference.get("id") or ""))
                for value in node.values():
                    if isinstance(value, dict | list):
                        walk(value)

        walk(blocks)
        return found

    def _record_images(self, channel: str, ts: str, blocks: Any) -> None:
        for file_id in self._slack_files_in(blocks):
            self.images_shown.append({"channel": channel, "ts": ts, "file": file_id})

    def _channel(self, raw: Any, *, member: bool = True) -> _Channel:
        """Resolve a channel argument like Slack: user ids mean their DM, ids auto-create."""
        if not isinstance(raw, str) or not raw:
            raise _ApiError("channel_not_found")
        if raw[0] in ("U", "W"):
            cid = self.dm_channel(raw)
            if cid not in self._channels:
                self._channels[cid] = _Channel(cid, cid.lower(), True, True, [raw], user=raw)
            ch = self._channels[cid]
        elif raw in self._missing:
            raise _ApiError("channel_not_found")
        elif raw in self._channels:
            ch = self._channels[raw]
        else:
            named = [c for c in self._channels.values() if c.name == raw.lstrip("#")]
            if named:
                ch = named[0]
            elif _CHANNEL_ID.fullmatch(raw):
                ch = self._channels[raw] = _Channel(raw, raw.lower(), raw[0] == "G")
            else:
                raise _ApiError("channel_not_found")
        if member and not ch.bot_is_member:
            raise _ApiError("not_in_channel")
        return ch

    @staticmethod
    def _find(ch: _Channel, ts: Any) -> Json | None:
        return next((m for m in ch.messages if m["ts"] == str(ts)), None)

    def _thread_parent(self, ch: _Channel, thread_ts: Any) -> str | None:
        if thread_ts in (None, ""):
            return None
        parent = self._find(ch, thread_ts)
        if parent is None or parent["thread_ts"] is not None:
            raise _ApiError("thread_not_found")
        return str(parent["ts"])

    def _metadata(self, method: str, args: Json) -> Json | None:
        metadata = args.get("metadata")
        if metadata in (None, ""):
            return None
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            self.violations.append(
                f"{method}: metadata needs event_type (string) and event_payload (object)"
            )
            raise _ApiError("invalid_metadata_format")
        return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}

    def _with_block_ids(self, blocks: Any) -> list[Json]:
        """Slack gives every block without a `block_id` one of its own, and reports that id
        when someone uses an element in the block."""
        stored = copy.deepcopy(blocks) if isinstance(blocks, list) else []
        for block in stored:
            if isinstance(block, dict) and "block_id" not in block:
                block["block_id"] = f"b{next(self._ids):05d}"
        return stored

    def _next_ts(self) -> str:
        """A unique, strictly increasing ts that follows `self.clock`.

        Uniqueness comes from the counter (last + 1µs whenever the clock has not moved on);
        following the clock matters because the bot derives conversations.history's `oldest`
        from its own clock when looking for earlier delivery attempts.
        """
        self._last_us = max(int(self.clock() * 1_000_000), self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _post(
        self,
        ch: _Channel,
        *,
        text: Any,
        thread_ts: str | None,
        user: str,
        bot_id: str | None,
        blocks: Any = None,
        metadata: Json | None = None,
        files: list[Json] | None = None,
    ) -> Json:
        message: Json = {
            "ts": self._next_ts(),
            "text": text or "",
            "blocks": self._with_block_ids(blocks),
            "thread_ts": thread_ts,
            "metadata": metadata,
            "user": user,
            "bot_id": bot_id,
            "files": files or [],
        }
        ch.messages.append(message)
        return message

    def _api_message(self, ch: _Channel, message: Json, *, metadata: bool = True) -> Json:
        """A stored message in the shape Slack's history/replies/post answers use."""
        out: Json = {
            "type": "message",
            "ts": message["ts"],
            "text": message["text"],
            "user": message["user"],
            "team": self.team_id,
        }
        if message["bot_id"]:
            out.update(bot_id=message["bot_id"], app_id="A0FAKEAPP")
        for key in ("blocks", "files"):
            if message[key]:
                out[key] = copy.deepcopy(message[key])
        replies = [m for m in ch.messages if m["thread_ts"] == message["ts"]]
        if message["thread_ts"]:
            out["thread_ts"] = message["thread_ts"]
        elif replies:
            out.update(
                thread_ts=message["ts"], reply_count=len(replies), latest_reply=replies[-1]["ts"]
            )
        if message["ts"] in ch.broadcasts:
            out["subtype"] = "thread_broadcast"
        if metadata and message["metadata"]:
            out["metadata"] = copy.deepcopy(message["metadata"])
        return out

    def _window(self, args: Json, messages: list[Json]) -> list[Json]:
        """Apply oldest/latest (exclusive unless `inclusive`) like conversations.history."""
        low = _ts_key(args.get("oldest") or "-Infinity")
        high = _ts_key(args.get("latest") or "Infinity")
        if _truthy(args.get("inclusive")):
            return [m for m in messages if low <= _ts_key(m["ts"]) <= high]
        return [m for m in messages if low < _ts_key(m["ts"]) < high]

    @staticmethod
    def _limit(args: Json) -> int:
        try:
            return int(args.get("limit") or 100) or 100
        except (TypeError, ValueError) as exc:
            raise _ApiError("invalid_limit") from exc

    # -- method handlers: auth, chat

    def _auth_test(self, args: Json) -> Json:
        return {
            "ok": True,
            "url": f"https://{self.domain}.slack.com/",
            "team": "Fake Team",
            "user": "feedbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: Json) -> Json:
        ch = self._channel(args.get("channel"))
        if self.channel_rate_limit is not None:
            now, last = time.monotonic(), self._last_post.get(ch.id)
            if last is not None and now - last < self.channel_rate_limit:
                self._rate_limited += 1
                raise _ApiError("ratelimited", status=429, headers={"Retry-After": "1"})
        self._check_message("chat.postMessage", args)
        thread_ts = self._thread_parent(ch, args.get("thread_ts"))
        metadata = self._metadata("chat.postMessage", args)
        message = self._post(
            ch,
            text=args.get("text"),
            blocks=args.get("blocks"),
            thread_ts=thread_ts,
            metadata=metadata,
            user=self.bot_user_id,
            bot_id=self.bot_id,
        )
        if thread_ts and _truthy(args.get("reply_broadcast")):
            ch.broadcasts.add(message["ts"])
        self._record_images(ch.id, message["ts"], args.get("blocks"))
        self._last_post[ch.id] = time.monotonic()
        return {
            "ok": True,
            "channel": ch.id,
            "ts": message["ts"],
            "message": self._api_message(ch, message),
        }

    def _own_message(
        self, method: str, args: Json, ts_arg: str, verb: str
    ) -> tuple[_Channel, Json]:
        ch = self._channel(args.get("channel"))
        message = self._find(ch, self._require(method, args, ts_arg, "message_not_found"))
        if message is None:
            raise _ApiError("message_not_found")
        if message["bot_id"] != self.bot_id:
            raise _ApiError(f"cant_{verb}_message")
        return ch, message

    def _chat_update(self, args: Json) -> Json:
        ch, message = self._own_message("chat.update", args, "ts", "update")
        self._check_message("chat.update", args)
        metadata = self._metadata("chat.update", args)
        if "text" in args:
            message["text"] = args["text"] or ""
        if "blocks" in args:
            message["blocks"] = self._with_block_ids(args["blocks"])
            self._record_images(ch.id, message["ts"], args["blocks"])
        if metadata is not None:
            message["metadata"] = metadata
        return {
            "ok": True,
            "channel": ch.id,
            "ts": message["ts"],
            "text": message["text"],
            "message": self._api_message(ch, message),
        }

    def _chat_delete(self, args: Json) -> Json:
        ch, message = self._own_message("chat.delete", args, "ts", "delete")
        ch.messages.remove(message)
        return {"ok": True, "channel": ch.id, "ts": message["ts"]}

    def _chat_post_ephemeral(self, args: Json) -> Json:
        ch = self._channel(args.get("channel"))
        user = self._require("chat.postEphemeral", args, "user", "user_not_found")
        if ch.members is not None and user not in ch.members:
            raise _ApiError("user_not_in_channel")
        self._check_message("chat.postEphemeral", args)
        ts = self._next_ts()
        self.ephemerals.append(
            {
                "channel": ch.id,
                "user": user,
                "text": args.get("text") or "",
                "blocks": args.get("blocks") or [],
                "message_ts": ts,
            }
        )
        return {"ok": True, "message_ts": ts}

    def _chat_get_permalink(self, args: Json) -> Json:
        ch = self._channel(args.get("channel"), member=False)
        ts = self._require("chat.getPermalink", args, "message_ts", "message_not_found")
        link = f"https://{self.domain}.slack.com/archives/{ch.id}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": ch.id, "permalink": link}

    def _reactions(self, args: Json) -> Json:
        self._channel(args.get("channel"))
        self._require("reactions.add/remove", args, "name", "invalid_name")
        self._require("reactions.add/remove", args, "timestamp", "message_not_found")
        return {"ok": True}

    # -- conversations, users, usergroups

    def _conversations_open(self, args: Json) -> Json:
        raw = args.get("users") or ""
        users = [u.strip() for u in (raw if isinstance(raw, list) else str(raw).split(",")) if u]
        if not users:
            ch = self._channel(args.get("channel"), member=False)
            return {"ok": True, "channel": {"id": ch.id}}
        for user in users:
            if self._users.get(user, {}).get("deleted"):
                raise _ApiError("user_disabled")
        if len(users) == 1:
            already = self.dm_channel(users[0]) in self._channels
            ch = self._channel(users[0])
            info: Json = {"id": ch.id}
            if _truthy(args.get("return_im")):
                info.update(is_im=True, user=users[0], is_open=True)
            return {"ok": True, "already_open": already, "channel": info}
        cid = "G" + "".join(sorted(u[1:] for u in users))
        if cid not in self._channels:
            members = [*users, self.bot_user_id]
            self._channels[cid] = _Channel(cid, cid.lower(), True, True, members, is_mpim=True)
        return {"ok": True, "channel": {"id": cid}}

    def _conversations_history(self, args: Json) -> Json:
        ch = self._channel(args.get("channel"))
        top = [m for m in ch.messages if m["thread_ts"] is None or m["ts"] in ch.broadcasts]
        newest_first = self._window(args, top)[::-1]
        limit = self._limit(args)
        with_metadata = _truthy(args.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [
                self._api_message(ch, m, metadata=with_metadata) for m in newest_first[:limit]
            ],
            "has_more": len(newest_first) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_replies(self, args: Json) -> Json:
        ch = self._channel(args.get("channel"))
        found = self._find(
            ch, self._require("conversations.replies", args, "ts", "thread_not_found")
        )
        if found is None:
            raise _ApiError("thread_not_found")
        parent = found if found["thread_ts"] is None else self._find(ch, found["thread_ts"])
        if parent is None:
            raise _ApiError("thread_not_found")
        thread = [parent, *(m for m in ch.messages if m["thread_ts"] == parent["ts"])]
        with_metadata = _truthy(args.get("include_all_metadata"))
        limit = self._limit(args)
        return {
            "ok": True,
            "messages": [self._api_message(ch, m, metadata=with_metadata) for m in thread[:limit]],
            "has_more": len(thread) > limit,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_info(self, args: Json) -> Json:
        ch = self._channel(args.get("channel"), member=False)
        info: Json = {
            "id": ch.id,
            "name": ch.name,
            "is_private": ch.is_private,
            "is_member": ch.bot_is_member,
            "is_im": ch.user is not None,
            "is_channel": ch.id.startswith("C"),
            "is_archived": False,
        }
        if ch.user is not None:
            info["user"] = ch.user
        return {"ok": True, "channel": info}

    def _conversations_members(self, args: Json) -> Json:
        ch = self._channel(args.get("channel"), member=False)
        members = list(ch.members or [])
        if ch.bot_is_member and self.bot_user_id not in members:
            members.append(self.bot_user_id)
        return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}

    def _users_info(self, args: Json) -> Json:
        user = self._users.get(self._require("users.info", args, "user", "user_not_found"))
        if user is None:
            raise _ApiError("user_not_found")
        return {"ok": True, "user": self._api_user(user, args)}

    @staticmethod
    def _api_user(user: Json, args: Json) -> Json:
        """A user object as `users.info` and `users.list` answer it; the locale only when
        asked for (`include_locale`)."""
        out = {key: value for key, value in user.items() if key != "locale"}
        out["profile"] = {
            "real_name": user["real_name"],
            "display_name": user["name"],
            "real_name_normalized": user["real_name"],
            "display_name_normalized": user["name"],
        }
        if _truthy(args.get("include_locale")):
            out["locale"] = user["locale"]
        return out

    def _users_list(self, args: Json) -> Json:
        """The workspace's people, a page at a time (`limit`, at most 1,000; `cursor`)."""
        members = [self._api_user(user, args) for _, user in sorted(self._users.items())]
        try:
            start = int(args.get("cursor") or 0)
            limit = int(args.get("limit") or 0) or len(members)
        except (TypeError, ValueError) as exc:
            raise _ApiError("invalid_cursor") from exc
        if not 0 <= start <= len(members):
            raise _ApiError("invalid_cursor")
        page = members[start : start + min(limit, 1000)]
        after = start + len(page)
        return {
            "ok": True,
            "members": page,
            "cache_ts": int(self.clock()),
            "response_metadata": {"next_cursor": str(after) if after < len(members) else ""},
        }

    def _usergroups_users_list(self, args: Json) -> Json:
        group_id = self._require("usergroups.users.list", args, "usergroup", "no_such_subteam")
        group = self._usergroups.get(group_id)
        if group is None:
            raise _ApiError("no_such_subteam")
        return {"ok": True, "users": list(group["users"])}

    def _apps_connections_open(self, body_token: str | None, auth: str) -> Json:
        """A Socket Mode URL for an app-level token registered with `serve_socket_mode`.

        Slack wants that token in the Authorization header ("passing it as a POST parameter
        will result in an error") and refuses bot and user tokens."""
        if body_token is not None:
            self.violations.append(
                "apps.connections.open: the app-level token must be sent in the "
                "Authorization header, not as a parameter"
            )
            raise _ApiError("not_authed")
        token = auth.removeprefix("Bearer ").strip()
        if not token:
            raise _ApiError("not_authed")
        if not token.startswith("xapp-"):
            raise _ApiError("not_allowed_token_type")
        new_url = self._app_tokens.get(token)
        if new_url is None:
            raise _ApiError("invalid_auth")
        self._keep_tier("apps.connections.open")
        return {"ok": True, "url": new_url()}

    # -- views

    def _checked_view(self, method: str, view: Any, kind: str) -> Json:
        checker = _Checker(method)
        checker.view(view)
        if isinstance(view, dict) and view.get("type") != kind:
            checker.bad(f"{method} needs a {kind} view, got {view.get('type')!r}")
        self._checked(checker, "invalid_arguments")
        assert isinstance(view, dict)  # the checker rejected anything else
        return view

    def _stored_view(self, view: Json, view_id: str, root_id: str | None = None) -> Json:
        return {
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "clear_on_close": False,
            "notify_on_close": False,
            **copy.deepcopy(view),
            "blocks": self._with_block_ids(view.get("blocks")),
            "id": view_id,
            "hash": f"{int(time.time())}.h{next(self._ids)}",
            "team_id": self.team_id,
            "app_id": "A0FAKEAPP",
            "bot_id": self.bot_id,
            "root_view_id": root_id or view_id,
            "previous_view_id": None,
        }

    def _all_views(self) -> list[Json]:
        return [*self.views.values(), *self.home_views.values()]

    def _require_file_input_scope(self, view: Json) -> None:
        """Slack: "to use the file_input element within your app, your app must have the
        files:read scope"."""
        uses = any(
            isinstance(block, dict)
            and isinstance(block.get("element"), dict)
            and block["element"].get("type") == "file_input"
            for block in view.get("blocks") or []
        )
        if uses and "files:read" not in self.scopes:
            provided = ",".join(sorted(self.scopes))
            raise _ApiError("missing_scope", extra={"needed": "files:read", "provided": provided})

    def _open_view(self, method: str, args: Json) -> Json:
        view = self._checked_view(method, args.get("view"), "modal")
        self._require_file_input_scope(view)
        trigger = self._require(method, args, "trigger_id")
        issued = self._triggers_issued.get(trigger)
        if trigger in self._triggers_used:
            raise _ApiError("expired_trigger_id")
        if issued is not None and time.monotonic() - issued > self.trigger_lifetime:
            raise _ApiError("expired_trigger_id")
        external = view.get("external_id")
        if external and any(v.get("external_id") == external for v in self._all_views()):
            raise _ApiError("duplicate_external_id")
        self._triggers_used.add(trigger)
        stored = self._stored_view(view, f"V{next(self._ids):010d}")
        self.views[stored["id"]] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_open(self, args: Json) -> Json:
        return self._open_view("views.open", args)

    def _views_push(self, args: Json) -> Json:
        return self._open_view("views.push", args)

    def _views_update(self, args: Json) -> Json:
        view_arg = args.get("view")
        kind = view_arg.get("type") if isinstance(view_arg, dict) else "modal"
        view = self._checked_view("views.update", view_arg, str(kind))
        view_id, external = args.get("view_id"), args.get("external_id")
        if not view_id and not external:
            self.violations.append("views.update: needs view_id or external_id")
            raise _ApiError("invalid_arguments")
        current = next(
            (
                v
                for v in self._all_views()
                if (view_id and v["id"] == view_id) or (external and v["external_id"] == external)
            ),
            None,
        )
        if current is None:
            raise _ApiError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        stored = self._stored_view(view, current["id"], current["root_view_id"])
        owner = next((u for u, v in self.home_views.items() if v["id"] == current["id"]), None)
        if owner is not None:
            self.home_views[owner] = stored
        else:
            self.views[stored["id"]] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_publish(self, args: Json) -> Json:
        view = self._checked_view("views.publish", args.get("view"), "home")
        user = self._require("views.publish", args, "user_id")
        current = self.home_views.get(user)
        if current is not None and args.get("hash") and args["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        view_id = current["id"] if current else f"V{next(self._ids):010d}"
        stored = self.home_views[user] = self._stored_view(view, view_id)
        return {"ok": True, "view": copy.deepcopy(stored)}

    # -- files

    def _files_get_upload_url(self, args: Json) -> Json:
        filename = self._require("files.getUploadURLExternal", args, "filename")
        try:
            length = int(self._require("files.getUploadURLExternal", args, "length"))
        except ValueError as exc:
            raise _ApiError("invalid_arguments") from exc
        file_id = f"F{next(self._ids):010d}"
        self._uploads[file_id] = {"filename": filename, "length": length, "content": None}
        return {"ok": True, "upload_url": f"{self._root}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, args: Json) -> Json:
        method = "files.completeUploadExternal"
        entries = args.get("files")
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(e, dict) and e.get("id") for e in entries)
        ):
            self.violations.append(f"{method}: files must be a JSON list of {{id, title}}")
            raise _ApiError("invalid_arguments")
        for entry in entries:
            upload = self._uploads.get(str(entry["id"]))
            if upload is None or upload["content"] is None:
                raise _ApiError("file_not_found")
        targets = [args["channel_id"]] if args.get("channel_id") else []
        targets += [c for c in str(args.get("channels") or "").split(",") if c]
        channels = [self._channel(target) for target in targets]
        threads = [self._thread_parent(ch, args.get("thread_ts")) for ch in channels]
        done = []
        for entry in entries:
            upload = self._uploads.pop(str(entry["id"]))
            title = entry.get("title") or upload["filename"]
            done.append({"id": entry["id"], "title": title, "name": upload["filename"]})
            self._keep_file(
                str(entry["id"]),
                self.bot_user_id,
                upload["filename"],
                upload["content"],
                _mimetype(upload["filename"], upload["content"]),
                None,
                None,
                title,
                True,
            )
            self.files.append(
                {
                    "id": entry["id"],
                    "filename": upload["filename"],
                    "title": title,
                    "content": upload["content"],
                    "channel_id": channels[0].id if channels else None,
                    "initial_comment": args.get("initial_comment"),
                    "thread_ts": args.get("thread_ts"),
                }
            )
        for ch, thread_ts in zip(channels, threads, strict=True):
            self._post(
                ch,
                text=args.get("initial_comment"),
                thread_ts=thread_ts,
                files=done,
                user=self.bot_user_id,
                bot_id=self.bot_id,
            )
        return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in done]}

    def _files_info(self, args: Json) -> Json:
        file_id = self._require("files.info", args, "file", "file_not_found")
        stored = self._stored_files.get(file_id)
        if stored is None:
            raise _ApiError("file_not_found")
        if stored["deleted"]:
            raise _ApiError("file_deleted")
        return {"ok": True, "file": copy.deepcopy(stored["file"]), "comments": []}

    def _files_delete(self, args: Json) -> Json:
        """A bot token may delete only the files its app uploaded."""
        file_id = self._require("files.delete", args, "file", "file_not_found")
        stored = self._stored_files.get(file_id)
        if stored is None:
            raise _ApiError("file_not_found")
        if stored["deleted"]:
            raise _ApiError("file_deleted")
        if not stored["by_bot"]:
            raise _ApiError("cant_delete_file")
        stored["deleted"] = True
        for ch in self._channels.values():  # the file leaves every message that shared it
            for message in ch.messages:
                message["files"] = [f for f in message["files"] if f.get("id") != file_id]
        return {"ok": True}


def _mimetype(name: str, content: bytes) -> str:
    """What Slack makes of an upload: by its first bytes, else its name."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG"):
        return "image/png"
    if content.startswith(b"%PDF"):
        return "application/pdf"
    if name.lower().endswith(".csv"):
        return "text/csv"
    return "application/octet-stream"


class _RequestHandler(BaseHTTPRequestHandler):
    """Hands every request to the FakeSlack that owns the server."""

    server: _Server

    def _handle(self) -> None:
        reply = self.server.fake._serve(self)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out during an injected delay; that was the point

    do_GET = _handle
    do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output should show assertions, not an access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of connects (1 s SYN retransmits)

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.fake = fake
