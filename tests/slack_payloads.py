"""Requests as Slack sends them: every payload the tests hand to feedbot is built here.

Each builder writes exactly the fields Slack's documentation and bolt-python's own test
fixtures show for that kind of request, and nothing Slack does not send (events carry no
`team_domain`, for one: only slash commands and interactions name the workspace's domain).
Element state (`actions[]`, `view.state.values`) is shaped per element type, as Slack does.

Builders that act on something the bot posted (a button on a card, a modal it opened) take
that message or view as Slack holds it, so a test can only press what the bot really sent.
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

Json = dict[str, Any]

TEAM_ID = "T0TEAM"
TEAM_DOMAIN = "frontline"
APP_ID = "A0FEEDBOT"
BOT_USER_ID = "UBOT"
VERIFICATION_TOKEN = "legacy-verification-token"
"""Slack still sends the deprecated verification token in every payload; Bolt ignores it."""

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):08d}"


def _user(user_id: str) -> Json:
    """The `user` object of interaction payloads."""
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": TEAM_ID}


def _team() -> Json:
    return {"id": TEAM_ID, "domain": TEAM_DOMAIN}


def _action_ts() -> str:
    return f"{time.time():.6f}"


# --------------------------------------------------------------------------- slash commands


def slash_command(
    *,
    user: str,
    text: str,
    channel: str,
    channel_name: str,
    response_url: str,
    trigger_id: str | None = None,
    command: str = "/feedback",
) -> dict[str, str]:
    """The form fields of a slash command request."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or next_id("1337.42."),
    }


# --------------------------------------------------------------------------- events


def event_callback(event: Json, *, event_id: str | None = None) -> Json:
    """The Events API envelope around one event."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or next_id("Ev"),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": next_id("4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMFRFQU0i"),
    }


def message_event(
    *,
    user: str,
    text: str,
    channel: str,
    channel_type: str,
    ts: str,
    thread_ts: str | None = None,
    subtype: str | None = None,
    files: list[Json] | None = None,
) -> Json:
    """A `message` event as `message.channels`, `message.groups` or `message.im` deliver it.

    `text` is what Slack sends: already escaped (`&amp;`, `&lt;`, `&gt;`). With `files`
    (file objects, e.g. from `FakeSlack.add_file`) it is a `file_share` message, as Slack
    sends a message someone attached files to."""
    if files and subtype is None:
        subtype = "file_share"
    event: Json = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "team": TEAM_ID,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if subtype:
        event["subtype"] = subtype
    else:
        event["client_msg_id"] = next_id("0b8f9e3c-")
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    if files:
        event["files"] = files
        event["upload"] = False
        event["display_as_bot"] = False
    return event


def message_changed_event(
    *, channel: str, channel_type: str, message: Json, previous: Json, ts: str
) -> Json:
    """An edit: the new message nested under `message`, the old one under `previous_message`."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": message,
        "previous_message": previous,
        "channel": channel,
        "hidden": True,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type,
    }


def app_home_opened_event(*, user: str, channel: str, tab: str = "home") -> Json:
    ts = _action_ts()
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": ts}


def bare_event(event_type: str, **fields: Any) -> Json:
    """Any other event: its `type` and `event_ts` plus the given fields."""
    return {"type": event_type, **fields, "event_ts": fields.get("event_ts") or _action_ts()}


# --------------------------------------------------------------------------- interactions


def action(element: Json, *, block_id: str, **state: Any) -> Json:
    """One entry of `actions[]`: what Slack reports about the element that was used.

    `element` is the element as the bot sent it (or as a test forges it); `state` is what the
    person chose (`selected_option`, `selected_user`, `selected_date`, …)."""
    kind = element.get("type", "button")
    entry: Json = {
        "type": kind,
        "action_id": element.get("action_id", ""),
        "block_id": block_id,
        "action_ts": _action_ts(),
    }
    if kind == "button":
        entry["text"] = element.get("text") or {"type": "plain_text", "text": "Button"}
        if "value" in element:
            entry["value"] = element["value"]
        if "style" in element:
            entry["style"] = element["style"]
    elif kind in ("static_select", "overflow", "radio_buttons"):
        entry["selected_option"] = state.get("selected_option")
    elif kind == "users_select":
        entry["selected_user"] = state.get("selected_user")
        if element.get("initial_user"):
            entry["initial_user"] = element["initial_user"]
    elif kind == "datepicker":
        entry["selected_date"] = state.get("selected_date")
        if element.get("initial_date"):
            entry["initial_date"] = element["initial_date"]
    elif kind == "checkboxes":
        entry["selected_options"] = state.get("selected_options") or []
    else:
        entry.update(state)
    return entry


def block_actions_in_message(
    *,
    user: str,
    actions: list[Json],
    channel: str,
    channel_name: str,
    message: Json | None,
    message_ts: str,
    response_url: str,
    is_ephemeral: bool = False,
) -> Json:
    """A button (or select) used on a message in a channel or DM.

    Slack sends the whole message with it, except for ephemeral messages, which it keeps
    no copy of."""
    payload: Json = {
        "type": "block_actions",
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": next_id("2448.42."),
        "team": _team(),
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel_name},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": actions,
    }
    if message is not None and not is_ephemeral:
        payload["message"] = message
    return payload


def block_actions_in_view(*, user: str, actions: list[Json], view: Json) -> Json:
    """A button used on the Home tab or inside a modal: Slack sends the view, no channel."""
    return {
        "type": "block_actions",
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "view", "view_id": view.get("id", "")},
        "trigger_id": next_id("2448.42."),
        "team": _team(),
        "enterprise": None,
        "is_enterprise_install": False,
        "view": view,
        "actions": actions,
    }


