"""Messages in English and German.

`t(locale, key, **params)` formats one message; both catalogues must have the same keys with
the same placeholders (a test checks). Reporting and triage live in `en.py`/`de.py`; later
features keep both languages side by side in a module of their own. Placeholders are filled with text that is already
escaped where it came from a person.
"""

from __future__ import annotations

from typing import Any

from feedbot.slack.i18n import admin, de, digest, en, incidents, reminders, webhooks

_FEATURES = (digest, reminders, admin, incidents, webhooks)
CATALOGUES: dict[str, dict[str, str]] = {
    "en": {**en.MESSAGES, **{k: v for f in _FEATURES for k, v in f.EN.items()}},
    "de": {**de.MESSAGES, **{k: v for f in _FEATURES for k, v in f.DE.items()}},
}
LANGUAGES = tuple(CATALOGUES)
DEFAULT = "en"


def language_of(locale: str | None) -> str:
    """`de-DE` → `de`; anything unknown falls back to English."""
    code = (locale or "").split("-")[0].split("_")[0].lower()
    return code if code in CATALOGUES else DEFAULT


def t(locale: str, key: str, **params: Any) -> str:
    catalogue = CATALOGUES.get(language_of(locale), CATALOGUES[DEFAULT])
    template = catalogue.get(key) or CATALOGUES[DEFAULT][key]
    return template.format(**params) if params else template


def number(locale: str, value: int) -> str:
    """A whole number as the reader writes it: 12,345 in English, 12.345 in German."""
    grouped = f"{value:,}"
    return grouped.replace(",", ".") if language_of(locale) == "de" else grouped


def has(key: str) -> bool:
    return key in CATALOGUES[DEFAULT]
