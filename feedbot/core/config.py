"""Runtime configuration: settings admins change while the bot runs, stored in the database.

Every key is declared once in `KEYS` with its parser, default and help text; the CLI, the
Slack layer and `.env`-independent defaults all read from that table. Values are stored as
JSON so lists and booleans keep their type.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session, select

from feedbot.errors import InvalidValue
from feedbot.models import AuditEntry, ConfigEntry, utcnow

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


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _ids(pattern: re.Pattern[str], example: str, what: str) -> Callable[[str], list[str]]:
    def parse(raw: str) -> list[str]:
        values = _split(raw)
        bad = [value for value in values if not pattern.match(value)]
        if bad:
            raise InvalidValue(
                f"not {what}: {', '.join(bad)} (expected IDs like {example}, comma-separated)"
            )
        return list(dict.fromkeys(values))

    return parse


def _channel(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not CHANNEL_ID.match(raw):
        raise InvalidValue(
            f"{raw} is not a Slack channel ID (expected an ID like C0123ABCD: "
            "in Slack, open the channel's details and copy the ID at the bottom)"
        )
    return raw


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"true", "yes", "on", "1"}:
        return True
    if value in {"false", "no", "off", "0"}:
        return False
    raise InvalidValue(f"{raw!r} is not true or false")


def _timezone(raw: str) -> str | None:
    """An empty value goes back to the default (FEEDBOT_TIMEZONE), like an unset channel."""
    value = raw.strip()
    if not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidValue(f"{raw!r} is not an IANA timezone (like Europe/Berlin)") from exc
    return value


def _names(raw: str) -> list[str]:
    values = list(dict.fromkeys(_split(raw)))
    too_long = [value for value in values if len(value) > 75]
    if too_long:
        raise InvalidValue(f"names must be at most 75 characters: {too_long[0][:80]}")
    if len(values) > 100:
        raise InvalidValue("at most 100 entries")
    return values


def _categories(raw: str) -> list[str]:
    """Like `_names`, but never empty: the report form's category select needs an option."""
    values = _names(raw)
    if not values:
        raise InvalidValue("at least one category is needed (comma-separated names)")
    return values


def _language(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"en", "de"}:
        raise InvalidValue(f"{raw!r} is not a supported language (en or de)")
    return value


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d{1,4})\s*([mhd])\s*$", re.IGNORECASE)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
URGENCIES = ("critical", "high", "normal", "low")


def _duration(raw: str) -> str:
    """`90m`, `4h` or `2d` (d = working days where working hours apply)."""
    match = _DURATION.match(raw)
    if not match or int(match.group(1)) == 0:
        raise InvalidValue(f"{raw!r} is not a duration (like 30m, 4h or 1d)")
    return f"{int(match.group(1))}{match.group(2).lower()}"


def _rate(raw: str) -> str:
    """`10/10m`: at most 10 reports per person in any 10 minutes; `0` turns the limit off."""
    value = raw.strip().lower().replace(" ", "")
    if value in {"0", "off"}:
        return "0"
    count, _, window = value.partition("/")
    if not count.isdigit() or not 1 <= int(count) <= 1000 or not window:
        raise InvalidValue(f"{raw!r} is not a rate like 10/10m (reports per time), or 0 for none")
    return f"{int(count)}/{_duration(window)}"


def _clock(raw: str) -> str:
    match = _CLOCK.match(raw.strip())
    if not match:
        raise InvalidValue(f"{raw!r} is not a time of day (like 08:00)")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _weekday_time(raw: str) -> str:
    """`mon 08:00`: a weekly moment, in the configured timezone."""
    parts = raw.strip().lower().split()
    if len(parts) != 2 or parts[0][:3] not in WEEKDAYS:
        raise InvalidValue(f"{raw!r} is not a weekday and time (like mon 08:00)")
    return f"{parts[0][:3]} {_clock(parts[1])}"


def _weekdays(raw: str) -> list[str]:
    days = [part.lower()[:3] for part in _split(raw)]
    bad = [day for day in days if day not in WEEKDAYS]
    if bad or not days:
        raise InvalidValue(f"expected weekdays like mon,tue,wed,thu,fri; got {raw!r}")
    return sorted(set(days), key=WEEKDAYS.index)


def _hours(raw: str) -> str:
    start, _, end = raw.partition("-")
    start, end = _clock(start), _clock(end)
    if start >= end:
        raise InvalidValue(f"{raw!r}: working hours must start before they end (like 08:00-18:00)")
    return f"{start}-{end}"


def _dates(raw: str) -> list[str]:
    values = []
    for part in _split(raw):
        try:
            values.append(datetime.strptime(part, "%Y-%m-%d").date().isoformat())
        except ValueError:
            raise InvalidValue(f"{part!r} is not a date like 2026-12-24") from None
    return sorted(set(values))


