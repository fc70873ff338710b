"""The settings modals: one per group of settings, built from one table of fields.

Each field names the config key it edits (its block id), how it is shown, and how the
submitted state turns back into the text `feedbot config set` would take, so the Slack
forms and the CLI share one validator (`feedbot.core.config.parse_value`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    ConversationFilter,
    ConversationMultiSelectElement,
    ConversationSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
    UserMultiSelectElement,
)
from slack_sdk.models.views import View

from feedbot.core.config import RuntimeConfig, format_value
from feedbot.core.config_values import WEEKDAYS
from feedbot.slack import codecs
from feedbot.slack.i18n import t
from feedbot.slack.ids import INPUT, Action, Callback
from feedbot.slack.views.webhooks import webhooks_section


@dataclass(frozen=True)
class SettingField:
    key: str
    kind: str
    """channel, channels, users, text, lines, bool, language, weekdays, routes"""
    hint: bool = False
    optional: bool = True


GROUPS: dict[str, tuple[SettingField, ...]] = {
    "channels": (
        SettingField("leadership_channel", "channel"),
        SettingField("leadership_routes", "routes", hint=True),
        SettingField("intake_channels", "channels"),
        SettingField("escalation_channel", "channel"),
        SettingField("allstaff_channel", "channel"),
    ),
    "people": (
        SettingField("leaders", "users"),
        SettingField("leaders_usergroup", "text", hint=True),
        SettingField("admins", "users"),
    ),
    "reports": (
        SettingField("categories", "lines", hint=True, optional=False),
        SettingField("confidential_categories", "lines", hint=True),
        SettingField("locations", "lines", hint=True),
        SettingField("allow_anonymous", "bool"),
        SettingField("language", "language", optional=False),
        SettingField("retention_days", "text", optional=False),
    ),
    "digest": (
        SettingField("digest_schedule", "text", hint=True, optional=False),
        SettingField("timezone", "text"),
    ),
    "reminders": (
        SettingField("response_targets", "text", hint=True, optional=False),
        SettingField("reminder_interval", "text", optional=False),
        SettingField("reminder_cap", "text", optional=False),
        SettingField("working_days", "weekdays", optional=False),
        SettingField("working_hours", "text", hint=True, optional=False),
        SettingField("holidays", "lines", hint=True),
        SettingField("holiday_region", "text", hint=True),
    ),
}
CHANNEL_KINDS = {"channel", "channels", "routes"}
CHANNELS_ONLY = ConversationFilter(include=["public", "private"])


def _option(text: str, value: str) -> Option:
    return Option(text=PlainTextObject(text=text[:75]), value=value)


def routes_to_lines(routes: list[dict[str, Any]]) -> str:
    """`channel | categories | locations | leaders | language`, the last two only if set."""
    lines = []
    for route in routes:
        leaders = [*route.get("leaders", [])]
        if route.get("leaders_usergroup"):
            leaders.append(str(route["leaders_usergroup"]))
        columns = [
            str(route["channel"]),
            ", ".join(route["categories"]),
            ", ".join(route["locations"]),
            ", ".join(leaders),
            str(route.get("language") or ""),
        ]
        while columns[-1] == "" and len(columns) > 3:
            columns.pop()
        lines.append(" | ".join(columns))
    return "\n".join(lines)


def lines_to_routes(text: str) -> str:
    """The modal's one-route-per-line form, as the JSON the config key takes. Leaders are
    user IDs (U…) and at most one user group (S…)."""
    routes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        channel, categories, locations, leaders, language = [*line.split("|"), *[""] * 4][:5]
        route: dict[str, Any] = {
            "channel": channel.strip(),
            "categories": _listed(categories),
            "locations": _listed(locations),
        }
        people = [name for name in _listed(leaders) if not name.startswith("S")]
        groups = [name for name in _listed(leaders) if name.startswith("S")]
        if people:
            route["leaders"] = people
        if groups:
            route["leaders_usergroup"] = groups[0]
        if language.strip():
            route["language"] = language.strip()
        routes.append(route)
    return json.dumps(routes)


def _listed(column: str) -> list[str]:
    return [part.strip() for part in column.split(",") if part.strip()]


def _element(field: SettingField, value: Any, locale: str) -> Any:
    if field.kind == "channel":
        return ConversationSelectElement(
            action_id=INPUT,
            initial_conversation=value or None,
            filter=CHANNELS_ONLY,
        )
    if field.kind == "channels":
        return ConversationMultiSelectElement(
            action_id=INPUT,
            initial_conversations=value or None,
            filter=CHANNELS_ONLY,
        )
    if field.kind == "users":
        return UserMultiSelectElement(action_id=INPUT, initial_users=value or None)
    if field.kind == "bool":
        option = _option(t(locale, f"field.{field.key}_option"), "true")
        return CheckboxesElement(
            action_id=INPUT, options=[option], initial_options=[option] if value else None
        )
    if field.kind == "language":
        options = [_option(t(locale, f"language.{code}"), code) for code in ("en", "de")]
        return StaticSelectElement(
            action_id=INPUT,
            options=options,
            initial_option=next(o for o in options if o.value == value),
        )
    if field.kind == "weekdays":
        options = [_option(t(locale, f"weekday.{day}"), day) for day in WEEKDAYS]
        chosen = [o for o in options if o.value in value]
        return CheckboxesElement(action_id=INPUT, options=options, initial_options=chosen or None)
    if field.kind == "lines":
        text = "\n".join(value or [])
        return PlainTextInputElement(
            action_id=INPUT, multiline=True, initial_value=text or None, max_length=3000
        )
    if field.kind == "routes":
        text = routes_to_lines(value or [])
        return PlainTextInputElement(
            action_id=INPUT, multiline=True, initial_value=text or None, max_length=3000
        )
    text = format_value(value)
    return PlainTextInputElement(action_id=INPUT, initial_value=text or None, max_length=200)


def build_group_form(group: str, *, config: RuntimeConfig, locale: str) -> View:
    blocks: list[Block] = [
        ContextBlock(elements=[MarkdownTextObject(text=t(locale, f"group.{group}_help"))])
    ]
    for field in GROUPS[group]:
        blocks.append(
            InputBlock(
                block_id=field.key,
                label=t(locale, f"field.{field.key}"),
                hint=t(locale, f"field.{field.key}_hint") if field.hint else None,
                element=_element(field, getattr(config, field.key), locale),
                optional=field.optional,
            )
        )
    return View(
        type="modal",
        callback_id=Callback.SETTINGS_FORM,
        title=t(locale, f"group.{group}")[:24],
        submit=t(locale, "form.save"),
        close=t(locale, "form.close"),
        private_metadata=codecs.SETTINGS_FORM.encode(group),
        blocks=blocks,
    )


def build_settings_picker(*, locale: str) -> View:
    """`/feedback admin`: the groups, each with a button that opens its form."""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=t(locale, "admin.pick")))]
    blocks += settings_sections(locale)
    return View(
        type="modal", title=t(locale, "admin.title"), close=t(locale, "form.close"), blocks=blocks
    )


def settings_sections(locale: str) -> list[Block]:
    return [
        SectionBlock(
            block_id=f"settings-{group}",
            text=MarkdownTextObject(
                text=f"*{t(locale, f'group.{group}')}*\n{t(locale, f'group.{group}_help')}"
            ),
            accessory=ButtonElement(
                text=t(locale, "admin.edit"), action_id=Action.EDIT_SETTINGS, value=group
            ),
        )
        for group in GROUPS
    ] + [webhooks_section(locale)]


def _state(values: dict[str, Any], key: str) -> dict[str, Any]:
    block = values.get(key) or {}
    state = block.get(INPUT) if isinstance(block, dict) else None
    return state if isinstance(state, dict) else {}


READERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "channel": lambda s: str(s.get("selected_conversation") or ""),
    "channels": lambda s: ",".join(s.get("selected_conversations") or []),
    "users": lambda s: ",".join(s.get("selected_users") or []),
    "bool": lambda s: "true" if s.get("selected_options") else "false",
    "language": lambda s: str((s.get("selected_option") or {}).get("value") or ""),
    "weekdays": lambda s: ",".join(o.get("value", "") for o in s.get("selected_options") or []),
    "lines": lambda s: ",".join(line.strip() for line in str(s.get("value") or "").splitlines()),
    "routes": lambda s: lines_to_routes(str(s.get("value") or "")),
    "text": lambda s: str(s.get("value") or ""),
}


def read_group_form(group: str, values: dict[str, Any]) -> dict[str, str]:
    """Each field's submitted value, as the text its config key parses."""
    return {field.key: READERS[field.kind](_state(values, field.key)) for field in GROUPS[group]}


def channels_in(field_kind: str, raw: str) -> list[str]:
    """The channel IDs a submitted value refers to (to check the bot is in them)."""
    if field_kind == "routes":
        return [route["channel"] for route in json.loads(raw or "[]") if route.get("channel")]
    return [part for part in raw.split(",") if part]
