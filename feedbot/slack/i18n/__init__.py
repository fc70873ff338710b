"""Messages in English and German.

`t(locale, key, **params)` formats one message; both catalogues must have the same keys with
the same placeholders (a test checks). A message that depends on a number has a form per
plural category (`key.one`, `key.other`), chosen by its `count` with the language's plural
rules from Babel (CLDR); `count` is then shown with the reader's digit grouping. Numbers,
durations and date ranges are formatted by Babel too, never by hand. Reporting and triage live in `en.py`/`de.py`; later
features keep both languages side by side in a module of their own. Placeholders are filled with text that is already
escaped where it came from a person.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from typing import Any

from babel import Locale
from babel.dates import format_interval
from babel.numbers import format_decimal
from babel.units import format_unit

from feedbot.slack.i18n import admin, de, digest, en, files, incidents, reminders, webhooks

_FEATURES = (digest, reminders, admin, incidents, files, webhooks)
CATALOGUES: dict[str, dict[str, str]] = {
    "en": {**en.MESSAGES, **{k: v for f in _FEATURES for k, v in f.EN.items()}},
    "de": {**de.MESSAGES, **{k: v for f in _FEATURES for k, v in f.DE.items()}},
}
LANGUAGES = tuple(CATALOGUES)
DEFAULT = "en"
BABEL_LOCALES = {"en": "en_GB", "de": "de_DE"}
"""English as it is written in Europe, where feedbot's companies are: 16 Nov 2026, 24 hours."""


def language_of(locale: str | None) -> str:
    """`de-DE` → `de`; anything unknown falls back to English."""
    code = (locale or "").split("-")[0].split("_")[0].lower()
    return code if code in CATALOGUES else DEFAULT


@cache
def babel_locale(language: str) -> Locale:
    return Locale.parse(BABEL_LOCALES.get(language, BABEL_LOCALES[DEFAULT]))


def t(locale: str, key: str, **params: Any) -> str:
    language = language_of(locale)
    catalogue = CATALOGUES[language]
    if key not in CATALOGUES[DEFAULT] and f"{key}.other" in CATALOGUES[DEFAULT]:
        count = int(params["count"])
        form = babel_locale(language).plural_form(count)
        key = f"{key}.{form}" if f"{key}.{form}" in CATALOGUES[DEFAULT] else f"{key}.other"
        params = {**params, "count": number(locale, count)}
    template = catalogue.get(key) or CATALOGUES[DEFAULT][key]
    return template.format(**params) if params else template


def number(locale: str, value: int) -> str:
    """A whole number as the reader writes it: 12,345 in English, 12.345 in German."""
    return format_decimal(value, locale=babel_locale(language_of(locale)))


def duration(span: timedelta, locale: str) -> str:
    """Two units at most, rounded down, never more than days: `2 days 4 hours`,
    `1 Tag 4 Stunden`, `12 minutes`, `13 days` (not "2 weeks": response times are read as
    days)."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        parts = [(days, "duration-day")] + ([(hours, "duration-hour")] if hours else [])
    elif hours:
        parts = [(hours, "duration-hour")] + ([(minutes, "duration-minute")] if minutes else [])
    else:
        parts = [(minutes, "duration-minute")]
    where = babel_locale(language_of(locale))
    return " ".join(format_unit(value, unit, length="long", locale=where) for value, unit in parts)


def date_range(first: date, last: date, locale: str) -> str:
    """`16–22 Nov 2026`, `30 Nov – 6 Dec 2026`, `28. Dez. 2026 – 3. Jan. 2027`."""
    return format_interval(first, last, "yMMMd", locale=babel_locale(language_of(locale)))


def has(key: str) -> bool:
    return key in CATALOGUES[DEFAULT]
