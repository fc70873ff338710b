"""No report can ping anyone or break a message, whatever its text."""

from __future__ import annotations

import json

import pytest

from feedbot.slack.text import escape, quote, unescape
from tests.harness import ALICE, INTAKE, LEADER, LEADER_2, LEADERSHIP, Bot
from tests.test_reporting import form_values

HOSTILE = [
    "<!channel> the whole region is down",
    "<!here> <!everyone> <@U0BOSS001> <!subteam^S0TEAM|@leads> please look",
    "Kunde: <https://evil.example|Rechnung> & Gutschrift <b>jetzt</b>",
    "😡📵🔥 Netz weg seit 3 Tagen 🙏🏽",
    "العميل غاضب جدا من الفاتورة ‏RTL‏ mixed",
    "control\x00chars\x07 and \x1b[31mansi\x1b[0m",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_quote_makes_any_text_inert(text: str) -> None:
    quoted = quote(text, 3000)
    assert "<" not in quoted and ">" not in quoted
    assert unescape(quoted) == text


def test_quote_never_cuts_an_entity_in_half() -> None:
    text = "a" * 2998 + "&&&"
    quoted = quote(text, 3000)
    assert len(quoted) <= 3000
    assert quoted.endswith("…") and not quoted[:-1].endswith("&am")


def test_escape_is_ampersand_first() -> None:
    assert escape("<&>") == "&lt;&amp;&gt;"


def test_hostile_reports_reach_leadership_without_pinging_anyone(bot: Bot) -> None:
    bot.setup_team()
    for text in HOSTILE:
        response = bot.command(ALICE, text)
        assert response.status == 200
        assert bot.slack.mentions(json.loads(response.body)) == []
    bot.drain()
    for message in bot.slack.messages(LEADERSHIP):
        # The card names its (non-anonymous) reporter; nothing from the text may ping.
        assert bot.slack.mentions(message) == [f"<@{ALICE}>"], message["text"]
    stored = [r.text for r in bot.reports()]
    assert stored[0] == HOSTILE[0]
    assert stored[5] == "controlchars and [31mansi[0m", (
        "control characters are dropped, the rest kept"
    )


def test_a_40000_character_message_is_stored_whole_and_shown_bounded(bot: Bot) -> None:
    bot.setup_team()
    text = ("Störung <!channel> & " * 2000)[:40_000]
    bot.message(ALICE, escape(text), channel=INTAKE)
    report = bot.report()
    assert report.text == text.strip()
    bot.drain()
    card = bot.card(report)
    assert bot.slack.mentions(card) == [f"<@{ALICE}>"]
    assert len(card["text"]) < 4000
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in card["blocks"])


def test_a_too_long_command_is_refused_with_a_clear_message(bot: Bot) -> None:
    bot.setup_team()
    body = json.loads(bot.command(ALICE, "x" * 3500).body)
    assert "3,000" in body["text"]
    assert bot.reports() == []


def test_critical_mentions_only_configured_leaders(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "")
    values = form_values(
        "<!channel> <@U0BOSS001> everything is on fire",
        urgency={"type": "static_select", "selected_option": {"value": "critical"}},
    )
    bot.submit(ALICE, bot.last_view(), values)
    bot.drain()
    mentions = bot.slack.mentions(bot.card(bot.report()))
    assert set(mentions) == {f"<@{ALICE}>", f"<@{LEADER}>", f"<@{LEADER_2}>"}


def test_text_cannot_disguise_itself(bot: Bot) -> None:
    """Direction overrides and zero-width characters are gone before anyone sees the text."""
    bot.setup_team()
    disguised = "Rechnung\u202egpj.exe von @chan\u200bnel\u2066 bitte \ufeffprüfen \U0001f469\u200d\U0001f527"
    bot.command(ALICE, disguised)
    bot.message(ALICE, "Kasse\u200b 3 \u202ahängt\u202c")
    first, second = bot.reports()
    assert first.text == "Rechnunggpj.exe von @channel bitte prüfen \U0001f469\u200d\U0001f527"
    assert second.text == "Kasse 3 hängt"
    bot.drain()
    shown = json.dumps(bot.slack.messages(LEADERSHIP), ensure_ascii=False)
    assert not any(c in shown for c in "\u202e\u202a\u202c\u2066\u200b\ufeff")