def _targets(raw: str) -> dict[str, str]:
    """`critical=1h,high=4h,normal=1d,low=3d`; urgencies left out keep their default."""
    targets = dict(DEFAULT_TARGETS)
    for part in _split(raw):
        urgency, _, duration = part.partition("=")
        if urgency.strip().lower() not in URGENCIES:
            raise InvalidValue(
                f"{part!r}: expected urgency=duration, urgency one of {', '.join(URGENCIES)}"
            )
        targets[urgency.strip().lower()] = _duration(duration)
    return targets


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise InvalidValue(f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise InvalidValue(f"{value} is out of range ({low} to {high})")
        return value

    return parse


def _usergroup(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not re.match(r"^S[A-Z0-9]{2,}$", value):
        raise InvalidValue(f"{raw!r} is not a Slack user group ID (like S0123ABCD)")
    return value


DEFAULT_TARGETS = {"critical": "1h", "high": "4h", "normal": "1d", "low": "3d"}


def _routes(raw: str) -> list[dict[str, Any]]:
    """Regional or topical leadership channels, as JSON:
    `[{"channel": "C0123ABCD", "categories": ["Billing & tariffs"], "locations": ["Leipzig"]}]`.
    A report goes to the first route whose filters it matches (an empty filter matches all),
    else to `leadership_channel`."""
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
    routes = []
    for item in data:
        if not isinstance(item, dict) or set(item) - {
            "channel",
            "categories",
            "locations",
            "language",
        }:
            raise InvalidValue(
                "each route has channel, and optionally categories, locations, language"
            )
        channel = _channel(str(item.get("channel", "")))
        if channel is None:
            raise InvalidValue("each route needs a channel ID")
        route: dict[str, Any] = {
            "channel": channel,
            "categories": _names(",".join(map(str, item.get("categories") or []))),
            "locations": _names(",".join(map(str, item.get("locations") or []))),
        }
        if item.get("language"):
            route["language"] = _language(str(item["language"]))
        routes.append(route)
    return routes


@dataclass(frozen=True)
class ConfigKey:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str


KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("leadership_channel", _channel, None, "channel ID where leaders see reports"),
        ConfigKey(
            "intake_channels",
            _ids(CHANNEL_ID, "C0123ABCD", "channel IDs"),
            [],
            "channel IDs where every new message becomes a report",
        ),
        ConfigKey("leaders", _ids(USER_ID, "U0123ABCD", "user IDs"), [], "user IDs of leaders"),
        ConfigKey(
            "admins",
            _ids(USER_ID, "U0123ABCD", "user IDs"),
            [],
            "user IDs of admins (besides FEEDBOT_ADMINS)",
        ),
        ConfigKey("timezone", _timezone, None, "IANA timezone (default FEEDBOT_TIMEZONE)"),
        ConfigKey("allow_anonymous", _bool, True, "whether reporters may stay anonymous"),
        ConfigKey("categories", _categories, list(DEFAULT_CATEGORIES), "report categories"),
        ConfigKey(
            "confidential_categories",
            _names,
            [],
            "categories shown only in leadership channels (e.g. People & conduct)",
        ),
        ConfigKey("locations", _names, [], "shops, sites or regions (empty: free text)"),
        ConfigKey("language", _language, "en", "default language: en or de"),
        ConfigKey("leadership_routes", _routes, [], "regional/topical leadership channels (JSON)"),
        ConfigKey(
            "leaders_usergroup", _usergroup, None, "Slack user group whose members are leaders"
        ),
        ConfigKey("digest_schedule", _weekday_time, "mon 08:00", "when the weekly digest goes out"),
        ConfigKey("allstaff_channel", _channel, None, "channel for the weekly 'you said, we did'"),
        ConfigKey(
            "escalation_channel",
            _channel,
            None,
            "where overdue reports escalate (default: admins by DM)",
        ),
        ConfigKey(
            "response_targets", _targets, dict(DEFAULT_TARGETS), "time to acknowledge per urgency"
        ),
        ConfigKey("reminder_interval", _duration, "4h", "time between repeated reminders"),
        ConfigKey("reminder_cap", _count(1, 20), 3, "reminders before escalating"),
        ConfigKey("working_days", _weekdays, list(WEEKDAYS[:5]), "days reminders may go out"),
        ConfigKey(
            "working_hours", _hours, "08:00-18:00", "hours reminders may go out (recipient's time)"
        ),
        ConfigKey("holidays", _dates, [], "dates without reminders (YYYY-MM-DD, comma-separated)"),
        ConfigKey(
            "retention_days", _count(0, 36500), 730, "days resolved reports are kept (0: forever)"
        ),
        ConfigKey(
            "burst_threshold", _count(0, 10000), 5, "similar reports that make an incident (0: off)"
        ),
        ConfigKey("burst_window_minutes", _count(1, 1440), 15, "window for counting a burst"),
        ConfigKey(
            "report_rate_limit",
            _rate,
            "10/10m",
            "reports one person may file in a time (like 10/10m; 0: no limit)",
        ),
    )
}


