"""What feedbot knows about people, user groups and channels, from Slack, cached.

Each lookup may be asked for on the request path, where Slack's 3 seconds must never depend on
another Slack call: a caller gives a `budget` (seconds it may wait); when Slack is slower, the
answer is what is known so far and the lookup finishes in the background for next time.
A failure of Slack's (rate limit, 5xx, timeout) never becomes an answer: the last good one is
kept and the lookup is tried again later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from threading import Lock, RLock

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine

from feedbot.db import session_scope, upsert_insert
from feedbot.models import SlackUser
from feedbot.slack.web_api import retry_after

log = logging.getLogger(__name__)

PROFILE_TTL = timedelta(days=1)
RETRY_AFTER = 60.0
"""Seconds before a lookup Slack failed is tried again (the last good answer stays meanwhile)."""
GROUP_TTL = 300.0
STALE_FOR = 2
"""A user group's members older than `GROUP_TTL` are answered while they are read again,
up to this many times `GROUP_TTL`; older ones are waited for."""
FIRST_RETRY_AFTER = 5.0
"""Seconds before a user group Slack failed to give any members for is asked again."""
CHANNEL_TTL = 300.0
MEMBER_PAGES = 20
"""Pages of 1,000 members read at most per channel."""

SWEEP_GAP = 600.0
"""Seconds at least between two whole reads of the workspace's profiles (`users.list`)."""
SWEEP_PAGE = 200
"""People per `users.list` page: the most Slack recommends."""
SWEEP_PAGES = 50
"""Pages read at most in one go (10,000 people)."""

NO_SUCH_USER = frozenset({"user_not_found", "user_not_visible", "account_inactive"})
"""Slack's answers that mean there is no profile to be had, not that Slack failed."""


@dataclass(frozen=True)
class Profile:
    locale: str | None
    timezone: str | None


