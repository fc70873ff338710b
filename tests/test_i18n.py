"""Every message exists in English and German, with the same placeholders."""

from __future__ import annotations

import json
import string

import pytest

from feedbot.slack.i18n import CATALOGUES, language_of, t
from tests.harness import BOB, Bot


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_keys() -> None:
    english, german = CATALOGUES["en"], CATALOGUES["de"]
    assert set(english) - set(german) == set(), "missing in German"
    assert set(german) - set(english) == set(), "missing in English"


@pytest.mark.parametrize("key", sorted(CATALOGUES["en"]))
def test_placeholders_match(key: str) -> None:
    assert placeholders(CATALOGUES["en"][key]) == placeholders(CATALOGUES["de"][key])


def test_german_is_not_a_copy_of_english() -> None:
    same = [k for k, v in CATALOGUES["en"].items() if CATALOGUES["de"][k] == v and len(v) > 12]
    assert len(same) < len(CATALOGUES["en"]) // 10, same


def test_locale_resolution() -> None:
    assert language_of("de-DE") == "de"
    assert language_of("de_AT") == "de"
    assert language_of("fr-FR") == "en"
    assert language_of(None) == "en"
    assert t("de-CH", "status.open") == "Offen"


def test_numbers_follow_the_reader_language() -> None:
    from feedbot.slack.i18n import number

    assert number("en-US", 12345) == "12,345"
    assert number("de-DE", 12345) == "12.345"


def test_counted_messages_take_the_languages_plural_form() -> None:
    one = t("en", "digest.resolved_in", median="1 day", p90="1 day", count=1)
    many = t("de", "digest.resolved_in", median="1 Tag", p90="2 Tage", count=3000)
    assert one == "Resolved: *1 day* (1 report)"
    assert many == "Gelöst: Median *1 Tag*, 90 % innerhalb von *2 Tage* (3.000 Meldungen)"
    assert t("de", "ysd.fallback", count=1, week=47).endswith(
        "1 gemeldetes Problem wurde in KW 47 gelöst."
    )


def test_plural_forms_come_in_pairs() -> None:
    for language, catalogue in CATALOGUES.items():
        for key in catalogue:
            if key.endswith(".one"):
                assert key[: -len(".one")] + ".other" in catalogue, (language, key)


def test_a_german_reporter_reads_limits_the_german_way(bot: Bot) -> None:
    bot.setup_team()
    body = json.loads(bot.command(BOB, "x" * 3500).body)
    assert "3.000" in body["text"] and "3.500" in body["text"]
