"""Runtime configuration: settings admins change while the bot runs, stored in the database.

Every key is declared once in `KEYS` with its parser, default and help text; the CLI, the
Slack layer and `.env`-independent defaults all read from that table. Values are stored as
JSON so lists and booleans keep their type.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from feedbot.core import config_values as values
from feedbot.core.config_values import (
    CHANNEL_ID,
    DEFAULT_CATEGORIES,
    DEFAULT_TARGETS,
    USER_ID,
    WEEKDAYS,
)
from feedbot.errors import InvalidValue
from feedbot.models import AuditEntry, ConfigEntry, utcnow


@dataclass(frozen=True)
class ConfigKey:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str


KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey(
            "leadership_channel", values.channel, None, "channel ID where leaders see reports"
        ),
        ConfigKey(
            "intake_channels",
            values.ids(CHANNEL_ID, "C0123ABCD", "channel IDs"),
            [],
            "channel IDs where every new message becomes a report",
        ),
        ConfigKey(
            "leaders", values.ids(USER_ID, "U0123ABCD", "user IDs"), [], "user IDs of leaders"
        ),
        ConfigKey(
            "admins",
            values.ids(USER_ID, "U0123ABCD", "user IDs"),
            [],
            "user IDs of admins (besides FEEDBOT_ADMINS)",
        ),
        ConfigKey("timezone", values.timezone, None, "IANA timezone (default FEEDBOT_TIMEZONE)"),
        ConfigKey("allow_anonymous", values.boolean, True, "whether reporters may stay anonymous"),
        ConfigKey("categories", values.categories, list(DEFAULT_CATEGORIES), "report categories"),
        ConfigKey(
            "confidential_categories",
            values.names,
            [],
            "categories shown only in leadership channels (e.g. People & conduct)",
        ),
        ConfigKey("locations", values.names, [], "shops, sites or regions (empty: free text)"),
        ConfigKey("language", values.language, "en", "default language: en or de"),
        ConfigKey(
            "leadership_routes", values.routes, [], "regional/topical leadership channels (JSON)"
        ),
        ConfigKey(
            "leaders_usergroup",
            values.usergroup,
            None,
            "Slack user group whose members are leaders",
        ),
        ConfigKey(
            "digest_schedule", values.weekday_time, "mon 08:00", "when the weekly digest goes out"
        ),
        ConfigKey(
            "allstaff_channel", values.channel, None, "channel for the weekly 'you said, we did'"
        ),
        ConfigKey(
            "escalation_channel",
            values.channel,
            None,
            "where overdue reports escalate (default: admins by DM)",
        ),
        ConfigKey(
            "response_targets",
            values.targets,
            dict(DEFAULT_TARGETS),
            "time to acknowledge per urgency",
        ),
        ConfigKey("reminder_interval", values.duration, "4h", "time between repeated reminders"),
        ConfigKey("reminder_cap", values.count(1, 20), 3, "reminders before escalating"),
        ConfigKey("working_days", values.weekdays, list(WEEKDAYS[:5]), "days reminders may go out"),
        ConfigKey(
            "working_hours",
            values.hours,
            "08:00-18:00",
            "hours reminders may go out (recipient's time)",
        ),
        ConfigKey(
            "holidays", values.dates, [], "dates without reminders (YYYY-MM-DD, comma-separated)"
        ),
        ConfigKey(
            "holiday_region",
            values.holiday_region,
            None,
            "public holidays by country and region, like DE-NW, besides holidays",
        ),
        ConfigKey(
            "retention_days",
            values.count(0, 36500),
            730,
            "days resolved reports are kept (0: forever)",
        ),
        ConfigKey(
            "burst_threshold",
            values.count(0, 10000),
            5,
            "similar reports that make an incident (0: off)",
        ),
        ConfigKey("burst_window_minutes", values.count(1, 1440), 15, "window for counting a burst"),
        ConfigKey(
            "report_rate_limit",
            values.rate,
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
    holiday_region: str | None = None
    retention_days: int = 730
    burst_threshold: int = 5
    burst_window_minutes: int = 15
    report_rate_limit: str = "10/10m"
    bootstrap_admins: tuple[str, ...] = ()
    default_timezone: str = "Europe/Berlin"
    group_leaders: frozenset[str] = frozenset()
    """Members of `leaders_usergroup`, resolved by the Slack layer."""
    route_group_leaders: dict[str, frozenset[str]] = field(default_factory=dict)
    """Members of each route's `leaders_usergroup`, by the route's channel (Slack layer)."""

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
        """A leader everywhere: the global leaders (and their user group) act on every report;
        admins may too, so a small team can start with one person."""
        return user_id in self.leaders or user_id in self.group_leaders or self.is_admin(user_id)

    def route_leaders(self, channel: str | None) -> list[str]:
        """The people the routes to `channel` name as its leaders (their user groups'
        members too); several routes may share a channel, and their leaders add up."""
        named = [
            leader
            for route in self.leadership_routes
            if channel is not None and route["channel"] == channel
            for leader in route.get("leaders", [])
        ]
        members = sorted(self.route_group_leaders.get(channel or "", frozenset()))
        return list(dict.fromkeys([*named, *members]))

    def leads(self, user_id: str, channel: str | None) -> bool:
        """Whether `user_id` may triage a report shown in leadership channel `channel`: a
        global leader may everywhere, a route's leader only on that route's reports."""
        return self.is_leader(user_id) or user_id in self.route_leaders(channel)

    def leaders_of(self, channel: str | None) -> set[str]:
        """Everyone who `leads` `channel`: the global leaders, the admins and the route's."""
        return {
            *self.leaders,
            *self.group_leaders,
            *self.admins,
            *self.bootstrap_admins,
            *self.route_leaders(channel),
        }

    def staff(self) -> set[str]:
        """Everyone with a role: the admins and the leaders, global or of a route."""
        routes = {
            leader for channel in self.leadership_channels for leader in self.route_leaders(channel)
        }
        return {*self.leaders, *self.group_leaders, *self.admins, *self.bootstrap_admins, *routes}

    def led_channels(self, user_id: str) -> list[str]:
        """The leadership channels whose reports `user_id` may triage (none: not a leader)."""
        if self.is_leader(user_id):
            return self.leadership_channels
        return [
            str(route["channel"])
            for route in self.leadership_routes
            if user_id in self.route_leaders(str(route["channel"]))
        ]

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


