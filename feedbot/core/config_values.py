"""Parsers for runtime configuration values: text an admin typed in, a typed value out.

Each raises `InvalidValue` with a message that shows what a good value looks like, because
the admin reads it in Slack or in a terminal and must be able to fix the value at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedbot.errors import InvalidValue

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")

DEFAULT_CATEGORIES = (
    "Network & coverage",
    "Devices & hardware",
    "Billing & tariffs",
    "Shop & tools",
    "IT systems",
    "Customer experience",
    "Other",
)


def split_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def ids(pattern: re.Pattern[str], example: str, what: str) -> Callable[[str], list[str]]:
    def parse(raw: str) -> list[str]:
        values = split_list(raw)
        bad = [value for value in values if not pattern.match(value)]
        if bad:
            raise InvalidValue(
                f"not {what}: {', '.join(bad)} (expected IDs like {example}, comma-separated)"
            )
        return list(dict.fromkeys(values))

    return parse


def channel(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not CHANNEL_ID.match(raw):
        raise InvalidValue(
            f"{raw} is not a Slack channel ID (expected an ID like C0123ABCD: "
            "in Slack, open the channel's details and copy the ID at the bottom)"
        )
    return raw


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"true", "yes", "on", "1"}:
        return True
    if value in {"false", "no", "off", "0"}:
        return False
    raise InvalidValue(f"{raw!r} is not true or false")


def timezone(raw: str) -> str | None:
    """An empty value goes back to the default (FEEDBOT_TIMEZONE), like an unset channel."""
    value = raw.strip()
    if not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidValue(f"{raw!r} is not an IANA timezone (like Europe/Berlin)") from exc
    return value


def names(raw: str) -> list[str]:
    values = list(dict.fromkeys(split_list(raw)))
    too_long = [value for value in values if len(value) > 75]
    if too_long:
        raise InvalidValue(f"names must be at most 75 characters: {too_long[0][:80]}")
    if len(values) > 100:
        raise InvalidValue("at most 100 entries")
    return values


def categories(raw: str) -> list[str]:
    """Like `names`, but never empty: the report form's category select needs an option."""
    values = names(raw)
    if not values:
        raise InvalidValue("at least one category is needed (comma-separated names)")
    return values


def language(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"en", "de"}:
        raise InvalidValue(f"{raw!r} is not a supported language (en or de)")
    return value


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d{1,4})\s*([mhd])\s*$", re.IGNORECASE)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
URGENCIES = ("critical", "high", "normal", "low")


def duration(raw: str) -> str:
    """`90m`, `4h` or `2d` (d = working days where working hours apply)."""
    match = _DURATION.match(raw)
    if not match or int(match.group(1)) == 0:
        raise InvalidValue(f"{raw!r} is not a duration (like 30m, 4h or 1d)")
    return f"{int(match.group(1))}{match.group(2).lower()}"


def rate(raw: str) -> str:
    """`10/10m`: at most 10 reports per person in any 10 minutes; `0` turns the limit off."""
    value = raw.strip().lower().replace(" ", "")
    if value in {"0", "off"}:
        return "0"
    reports, _, window = value.partition("/")
    if not reports.isdigit() or not 1 <= int(reports) <= 1000 or not window:
        raise InvalidValue(f"{raw!r} is not a rate like 10/10m (reports per time), or 0 for none")
    return f"{int(reports)}/{duration(window)}"


def clock(raw: str) -> str:
    match = _CLOCK.match(raw.strip())
    if not match:
        raise InvalidValue(f"{raw!r} is not a time of day (like 08:00)")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def weekday_time(raw: str) -> str:
    """`mon 08:00`: a weekly moment, in the configured timezone."""
    parts = raw.strip().lower().split()
    if len(parts) != 2 or parts[0][:3] not in WEEKDAYS:
        raise InvalidValue(f"{raw!r} is not a weekday and time (like mon 08:00)")
    return f"{parts[0][:3]} {clock(parts[1])}"


def weekdays(raw: str) -> list[str]:
    days = [part.lower()[:3] for part in split_list(raw)]
    bad = [day for day in days if day not in WEEKDAYS]
    if bad or not days:
        raise InvalidValue(f"expected weekdays like mon,tue,wed,thu,fri; got {raw!r}")
    return sorted(set(days), key=WEEKDAYS.index)