@dataclass(frozen=True)
class RuntimeConfig:
    """A snapshot of every key, with defaults filled in. Cheap to pass around."""

    leadership_channel: str | None = None
    intake_channels: list[str] = field(default_factory=list)
    leaders: list[str] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)
    timezone: str | None = None
    allow_anonymous: bool = True
    categories: list[str] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    confidential_categories: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    language: str = "en"
    leadership_routes: list[dict[str, Any]] = field(default_factory=list)
    leaders_usergroup: str | None = None
    digest_schedule: str = "mon 08:00"
    allstaff_channel: str | None = None
    escalation_channel: str | None = None
    response_targets: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    reminder_interval: str = "4h"
    reminder_cap: int = 3
    working_days: list[str] = field(default_factory=lambda: list(WEEKDAYS[:5]))
    working_hours: str = "08:00-18:00"
    holidays: list[str] = field(default_factory=list)
    retention_days: int = 730
    burst_threshold: int = 5
    burst_window_minutes: int = 15
    report_rate_limit: str = "10/10m"
    bootstrap_admins: tuple[str, ...] = ()
    default_timezone: str = "Europe/Berlin"
    group_leaders: frozenset[str] = frozenset()
    """Members of `leaders_usergroup`, resolved by the Slack layer."""

    @property
    def rate_limit(self) -> tuple[int, timedelta] | None:
        """Reports one person may file per window (`report_rate_limit`), or None for no limit;
        a day here is 24 hours."""
        if self.report_rate_limit in ("", "0"):
            return None
        count, _, window = self.report_rate_limit.partition("/")
        amount, unit = int(window[:-1]), window[-1]
        return int(count), timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})

    def is_confidential(self, category: str) -> bool:
        """Reports in this category appear only in leadership channels: never in suggestions,
        in "you said, we did", or in a forwarded copy."""
        return category in self.confidential_categories

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins or user_id in self.bootstrap_admins

    def is_leader(self, user_id: str) -> bool:
        """Leaders may triage; admins may too, so a small team can start with one person."""
        return user_id in self.leaders or user_id in self.group_leaders or self.is_admin(user_id)

    def route_for(self, *, category: str, location: str | None) -> str | None:
        """The leadership channel a report with this category and location goes to."""
        for route in self.leadership_routes:
            if route["categories"] and category not in route["categories"]:
                continue
            if route["locations"] and location not in route["locations"]:
                continue
            return str(route["channel"])
        return self.leadership_channel

    @property
    def leadership_channels(self) -> list[str]:
        """Every channel where leaders see reports: the default one, then each route's."""
        channels = [self.leadership_channel] if self.leadership_channel else []
        channels += [str(route["channel"]) for route in self.leadership_routes]
        return list(dict.fromkeys(channels))

    def language_of_channel(self, channel: str) -> str:
        for route in self.leadership_routes:
            if route["channel"] == channel and route.get("language"):
                return str(route["language"])
        return self.language

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or self.default_timezone)


def load_config(
    session: Session,
    *,
    bootstrap_admins: tuple[str, ...] = (),
    default_timezone: str = "Europe/Berlin",
) -> RuntimeConfig:
    stored = {entry.key: json.loads(entry.value) for entry in session.exec(select(ConfigEntry))}
    # Defaults are copied: a caller appending to its snapshot's list must not change them.
    values = {name: stored.get(name, copy.deepcopy(key.default)) for name, key in KEYS.items()}
    return RuntimeConfig(
        **values, bootstrap_admins=bootstrap_admins, default_timezone=default_timezone
    )


def require_key(key: str) -> ConfigKey:
    spec = KEYS.get(key)
    if spec is None:
        raise InvalidValue(f"unknown setting {key!r}; known settings: {', '.join(KEYS)}")
    return spec


def parse_value(key: str, raw: str) -> Any:
    """The typed value for `raw`, or `InvalidValue` saying what `key` expects."""
    spec = require_key(key)
    try:
        return spec.parse(raw)
    except InvalidValue as exc:
        raise InvalidValue(f"{key}: {exc} ({spec.help})", field=key) from exc


def set_value(
    session: Session,
    *,
    key: str,
    raw: str,
    actor: str | None,
    now: datetime | None = None,
    bootstrap_admins: tuple[str, ...] = (),
) -> Any:
    """Validate and store one setting, recorded in the audit log; returns the typed value.

    An admin cannot take away the last admin role (their own): someone must be able to
    change settings from Slack afterwards.
    """
    value = parse_value(key, raw)
    entry = session.get(ConfigEntry, key)
    old = json.loads(entry.value) if entry is not None else require_key(key).default
    # Only `admins` holds a list of people; any other key's old value may be a bool or None.
    removes_last_admin = (
        key == "admins" and bool(actor) and not value and not bootstrap_admins and actor in old
    )
    if removes_last_admin:
        raise InvalidValue(
            "you are the last admin; add another admin before removing yourself",
            field=key,
            code="last_admin",
        )
    encoded = json.dumps(value)
    if value != old:
        session.add(
            AuditEntry(
                at=now or utcnow(),
                actor=actor,
                key=key,
                old_value=format_value(old),
                new_value=format_value(value),
            )
        )
    if entry is None:
        session.add(
            ConfigEntry(key=key, value=encoded, updated_by=actor, updated_at=now or utcnow())
        )
    else:
        entry.value = encoded
        entry.updated_by = actor
        entry.updated_at = now or utcnow()
        session.add(entry)
    return value


def format_value(value: Any) -> str:
    """The form `config set` accepts back."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)
