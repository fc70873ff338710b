"""The Slack app manifest from `feedbot manifest` declares exactly what the app uses: every
listener the app registers can be reached, nothing declared goes unanswered, and every Web API
method the code calls is covered by a declared scope. That last part is judged by the fake
Slack during the whole suite: it grants exactly the manifest's scopes, answers `missing_scope`
to anything else, and flags a call to a method missing from `feedbot.slack.scopes`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from feedbot.slack.ids import COMMAND, Callback
from feedbot.slack.manifest import BOT_EVENTS, BOT_SCOPES, manifest_yaml
from feedbot.slack.scopes import EVENTS, OTHER_SCOPES, WEB_API
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, TEAM, TOKEN, Bot, next_id

HTTP_URL = "https://x.example"


def manifest_from_cli(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "feedbot", "manifest", *args],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONUTF8": "1"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """The default manifest and HTTP-mode ones, each from the real command."""
    variants = {"socket": (), "http": ("--http-url", HTTP_URL)}
    with ThreadPoolExecutor(max_workers=len(variants)) as pool:
        futures = {name: pool.submit(manifest_from_cli, *args) for name, args in variants.items()}
        return {name: future.result() for name, future in futures.items()}


def urls(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, value) whose key ends in `url`, anywhere in the manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("url") and isinstance(value, str):
                yield f"{path}.{key}", value
            yield from urls(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from urls(item, f"{path}[{index}]")


# -- what the manifest says ------------------------------------------------------------------------


def test_socket_mode_is_the_default_and_needs_no_url(manifests: dict[str, dict[str, Any]]) -> None:
    manifest = manifests["socket"]
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert list(urls(manifest)) == []
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


@pytest.mark.parametrize("variant", ["cli", "trailing-slash"])
def test_http_mode_points_every_url_at_the_events_endpoint(
    manifests: dict[str, dict[str, Any]], variant: str
) -> None:
    if variant == "cli":
        manifest = manifests["http"]
    else:
        manifest = yaml.safe_load(manifest_yaml(http_url=HTTP_URL + "/"))
    assert manifest["settings"]["socket_mode_enabled"] is False
    found = dict(urls(manifest))
    assert set(found) == {
        ".features.slash_commands[0].url",
        ".settings.event_subscriptions.request_url",
        ".settings.interactivity.request_url",
    }
    for where, url in found.items():
        assert url == f"{HTTP_URL}/slack/events", where
        assert urlsplit(url).scheme == "https"


def test_it_declares_exactly_the_command_shortcut_events_and_scopes(
    manifests: dict[str, dict[str, Any]],
) -> None:
    for manifest in manifests.values():
        features = manifest["features"]
        assert [c["command"] for c in features["slash_commands"]] == [COMMAND] == ["/feedback"]
        assert features["slash_commands"][0]["should_escape"] is False  # text arrives raw
        assert [(s["type"], s["callback_id"]) for s in features["shortcuts"]] == [
            ("message", str(Callback.REPORT_SHORTCUT))
        ]
        assert manifest["settings"]["event_subscriptions"]["bot_events"] == BOT_EVENTS
        assert manifest["oauth_config"]["scopes"]["bot"] == BOT_SCOPES
        assert features["app_home"]["messages_tab_enabled"] is True  # reports by DM
        assert features["app_home"]["home_tab_enabled"] is ("app_home_opened" in BOT_EVENTS)
        for text, limit in (
            (manifest["display_information"]["name"], 35),
            (manifest["display_information"]["description"], 140),
            (features["bot_user"]["display_name"], 80),
            (features["shortcuts"][0]["name"], 24),
            (features["shortcuts"][0]["description"], 80),
            (features["slash_commands"][0]["description"], 100),
        ):
            assert 0 < len(text) <= limit, text


def test_every_bot_event_has_its_scope() -> None:
    assert list(EVENTS) == BOT_EVENTS
    for event in BOT_EVENTS:
        scope = EVENTS[event]
        assert scope is None or scope in BOT_SCOPES, event
    assert "commands" in BOT_SCOPES  # the slash command and the shortcut
    assert len(BOT_SCOPES) == len(set(BOT_SCOPES))


def test_the_scopes_are_generated_from_the_table_of_methods() -> None:
    """Each scope is there because a listed method, event or feature needs it, and each
    method's scope is granted: adding a method to the table is what grants its scope."""
    needed = {scope for needs in WEB_API.values() for scope in needs.scopes()}
    needed |= {scope for scope in EVENTS.values() if scope} | set(OTHER_SCOPES)
    assert set(BOT_SCOPES) == needed
    assert {"files:write", "chat:write", "im:write"} <= set(BOT_SCOPES)
    for method, needs in WEB_API.items():
        assert needs.why, method
        assert needs.scopes() <= set(BOT_SCOPES), method