def check_value(
    session: Session,
    *,
    key: str,
    raw: str,
    actor: str | None,
    bootstrap_admins: tuple[str, ...] = (),
    together: Mapping[str, Any] | None = None,
) -> Any:
    """The typed value `set_value` would store, or `InvalidValue`; reads only, so a form can
    be answered with its errors before anything is written. `together` holds the typed
    values of other settings changed at the same time (one form), which the checks read
    instead of the stored ones.

    An admin cannot take away the last admin role (their own): someone must be able to
    change settings from Slack afterwards. A route cannot lead to `leadership_channel`
    itself: its leaders would lead every report shown there, not only the route's.
    """
    value = parse_value(key, raw)
    if key in ("leadership_channel", "leadership_routes"):
        _check_routes(session, {**(together or {}), key: value})
    if key != "admins" or not actor or value or bootstrap_admins:
        return value
    if actor in _current(session, key):
        raise InvalidValue(
            "you are the last admin; add another admin before removing yourself",
            field=key,
            code="last_admin",
        )
    return value


def _current(session: Session, key: str, changed: Mapping[str, Any] | None = None) -> Any:
    """A setting's typed value: as changed, else as stored, else its default."""
    if changed is not None and key in changed:
        return changed[key]
    entry = session.get(ConfigEntry, key)
    return json.loads(entry.value) if entry is not None else require_key(key).default


def _check_routes(session: Session, changed: Mapping[str, Any]) -> None:
    channel = _current(session, "leadership_channel", changed)
    routes = _current(session, "leadership_routes", changed) or []
    if channel and any(route.get("channel") == channel for route in routes):
        field = "leadership_routes" if "leadership_routes" in changed else "leadership_channel"
        raise InvalidValue(
            f"a route cannot lead to the leadership channel {channel} itself (its leaders "
            "would lead every report there); give the route a channel of its own",
            field=field,
            code="route_to_leadership_channel",
            params={"channel": channel},
        )


def set_value(
    session: Session,
    *,
    key: str,
    raw: str,
    actor: str | None,
    now: datetime | None = None,
    bootstrap_admins: tuple[str, ...] = (),
    together: Mapping[str, Any] | None = None,
) -> Any:
    """Validate and store one setting, recorded in the audit log; returns the typed value.
    Refuses what `check_value` refuses (`together` as there)."""
    value = check_value(
        session,
        key=key,
        raw=raw,
        actor=actor,
        bootstrap_admins=bootstrap_admins,
        together=together,
    )
    entry = session.get(ConfigEntry, key)
    old = json.loads(entry.value) if entry is not None else require_key(key).default
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