# Per element type: the key its state is reported under in `view.state.values`.
_STATE_KEYS = {
    "plain_text_input": "value",
    "number_input": "value",
    "email_text_input": "value",
    "url_text_input": "value",
    "static_select": "selected_option",
    "external_select": "selected_option",
    "radio_buttons": "selected_option",
    "multi_static_select": "selected_options",
    "checkboxes": "selected_options",
    "users_select": "selected_user",
    "multi_users_select": "selected_users",
    "conversations_select": "selected_conversation",
    "multi_conversations_select": "selected_conversations",
    "multi_channels_select": "selected_channels",
    "channels_select": "selected_channel",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "file_input": "files",
}
_INITIAL = {
    "value": "initial_value",
    "selected_option": "initial_option",
    "selected_options": "initial_options",
    "selected_user": "initial_user",
    "selected_users": "initial_users",
    "selected_conversation": "initial_conversation",
    "selected_conversations": "initial_conversations",
    "selected_channel": "initial_channel",
    "selected_channels": "initial_channels",
    "selected_date": "initial_date",
    "selected_time": "initial_time",
}
"""Where an element keeps what it shows before anyone touches it: an untouched element is
submitted with that."""
_EMPTY = {
    "selected_options": [],
    "selected_users": [],
    "selected_conversations": [],
    "selected_channels": [],
    "files": [],
}


def view_state(view: Json, filled: dict[str, Any], *, forged: bool = False) -> Json:
    """`view.state.values` for a submission of `view`: every input block's element, with the
    state given in `filled` (keyed by block id), and what the rest show (their initial value,
    else Slack's empty state).

    A filled state may name its keys (`{"value": "…"}`, `{"selected_option": {...}}`) as
    Slack does; keys that do not belong to the element, options that are not in the view,
    and block ids the view does not have are refused unless the submission is `forged`."""
    values: Json = {}
    inputs = {
        block["block_id"]: block["element"]
        for block in view.get("blocks", [])
        if block.get("type") == "input" and "block_id" in block
    }
    unknown = set(filled) - set(inputs)
    if unknown and not forged:
        raise AssertionError(f"the view has no input blocks {sorted(unknown)}")
    for block_id, element in inputs.items():
        kind = element["type"]
        key = _STATE_KEYS[kind]
        shown = element.get(_INITIAL.get(key, ""), _EMPTY.get(key))
        if kind == "number_input" and shown is not None:
            shown = str(shown)
        state: Json = {"type": kind, key: copy.deepcopy(shown)}
        given = filled.get(block_id)
        if isinstance(given, dict):
            extra = set(given) - {"type", key}
            if extra and not forged:
                raise AssertionError(f"{block_id}: a {kind} has no {sorted(extra)} in its state")
            if given.get("type", kind) != kind and not forged:
                raise AssertionError(f"{block_id} is a {kind}, not {given['type']}")
            state.update({k: v for k, v in given.items() if k != "type"})
        elif given is not None:
            state[key] = given
        if not forged:
            _check_options(block_id, element, state.get(key))
            _check_input(block_id, element, state.get(key))
        values[block_id] = {element["action_id"]: state}
    for block_id in unknown:
        values[block_id] = {"value": filled[block_id]}
    return {"values": values}


def _check_options(block_id: str, element: Json, chosen: Any) -> None:
    """Slack only ever reports options the element offered, with their text."""
    if "options" not in element or chosen is None:
        return
    offered = {option["value"]: option for option in element["options"]}
    for option in chosen if isinstance(chosen, list) else [chosen]:
        value = option.get("value") if isinstance(option, dict) else None
        if value not in offered:
            raise AssertionError(f"{block_id}: {value!r} is not one of the offered options")
        option.setdefault("text", offered[value]["text"])


def _check_input(block_id: str, element: Json, value: Any) -> None:
    """What Slack's client enforces before it submits: lengths and numbers."""
    if not isinstance(value, str):
        return
    kind = element["type"]
    if kind == "plain_text_input":
        if len(value) > element.get("max_length", 3000):
            raise AssertionError(f"{block_id}: Slack allows at most {element.get('max_length')}")
        if len(value) < element.get("min_length", 0):
            raise AssertionError(f"{block_id}: Slack needs at least {element['min_length']}")
    if kind == "number_input":
        try:
            number = float(value) if element.get("is_decimal_allowed") else int(value)
        except ValueError:
            raise AssertionError(f"{block_id}: Slack only submits numbers here") from None
        low, high = element.get("min_value"), element.get("max_value")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise AssertionError(f"{block_id}: {value} is outside the element's range")


def view_submission(*, user: str, view: Json, state: Json) -> Json:
    """A modal's submission: the view as Slack holds it, with the person's input."""
    submitted = copy.deepcopy(view)
    submitted["state"] = state
    return {
        "type": "view_submission",
        "team": _team(),
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": next_id("3559.42."),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def message_action(
    *,
    user: str,
    message: Json,
    channel: str,
    channel_name: str,
    response_url: str,
    callback_id: str = "report_to_leadership",
) -> Json:
    """A message shortcut: the message it was used on, and where."""
    return {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": _action_ts(),
        "team": _team(),
        "user": _user(user),
        "channel": {"id": channel, "name": channel_name},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": next_id("4660.42."),
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": message,
    }


def find_element(blocks: list[Json], action_id: str) -> tuple[str, Json] | None:
    """The block id and element with `action_id` in `blocks`, if there is one."""
    for block in blocks:
        candidates: list[Json] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        elif block.get("type") == "section" and block.get("accessory"):
            candidates = [block["accessory"]]
        elif block.get("type") == "input" and block.get("element"):
            candidates = [block["element"]]
        for element in candidates:
            if element.get("action_id") == action_id:
                return str(block.get("block_id") or ""), element
    return None