def test_the_fake_grants_exactly_the_manifest_and_refuses_the_rest() -> None:
    """Slack answers `missing_scope` to a call the installed app was not granted; so does the
    fake, which installs the manifest's scopes unless told otherwise."""
    with FakeSlack() as fake:
        assert fake.scopes == frozenset(BOT_SCOPES)
    without_files = frozenset(BOT_SCOPES) - {"files:write"}
    with FakeSlack(scopes=without_files) as fake:
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        with pytest.raises(SlackApiError) as refused:
            client.files_upload_v2(filename="a.csv", content=b"a,b\n", channel="CLEAD0001")
        assert refused.value.response["error"] == "missing_scope"
        assert refused.value.response["needed"] == "files:write"
        assert "files:write" not in refused.value.response["provided"].split(",")
    # The conversation decides: a public channel's history needs channels:history.
    without_history = frozenset(BOT_SCOPES) - {"channels:history"}
    with FakeSlack(scopes=without_history) as fake:
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        fake.add_channel("CPUBLIC01")
        fake.add_channel("GPRIVATE1", is_private=True)
        client.conversations_history(channel="GPRIVATE1")
        with pytest.raises(SlackApiError) as refused:
            client.conversations_history(channel="CPUBLIC01")
        assert refused.value.response["needed"] == "channels:history"


def test_a_method_missing_from_the_table_fails_the_test_that_calls_it() -> None:
    with FakeSlack() as fake:
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        posted = client.chat_postMessage(channel="CLEAD0001", text="hello")
        assert "chat.getPermalink" not in WEB_API
        client.chat_getPermalink(channel="CLEAD0001", message_ts=posted["ts"])  # no scope needed
        with pytest.raises(AssertionError, match=r"chat\.getPermalink: called, but not listed"):
            fake.assert_no_violations()


# -- what the app answers ------------------------------------------------------------------------------


def handled(status: int) -> bool:
    """Bolt answers 404 when no listener matched: Slack then sees the app as broken."""
    return status != 404


def message_shortcut(bot: Bot, callback_id: str) -> int:
    message = {"type": "message", "user": ALICE, "ts": "1700000000.000100", "text": "It broke"}
    payload = {
        "type": "message_action",
        "token": "legacy-verification-token",
        "action_ts": "1700000001.000000",
        "team": TEAM,
        "user": {"id": ALICE, "name": "alice", "username": "alice", "team_id": TEAM["id"]},
        "channel": {"id": "CGENERAL1", "name": "general"},
        "callback_id": callback_id,
        "trigger_id": next_id("4660."),
        "message_ts": message["ts"],
        "message": message,
        "response_url": bot.slack.new_response_url(),
    }
    return bot.interactive(payload).status


def command(bot: Bot, name: str) -> int:
    """A slash command as Slack posts it (a form body)."""
    form = {
        "token": "legacy-verification-token",
        "team_id": TEAM["id"],
        "team_domain": TEAM["domain"],
        "channel_id": "CGENERAL1",
        "channel_name": "general",
        "user_id": ALICE,
        "user_name": "alice",
        "command": name,
        "text": "",
        "api_app_id": "A0FEEDBOT",
        "response_url": bot.slack.new_response_url(),
        "trigger_id": next_id("1337."),
    }
    return bot.dispatch(urlencode(form), "application/x-www-form-urlencoded").status


# Event types Slack could send; the app must handle exactly those the manifest subscribes to.
PROBE_EVENTS: dict[str, dict[str, Any]] = {
    "message.channels": {"type": "message", "channel": "CINTAKE01", "channel_type": "channel"},
    "message.groups": {"type": "message", "channel": "GPRIVATE1", "channel_type": "group"},
    "message.im": {"type": "message", "channel": "DALICE001", "channel_type": "im"},
    "app_home_opened": {"type": "app_home_opened", "tab": "home", "channel": "DALICE001"},
    "app_mention": {"type": "app_mention", "channel": "CGENERAL1"},
    "reaction_added": {"type": "reaction_added", "reaction": "eyes"},
    "member_joined_channel": {"type": "member_joined_channel", "channel": "CGENERAL1"},
    "team_join": {"type": "team_join"},
    "app_uninstalled": {"type": "app_uninstalled"},
    "tokens_revoked": {"type": "tokens_revoked"},
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_everything_declared_is_answered_and_everything_answered_is_declared(
    bot: Bot, manifests: dict[str, dict[str, Any]]
) -> None:
    bot.setup_team()
    manifest = manifests["http"]
    declared_commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    for name in declared_commands:
        assert command(bot, name) == 200, name
    assert not handled(command(bot, "/feedbot-unknown"))  # the probe can tell the difference

    declared_shortcuts = {s["callback_id"] for s in manifest["features"]["shortcuts"]}
    answered_shortcuts = {c.value for c in Callback if handled(message_shortcut(bot, c.value))}
    assert answered_shortcuts == declared_shortcuts

    declared_events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert declared_events <= set(PROBE_EVENTS), "add the new event to PROBE_EVENTS"
    answered_events = set()
    for name, event in PROBE_EVENTS.items():
        ts = next_id("1700000002.")
        response = bot.event({"user": ALICE, "text": "hello", "ts": ts, "event_ts": ts, **event})
        if handled(response.status):
            assert response.status == 200, name
            answered_events.add(name)
    assert answered_events == declared_events
