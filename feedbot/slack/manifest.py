"""The Slack app manifest: exactly the scopes, events, shortcuts and commands feedbot uses."""

from __future__ import annotations

from typing import Any

import yaml

from feedbot.slack.ids import COMMAND, Callback
from feedbot.slack.scopes import EVENTS, bot_scopes

BOT_SCOPES = bot_scopes()
"""Generated from `feedbot.slack.scopes`, which says what each one is for."""
BOT_EVENTS = list(EVENTS)


def build_manifest(*, http_url: str | None = None) -> dict[str, Any]:
    """Socket Mode unless `http_url` (the public base URL) is given."""
    events_url = f"{http_url.rstrip('/')}/slack/events" if http_url else None
    command: dict[str, Any] = {
        "command": COMMAND,
        "description": "Report a problem to leadership",
        "usage_hint": "[what happened] | help | mine",
        "should_escape": False,
    }
    interactivity: dict[str, Any] = {"is_enabled": True}
    events: dict[str, Any] = {"bot_events": BOT_EVENTS}
    if events_url:
        command["url"] = events_url
        interactivity["request_url"] = events_url
        events["request_url"] = events_url
    return {
        "display_information": {
            "name": "feedbot",
            "description": "A direct line from the frontline to leadership.",
            "background_color": "#1d3557",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": "feedbot", "always_online": True},
            "shortcuts": [
                {
                    "name": "Report to leadership",
                    "type": "message",
                    "callback_id": str(Callback.REPORT_SHORTCUT),
                    "description": "Send this message to leadership as a report",
                }
            ],
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": events_url is None,
            "token_rotation_enabled": False,
        },
    }


def manifest_yaml(*, http_url: str | None = None) -> str:
    return yaml.safe_dump(build_manifest(http_url=http_url), sort_keys=False, allow_unicode=True)
