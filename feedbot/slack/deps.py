"""What listeners, flows and jobs share: settings, the database, Slack clients, and the
directories and caches that spare Slack a call per request.

One `Deps` per process (`feedbot run` builds it; jobs get the same one). It knows nothing of
Bolt: the app is built on top of it (`feedbot.slack.app`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from threading import Lock
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session

from feedbot.core.config import RuntimeConfig, load_config
from feedbot.core.identity import Identities
from feedbot.core.inbox import REPLAY_SESSION
from feedbot.db import session_scope
from feedbot.models import utcnow
from feedbot.settings import Settings
from feedbot.slack.access import SlackAccess
from feedbot.slack.directory import ChannelDirectory, GroupDirectory, PeopleDirectory
from feedbot.slack.i18n import language_of
from feedbot.slack.workspace import Workspace

CONFIG_TTL = 2.0
"""Seconds a process trusts its copy of the runtime configuration: changes apply this fast."""
LOOKUP_BUDGET = 0.5
"""Seconds a request may wait for Slack to tell a person's language or timezone; a slower
answer is used from the next request on (Slack wants its answer within 3 s)."""


class ConfigCache:
    """The runtime configuration, re-read from the database at most every `CONFIG_TTL` s."""

    def __init__(self, engine: Engine, settings: Settings, ttl: float = CONFIG_TTL) -> None:
        self.engine = engine
        self.settings = settings
        self.ttl = ttl
        self._value: RuntimeConfig | None = None
        self._loaded_at = 0.0
        self._lock = Lock()

    def get(self) -> RuntimeConfig:
        """The configuration. While one thread re-reads it, the others keep the previous copy
        instead of queueing behind it: a request holding SQLite's write lock must never wait
        for a reader that waits for a connection that request's neighbours hold."""
        value = self._value
        if value is not None and time.monotonic() - self._loaded_at <= self.ttl:
            return value
        if not self._lock.acquire(blocking=value is None):
            assert value is not None
            return value
        try:
            with session_scope(self.engine) as session:
                fresh = load_config(
                    session,
                    bootstrap_admins=tuple(self.settings.feedbot_admins),
                    default_timezone=self.settings.feedbot_timezone,
                )
            self._value, self._loaded_at = fresh, time.monotonic()
            return fresh
        finally:
            self._lock.release()

    def cached(self) -> RuntimeConfig | None:
        return self._value

    def invalidate(self) -> None:
        # Not 0: the monotonic clock may start near 0 (a fresh machine's uptime).
        self._loaded_at = -math.inf


@dataclass
class Deps:
    """What listeners need, handed to each feature's `register`."""

    settings: Settings
    engine: Engine
    client: WebClient
    clock: Callable[[], datetime] = utcnow
    on_commit: Callable[[], None] = lambda: None
    config_ttl: float = CONFIG_TTL
    config_cache: ConfigCache = field(init=False)
    people: PeopleDirectory = field(init=False)
    groups: GroupDirectory = field(init=False)
    channels: ChannelDirectory = field(init=False)
    access: SlackAccess = field(init=False)
    _identities: Identities | None = field(init=False, default=None)
    workspace: Workspace = field(init=False)

    def __post_init__(self) -> None:
        self.config_cache = ConfigCache(self.engine, self.settings, ttl=self.config_ttl)
        self.people = PeopleDirectory(self.client, self.engine, self.clock)
        self.groups = GroupDirectory(self.client)
        self.channels = ChannelDirectory(self.client)
        self.access = SlackAccess(
            self.engine, [self.client], clock=self.clock, on_restored=lambda: self.on_commit()
        )
        self.workspace = Workspace(self.client)

    @property
    def identities(self) -> Identities:
        """What seals anonymous people's ids (`ConfigurationError` without a secret key)."""
        if self._identities is None:
            self._identities = self.settings.identities()
        return self._identities

    def settings_language(self) -> str:
        """The default language, without the database (for when the database is the problem)."""
        cached = self.config_cache.cached()
        return cached.language if cached is not None else "en"

    def config(self) -> RuntimeConfig:
        """The runtime configuration, with the leaders' user groups (global and per route)
        resolved to their members."""
        return self._with_groups(self.config_cache.get())

    def config_in(self, session: Session) -> RuntimeConfig:
        """`config` as `session` sees it, its own changes included, not as cached: for what
        must follow a change at once (the roles a Home is drawn for right after an admin
        changed them), not within the cache's `CONFIG_TTL`."""
        return self._with_groups(
            load_config(
                session,
                bootstrap_admins=tuple(self.settings.feedbot_admins),
                default_timezone=self.settings.feedbot_timezone,
            )
        )

    def _with_groups(self, config: RuntimeConfig) -> RuntimeConfig:
        if config.leaders_usergroup:
            members = self.groups.members(config.leaders_usergroup)
            config = replace(config, group_leaders=members)
        route_groups: dict[str, frozenset[str]] = {}
        for route in config.leadership_routes:
            if route.get("leaders_usergroup"):
                channel = str(route["channel"])
                members = self.groups.members(str(route["leaders_usergroup"]))
                route_groups[channel] = route_groups.get(channel, frozenset()) | members
        if route_groups:
            config = replace(config, route_group_leaders=route_groups)
        return config

    def locale_for(self, user_id: str | None, *, budget: float | None = LOOKUP_BUDGET) -> str:
        """The language to address `user_id` in: their Slack locale, else the default. Waits
        at most `budget` seconds for Slack (None: as long as it takes, for jobs)."""
        default = self.config().language
        if not user_id:
            return default
        locale = self.people.profile(user_id, budget=budget).locale
        return language_of(locale) if locale else default

    def timezone_for(
        self, user_id: str | None, *, budget: float | None = LOOKUP_BUDGET
    ) -> ZoneInfo:
        """Where `user_id` is: their Slack timezone, else the workspace's."""
        config = self.config()
        name = self.people.profile(user_id, budget=budget).timezone if user_id else None
        try:
            return ZoneInfo(name) if name else config.zone
        except (ZoneInfoNotFoundError, ValueError):
            return config.zone

    @property
    def channel_locale(self) -> str:
        """Leadership channels read the workspace's default language."""
        return self.config().language

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work; the outbox sender is woken once it has committed. While a
        request from the inbox is handled, a savepoint of its transaction instead (see
        `feedbot.core.inbox`): the request's work commits with its entry's done mark."""
        replaying = REPLAY_SESSION.get()
        if replaying is not None:
            with replaying.begin_nested():
                yield replaying
            return
        with session_scope(self.engine) as session:
            yield session
        self.on_commit()