def hours(raw: str) -> str:
    start, _, end = raw.partition("-")
    start, end = clock(start), clock(end)
    if start >= end:
        raise InvalidValue(f"{raw!r}: working hours must start before they end (like 08:00-18:00)")
    return f"{start}-{end}"


def dates(raw: str) -> list[str]:
    values = []
    for part in split_list(raw):
        try:
            values.append(datetime.strptime(part, "%Y-%m-%d").date().isoformat())
        except ValueError:
            raise InvalidValue(f"{part!r} is not a date like 2026-12-24") from None
    return sorted(set(values))


def targets(raw: str) -> dict[str, str]:
    """`critical=1h,high=4h,normal=1d,low=3d`; urgencies left out keep their default."""
    chosen = dict(DEFAULT_TARGETS)
    for part in split_list(raw):
        urgency, _, amount = part.partition("=")
        if urgency.strip().lower() not in URGENCIES:
            raise InvalidValue(
                f"{part!r}: expected urgency=duration, urgency one of {', '.join(URGENCIES)}"
            )
        chosen[urgency.strip().lower()] = duration(amount)
    return chosen


def count(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise InvalidValue(f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise InvalidValue(f"{value} is out of range ({low} to {high})")
        return value

    return parse


def usergroup(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not re.match(r"^S[A-Z0-9]{2,}$", value):
        raise InvalidValue(f"{raw!r} is not a Slack user group ID (like S0123ABCD)")
    return value


def holiday_region(raw: str) -> str | None:
    """`DE` or `DE-NW`: a country's public holidays, and a region's (Germany's differ by
    state), as the `holidays` package knows them. Empty: only the admin-kept list."""
    import holidays  # only when an admin sets it: the package is large

    value = raw.strip()
    if not value:
        return None
    country, _, region = value.partition("-")
    country = country.upper()
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise InvalidValue(f"{raw!r} is not a country code with known holidays (like DE or AT)")
    if not region:
        return country
    regions = {name.upper(): name for name in supported[country]}
    if region.upper() not in regions:
        known = ", ".join(sorted(supported[country])[:40])
        raise InvalidValue(f"{raw!r}: {country} has no region {region!r}; known: {known}")
    return f"{country}-{regions[region.upper()]}"


user_ids = ids(USER_ID, "U0123ABCD", "user IDs")


DEFAULT_TARGETS = {"critical": "1h", "high": "4h", "normal": "1d", "low": "3d"}


def routes(raw: str) -> list[dict[str, Any]]:
    """Regional or topical leadership channels, as JSON:
    `[{"channel": "C0123ABCD", "categories": ["Billing & tariffs"], "locations": ["Leipzig"],
    "leaders": ["U0123ABCD"], "leaders_usergroup": "S0123ABCD"}]`.
    A report goes to the first route whose filters it matches (an empty filter matches all),
    else to `leadership_channel`. A route's own leaders triage, are reminded of and are
    escalated to for the reports routed there only."""
    if not raw.strip():
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidValue(
            'expected a JSON list like [{"channel": "C0123ABCD", "locations": ["Leipzig"]}]'
        ) from None
    if not isinstance(data, list) or len(data) > 50:
        raise InvalidValue("expected a JSON list of at most 50 routes")
    parsed = []
    for item in data:
        if not isinstance(item, dict) or set(item) - {
            "channel",
            "categories",
            "locations",
            "language",
            "leaders",
            "leaders_usergroup",
        }:
            raise InvalidValue(
                "each route has channel, and optionally categories, locations, language, "
                "leaders, leaders_usergroup"
            )
        channel_id = channel(str(item.get("channel", "")))
        if channel_id is None:
            raise InvalidValue("each route needs a channel ID")
        route: dict[str, Any] = {
            "channel": channel_id,
            "categories": names(",".join(map(str, item.get("categories") or []))),
            "locations": names(",".join(map(str, item.get("locations") or []))),
        }
        if item.get("language"):
            route["language"] = language(str(item["language"]))
        if item.get("leaders"):
            route["leaders"] = user_ids(",".join(map(str, item["leaders"])))
        if item.get("leaders_usergroup"):
            route["leaders_usergroup"] = usergroup(str(item["leaders_usergroup"]))
        parsed.append(route)
    return parsed