class _Lookups:
    """Background lookups, one at a time per key, awaited for at most a budget."""

    def __init__(self, name: str, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._running: dict[str, Future[object]] = {}
        # Reentrant: a lookup that finished before `run` adds its callback runs `_done` at
        # once, in `run`'s thread, which still holds the lock.
        self._lock = RLock()

    def run(self, key: str, lookup: Callable[[], object], budget: float | None) -> object | None:
        """`lookup()`'s result if it finishes within `budget` seconds (None: no limit)."""
        with self._lock:
            future = self._running.get(key)
            if future is None:
                future = self._running[key] = self._pool.submit(lookup)
                future.add_done_callback(lambda _: self._done(key))
        try:
            return future.result(timeout=budget)
        except FutureTimeout:
            return None

    def _done(self, key: str) -> None:
        with self._lock:
            self._running.pop(key, None)

    def wait(self) -> None:
        """Until every lookup started so far has finished (tests, shutdown)."""
        with self._lock:
            running = list(self._running.values())
        for future in running:
            future.exception()


class PeopleDirectory:
    """Each person's Slack locale and timezone (`users.info`), cached for a day in memory and
    in the `slack_user` table, which replicas share."""

    def __init__(self, client: WebClient, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.client = client
        self.engine = engine
        self.clock = clock
        self._cache: dict[str, tuple[Profile, float]] = {}
        self._failed: dict[str, float] = {}
        self._lock = Lock()
        self._lookups = _Lookups("profiles")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-store")
        self._sweeps = _Lookups("profile-sweep", workers=1)
        self._limited_until: datetime | None = None
        """Until when Slack asked for no more `users.info` calls (a 429's `Retry-After`)."""
        self._next_sweep: datetime | None = None
        """From when a read of everyone's profile may (go on and) run."""
        self._sweep_cursor = ""
        """Where the last read of everyone's profile stopped ("": at the end)."""
        self._everyone_read_at: datetime | None = None
        """When the read `_everyone` holds began: older than a profile may be, it is not
        used (and people who left are not kept)."""
        self._everyone: dict[str, Profile] = {}
        """The last sweep's profiles, kept in memory: asked for only while Slack limits
        `users.info`, and each stored only when someone's is asked for."""

    def profile(self, user_id: str, *, budget: float | None = None) -> Profile:
        """The person's profile: fresh from the cache, else from Slack within `budget`
        seconds, else the last one known (however old), else an empty one."""
        with self._lock:
            cached = self._cache.get(user_id)
            failed_at = self._failed.get(user_id)
        if cached and time.monotonic() - cached[1] < PROFILE_TTL.total_seconds():
            return cached[0]
        stored, fresh = self._stored(user_id)
        if stored is not None and fresh:
            self._remember(user_id, stored)
            return stored
        last_good = stored or (cached[0] if cached else None)
        if failed_at is not None and time.monotonic() - failed_at < RETRY_AFTER:
            return last_good or Profile(None, None)
        found = self._lookups.run(user_id, lambda: self._fetch(user_id), budget)
        if isinstance(found, Profile):
            return found
        return last_good or Profile(None, None)

    def _remember(self, user_id: str, profile: Profile) -> None:
        with self._lock:
            self._cache[user_id] = (profile, time.monotonic())
            self._failed.pop(user_id, None)

    def _stored(self, user_id: str) -> tuple[Profile | None, bool]:
        """The stored profile and whether it is fresh; a row only marks a Home opened
        (`fetched_at` at the epoch, no locale) is no profile."""
        with session_scope(self.engine) as session:
            row = session.get(SlackUser, user_id)
        if row is None or (
            row.locale is None and row.timezone is None and row.fetched_at.year < 2000
        ):
            return None, False
        return Profile(row.locale, row.timezone), self.clock() - row.fetched_at <= PROFILE_TTL

    def _fetch(self, user_id: str) -> Profile | None:
        with self._lock:
            limited = self._limited_until is not None and self.clock() < self._limited_until
        if limited:
            return self._swept(user_id)
        try:
            user = self.client.users_info(user=user_id, include_locale=True)["user"]
        except SlackApiError as exc:
            error = exc.response.get("error")
            if exc.response.status_code == 429 or error == "ratelimited":
                wait = retry_after(exc.response.headers)
                with self._lock:
                    self._limited_until = self.clock() + timedelta(seconds=wait)
                log.warning(
                    "Slack limits users.info for %.0fs; reading everyone's profile at once", wait
                )
                return self._swept(user_id)
            if error not in NO_SUCH_USER:
                log.warning("no profile for %s yet: Slack answered %s", user_id, error)
                self._failed_now(user_id)
                return None
            log.info("no profile for %s: %s", user_id, error)
            user = {}
        except Exception as exc:
            log.warning("no profile for %s yet: %s", user_id, type(exc).__name__)
            self._failed_now(user_id)
            return None
        profile = Profile(user.get("locale"), user.get("tz"))
        self._remember(user_id, profile)
        self._store_today(user_id, profile)
        return profile

    def _store_today(self, user_id: str, profile: Profile) -> None:
        # Stored as of the start of the day: the exact moment someone's profile was looked up
        # would tell a database reader when they acted, and so which anonymous report they
        # filed. A profile is then looked up again after one to two days.
        # Stored by a thread of its own: whoever waits for this answer may hold SQLite's write
        # lock in its transaction, and the store would wait for that.
        day = self.clock().replace(hour=0, minute=0, second=0, microsecond=0)
        self._writer.submit(self._store, user_id, profile, day)

    def _swept(self, user_id: str) -> Profile | None:
        """`user_id`'s profile from a read of everyone's (`users.list`), while Slack limits
        `users.info` (about 100 a minute): in an outage, hundreds of people who never
        reported before report within minutes, and each should hear back in their language.
        One sweep serves them all; it is kept in memory only, and only the profiles asked
        for are stored, as `users.info`'s are."""
        with self._lock:
            fresh = self._everyone_read_at is not None and (
                self.clock() - self._everyone_read_at < PROFILE_TTL
            )
            profile = self._everyone.get(user_id) if fresh else None
        if profile is None:
            self._sweeps.run("users.list", self._sweep, None)
            with self._lock:
                profile = self._everyone.get(user_id)
        if profile is None:
            self._failed_now(user_id)
            return None
        self._remember(user_id, profile)
        self._store_today(user_id, profile)
        return profile

    def _sweep(self) -> None:
        """Read everyone's profile, a page at a time. `users.list` has a limit of its own
        (about 20 pages a minute): a sweep Slack stops goes on from that page once Slack's
        `Retry-After` has passed; a finished one is not repeated for `SWEEP_GAP`."""
        if self._next_sweep is not None and self.clock() < self._next_sweep:
            return
        read = 0
        if not self._sweep_cursor:  # a read from the start: what an older one read goes
            with self._lock:
                self._everyone.clear()
                self._everyone_read_at = self.clock()
        for _ in range(SWEEP_PAGES):
            try:
                page = self.client.users_list(
                    limit=SWEEP_PAGE, include_locale=True, cursor=self._sweep_cursor or None
                )
            except SlackApiError as exc:
                limited = exc.response.status_code == 429
                wait = retry_after(exc.response.headers) if limited else RETRY_AFTER
                self._next_sweep = self.clock() + timedelta(seconds=wait)
                if not limited:  # the cursor itself may be what Slack refuses: start over
                    self._sweep_cursor = ""
                log.warning(
                    "read %d people's profiles, then Slack answered %s; going on in %.0fs",
                    read,
                    exc.response.get("error"),
                    wait,
                )
                return
            except Exception as exc:
                self._next_sweep = self.clock() + timedelta(seconds=RETRY_AFTER)
                self._sweep_cursor = ""
                log.warning("could not read everyone's profile: %s", type(exc).__name__)
                return
            members = page.get("members") or []
            with self._lock:
                for member in members:
                    if isinstance(member, dict) and member.get("id"):
                        profile = Profile(member.get("locale"), member.get("tz"))
                        self._everyone[str(member["id"])] = profile
            read += len(members)
            self._sweep_cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not self._sweep_cursor:
                break
        self._next_sweep = self.clock() + timedelta(seconds=SWEEP_GAP)
        log.info("read the profiles of %d people at once", read)

    def _failed_now(self, user_id: str) -> None:
        with self._lock:
            self._failed[user_id] = time.monotonic()

    def _store(self, user_id: str, profile: Profile, now: datetime) -> None:
        values = {"locale": profile.locale, "timezone": profile.timezone, "fetched_at": now}
        try:
            with session_scope(self.engine) as session:
                session.execute(
                    upsert_insert(session, SlackUser)
                    .values(user_id=user_id, **values)
                    .on_conflict_do_update(index_elements=["user_id"], set_=values)
                )
        except Exception:
            log.warning("could not store the profile of %s", user_id, exc_info=True)

    def flush(self) -> None:
        """Wait until every lookup started so far is done and stored (tests, shutdown)."""
        self._lookups.wait()
        self._sweeps.wait()
        self._writer.submit(lambda: None).result()

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._cache.pop(user_id, None)
            self._everyone.pop(user_id, None)
            self._failed.pop(user_id, None)


class GroupDirectory:
    """Members of a Slack user group (`usergroups.users.list`), cached for a few minutes; the
    last known members stay in force while Slack does not answer.

    Every thread that reads the configuration asks for them (`Deps.config`), requests'
    included. Once the members are known, they are answered at once: a list past its
    `GROUP_TTL` is read again in the background, one call per group however many threads
    ask, while it is answered. Only the first lookup of a group, or one after a quiet
    while (`STALE_FOR`), waits for Slack, shared by every thread that asks meanwhile.
    (Before, every thread called Slack itself when the cache expired, and waited: a slow
    Slack held up requests, and a burst of them spent the method's 20 calls a minute on
    one answer.)"""

    def __init__(self, client: WebClient, *, ttl: float = GROUP_TTL) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[str, tuple[frozenset[str], float]] = {}
        self._retry_at: dict[str, float] = {}
        self._lock = Lock()
        self._lookups = _Lookups("usergroups", workers=2)

    def members(self, group_id: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group_id)
            retry_at = self._retry_at.get(group_id, 0.0)
        if now < retry_at:
            return cached[0] if cached else frozenset()
        if cached and now - cached[1] < self.ttl:
            return cached[0]
        if cached and now - cached[1] < STALE_FOR * self.ttl:
            self._lookups.run(group_id, lambda: self._fetch(group_id), budget=0)
            return cached[0]
        # Never read, or not for long (a quiet hour): someone removed from the group
        # meanwhile must not act as a leader on what was known then.
        found = self._lookups.run(group_id, lambda: self._fetch(group_id), budget=None)
        return found if isinstance(found, frozenset) else frozenset()

    def _fetch(self, group_id: str) -> frozenset[str] | None:
        """Ask Slack. If it fails, the last members (if any) stay in force, asked again
        after `RETRY_AFTER` seconds; with none known, after `FIRST_RETRY_AFTER` (every
        configuration read would wait for a failing Slack), or as long as a 429 says."""
        try:
            users = frozenset(self.client.usergroups_users_list(usergroup=group_id)["users"])
        except Exception as exc:
            log.warning("members of %s unknown: %s", group_id, type(exc).__name__)
            with self._lock:
                cached = self._cache.get(group_id)
                wait = RETRY_AFTER if cached else FIRST_RETRY_AFTER
                if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
                    wait = max(wait, retry_after(exc.response.headers))
                self._retry_at[group_id] = time.monotonic() + wait
            return cached[0] if cached else None
        with self._lock:
            self._cache[group_id] = (users, time.monotonic())
            self._retry_at.pop(group_id, None)
        return users

    def wait(self) -> None:
        """Until every lookup started so far has finished (tests)."""
        self._lookups.wait()


class Membership(StrEnum):
    MEMBER = "member"
    OUTSIDE = "outside"
    """feedbot sees the channel but is not in it."""
    UNSEEN = "unseen"
    """Slack shows feedbot no such channel: deleted, or private without feedbot."""
    UNKNOWN = "unknown"
    """Slack did not say in time (or failed): find out later."""


class ChannelDirectory:
    """Whether feedbot is in a channel (`conversations.info`); "yes" is cached for a few
    minutes (a post that fails after all says so where people look, see the outbox).

    Forms ask before they accept a channel, so a post never fails silently later; they ask
    within a budget, and take `UNKNOWN` when Slack is slow."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._cache: dict[str, tuple[Membership, float]] = {}
        self._members: dict[str, tuple[frozenset[str], float]] = {}
        self._lock = Lock()
        self._lookups = _Lookups("channels")

    def membership(self, channel: str, *, budget: float | None = None) -> Membership:
        """What Slack says, waiting at most `budget` seconds (None: as long as it takes)."""
        with self._lock:
            cached = self._cache.get(channel)
        if cached and time.monotonic() - cached[1] < CHANNEL_TTL:
            return cached[0]
        found = self._lookups.run(channel, lambda: self._fetch(channel), budget)
        return found if isinstance(found, Membership) else Membership.UNKNOWN

    def memberships(self, channels: list[str], *, budget: float) -> dict[str, Membership]:
        """Each channel's membership, all asked at once within one shared `budget`."""
        deadline = time.monotonic() + budget
        for channel in channels:  # start them all, then wait for each in the time left
            self.membership(channel, budget=0)
        return {
            channel: self.membership(channel, budget=max(deadline - time.monotonic(), 0))
            for channel in channels
        }

    def _fetch(self, channel: str) -> Membership:
        try:
            info = self.client.conversations_info(channel=channel)["channel"]
            found = Membership.MEMBER if info.get("is_member") else Membership.OUTSIDE
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error != "channel_not_found":
                log.warning("cannot tell whether feedbot is in %s: %s", channel, error)
                return Membership.UNKNOWN
            found = Membership.UNSEEN
        except Exception as exc:
            log.warning("cannot tell whether feedbot is in %s: %s", channel, type(exc).__name__)
            return Membership.UNKNOWN
        if found == Membership.MEMBER:  # one invited a moment ago must be seen at once
            with self._lock:
                self._cache[channel] = (found, time.monotonic())
        return found

    def members(self, channel: str, *, budget: float | None = None) -> frozenset[str] | None:
        """Who is in `channel` (`conversations.members`), cached for a few minutes; None when
        Slack did not say within `budget` seconds (then assume nobody: nothing is shown)."""
        key = f"members:{channel}"
        with self._lock:
            cached = self._members.get(channel)
        if cached and time.monotonic() - cached[1] < CHANNEL_TTL:
            return cached[0]
        found = self._lookups.run(key, lambda: self._fetch_members(channel), budget)
        return found if isinstance(found, frozenset) else None

    def _fetch_members(self, channel: str) -> frozenset[str] | None:
        people: set[str] = set()
        cursor: str | None = None
        try:
            for _ in range(MEMBER_PAGES):
                response = self.client.conversations_members(
                    channel=channel, limit=1000, cursor=cursor
                )
                people |= set(response.get("members") or [])
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except Exception as exc:
            log.warning("members of %s unknown: %s", channel, type(exc).__name__)
            return None
        found = frozenset(people)
        with self._lock:
            self._members[channel] = (found, time.monotonic())
        return found

    def forget(self, channel: str) -> None:
        with self._lock:
            self._cache.pop(channel, None)
            self._members.pop(channel, None)

    def wait(self) -> None:
        self._lookups.wait()
