"""Property-based tests: whatever Slack (or someone pretending to be Slack) sends, feedbot
answers without a 5xx, pings nobody through user text, stays within Block Kit limits (the fake
Slack fails the test otherwise) and never shows a database error to a person."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedbot.slack.text import quote, unescape
from tests.harness import ALICE, INTAKE, LEADER, Bot

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MENTIONY = st.sampled_from(
    [
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<@U0BOSS01>",
        "<!subteam^S1>",
        "&",
        "<",
        ">",
        "&amp;",
        "\u202e",
        "\x00",
        "🔥",
    ]
)
TEXTS = st.lists(st.one_of(st.text(max_size=60), MENTIONY), max_size=12).map("".join)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(text=st.text(max_size=5000))
def test_quote_is_inert_bounded_and_reversible(text: str) -> None:
    quoted = quote(text, 3000)
    assert "<" not in quoted and ">" not in quoted
    assert len(quoted) <= 3000
    if len(quoted) < 3000 and not quoted.endswith("…"):
        assert unescape(quoted) == text


@PROPERTY_SETTINGS
@given(text=TEXTS)
def test_any_report_text_is_filed_safely(bot: Bot, text: str) -> None:
    bot.setup_team()
    response = bot.command(ALICE, text)
    assert response.status == 200
    body = json.loads(response.body) if response.body else {}
    assert "sqlalchemy" not in response.body.lower() and "traceback" not in response.body.lower()
    assert bot.slack.mentions(body) == []
    bot.drain()
    for message in bot.slack.messages("CLEAD0001"):
        assert set(bot.slack.mentions(message)) <= {f"<@{ALICE}>", f"<@{LEADER}>", "<@ULEADER02>"}


@PROPERTY_SETTINGS
@given(
    payload=st.dictionaries(
        st.sampled_from(
            [
                "type",
                "user",
                "actions",
                "view",
                "trigger_id",
                "channel",
                "message",
                "team",
                "container",
            ]
        ),
        JSONISH,
        max_size=9,
    )
)
def test_malformed_interactive_payloads_never_cause_a_5xx(
    bot: Bot, payload: dict[str, Any]
) -> None:
    bot.setup_team()
    for kind in ("block_actions", "view_submission", "message_action", payload.get("type")):
        candidate = dict(payload)
        if isinstance(kind, str):
            candidate["type"] = kind
        response = bot.interactive(candidate)
        assert response.status < 500, (candidate, response.status, response.body)


@PROPERTY_SETTINGS
@given(
    action_id=st.sampled_from(
        [
            "triage_acknowledge",
            "triage_claim",
            "triage_resolve",
            "report_me_too",
            "report_me_too_instead",
            "admin_edit_settings",
            "triage_assign",
            "no_such_action",
        ]
    ),
    value=st.one_of(st.none(), st.text(max_size=12), st.integers().map(str)),
    user=st.sampled_from([ALICE, LEADER, "UFORGED01", "", "not-a-user"]),
)
def test_forged_button_presses_change_nothing_they_should_not(
    bot: Bot, action_id: str, value: str | None, user: str
) -> None:
    bot.setup_team()
    bot.command(ALICE, "A report to poke at")
    response = bot.press(user, action_id, value, channel=INTAKE)
    assert response.status < 500
    report = bot.report()
    if user != LEADER:
        assert (
            report.acknowledged_at is None and report.owner_id is None and report.status == "open"
        )


@PROPERTY_SETTINGS
@given(
    body=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        JSONISH.map(json.dumps),
    )
)
def test_garbage_bodies_are_answered_without_a_5xx(bot: Bot, body: str) -> None:
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        response = bot.dispatch(body, content_type)
        assert response.status < 500


@PROPERTY_SETTINGS
@given(
    event=st.dictionaries(
        st.sampled_from(
            [
                "type",
                "user",
                "text",
                "channel",
                "ts",
                "subtype",
                "channel_type",
                "thread_ts",
                "message",
                "bot_id",
                "files",
            ]
        ),
        JSONISH,
        max_size=10,
    )
)
def test_malformed_events_never_cause_a_5xx(bot: Bot, event: dict[str, Any]) -> None:
    bot.setup_team()
    event.setdefault("type", "message")
    response = bot.event(event)
    assert response.status < 500, (event, response.body)


def test_printable_identifiers_survive() -> None:
    assert all(c in string.printable for c in "FB-1001")
