"""App Home tabs follow what changes: whoever looks at a report there sees it as it is now.

A Home is republished only for people who opened it recently (`RECENTLY_OPENED`): Slack
shows the last published view when someone opens the tab again, and publishing for the
whole workspace on every change would spend the rate limit on tabs nobody looks at.

A Home is drawn when it is sent (`draw_home`), not when it is queued: every report of an
outage changes the queue on every leader's Home, and drawing each leader's Home for each
report cost several times the rest of filing it, for views of which only the last one
waiting is ever sent.
"""

from __future__ import annotations

import json
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from feedbot.core import outbox, own_reports, privacy
from feedbot.core.config import RuntimeConfig
from feedbot.core.identity import SEALED_USER, Identities
from feedbot.core.worklist import leader_queue
from feedbot.db import at_commit, left_at_commit
from feedbot.models import Report, SlackUser
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.views.home import build_home

RECENTLY_OPENED = timedelta(hours=12)
"""Homes opened this recently are kept up to date; others are rebuilt when next opened."""
REFRESH_DELAY = timedelta(seconds=5)
"""How long a Home changed by what others do waits before it is drawn and sent: the
changes of a burst then go out in one, and a leader watching the queue in an outage sees
it follow every few seconds instead of the sender re-drawing it without pause, which took
the interpreter from the work of filing. The Homes of whoever opens theirs, and of whoever
acts (a button on their Home), go at once."""
HOME = "_home"
"""Payload key of a Home tab drawn when it is sent: the language it is drawn in."""
PUBLISH = "views.publish"
"""The call a Home is published with."""


def report_changed(
    session: Session, deps: Deps, report: Report, *, actor: str | None = None
) -> None:
    """Whatever changed about `report` (by `actor`): the Homes that show it follow."""
    refresh_homes(session, deps, report=report, actor=actor)


def publish_home(session: Session, deps: Deps, user_id: str, *, at_once: bool = True) -> None:
    """Queue `user_id`'s Home, drawn when it is sent (`draw_home`): at once, or after
    `REFRESH_DELAY`. One still waiting shows this change too when it goes, so none is added
    then (it is brought forward for `at_once`).

    Done as the transaction commits (`at_commit`), as the group card's update is: the
    waiting Homes are locked from then on until the transaction ends
    (`outbox.waiting_calls`), and every report of a burst needs each leader's. All the
    Homes a transaction changes are looked up in one statement."""
    identities = deps.identities
    address = "home:" + identities.key("home", user_id)[:32]
    now = deps.clock()
    batch = left_at_commit(session, _HOMES_KEY)
    if not isinstance(batch, _HomesToQueue):
        batch = _HomesToQueue(session, identities)
        at_commit(session, _HOMES_KEY, batch)
    batch.add(
        address,
        user_id=user_id,
        drawn_with={"locale": deps.locale_for(user_id)},
        due=now if at_once else now + REFRESH_DELAY,
        now=now,
    )


_HOMES_KEY = ("homes",)


@dataclass
class _Home:
    user_id: str
    drawn_with: dict[str, Any]
    due: datetime
    now: datetime


class _HomesToQueue:
    """The Homes a transaction changed, queued as it commits (`publish_home`)."""

    def __init__(self, session: Session, identities: Identities) -> None:
        self.session = session
        self.identities = identities
        self.homes: dict[str, _Home] = {}

    def add(
        self,
        address: str,
        *,
        user_id: str,
        drawn_with: dict[str, Any],
        due: datetime,
        now: datetime,
    ) -> None:
        earlier = self.homes.get(address)
        if earlier is not None:  # asked twice: as soon as the sooner ask
            due = min(due, earlier.due)
        self.homes[address] = _Home(user_id, drawn_with, due, now)

    def __call__(self) -> None:
        session = self.session
        waiting = outbox.waiting_calls(session, conversations=self.homes, method=PUBLISH)
        for address, home in sorted(self.homes.items()):
            found = waiting.get(address)
            if found is not None and json.loads(found.payload).get(HOME) == home.drawn_with:
                if home.due < found.next_attempt_at:  # asked at once: brought forward
                    assert found.id is not None
                    outbox.due_by(session, found.id, at=home.due)
                continue
            # Sealed: the outbox says whose Home it is to no one who reads the database.
            payload = {SEALED_USER: self.identities.seal(home.user_id), HOME: home.drawn_with}
            # One it replaces may have been due sooner (its owner opened their Home just now).
            due = min(home.due, found.next_attempt_at) if found is not None else home.due
            delivery.publish(session, address=address, payload=payload, now=home.now, due=due)


def draw_home(
    session: Session,
    drawn_with: dict[str, Any],
    *,
    user_id: str,
    identities: Identities,
    config: RuntimeConfig | None,
    now: datetime,
) -> dict[str, Any]:
    """The `views.publish` arguments of a Home queued by `publish_home`, as things are now
    (the sender adds whose it is). The queue and the settings follow the person's roles in
    `config` as they are now, not when it was queued: a leader removed meanwhile sees no
    reports. Without `config`, neither is shown."""
    led = config.led_channels(user_id) if config is not None else []
    queue = leader_queue(session, user_id=user_id, channels=led, now=now) if led else None
    admin = config is not None and config.is_admin(user_id)
    view = build_home(
        locale=str(drawn_with.get("locale") or "en"),
        my_reports=own_reports.reports_by(
            session, user_id=user_id, identities=identities, limit=10
        ),
        queue=queue,
        audit=privacy.audit_log(session, limit=5) if admin else None,
    )
    return {"view": view.to_dict()}


_OPENED_AMONG = select(SlackUser.user_id).where(
    col(SlackUser.user_id).in_(bindparam("people", expanding=True)),
    col(SlackUser.home_opened_at) >= bindparam("since"),
)
"""Built once: every report asks, and building a statement costs more than running it."""


def refresh_homes(
    session: Session,
    deps: Deps,
    *,
    report: Report | None = None,
    people: Set[str] = frozenset(),
    actor: str | None = None,
) -> None:
    """Re-publish the Homes that show `report` (its reporter, its owner, leaders who look at
    the queue), and those of `people`: `actor`'s at once, the others' after `REFRESH_DELAY`.
    Only Homes opened recently."""
    people = set(people)
    if report is not None:
        people |= {p for p in (report.reporter_id, report.owner_id) if p}
        people |= deps.config().leaders_of(report.leadership_channel)
    if not people:
        return
    since = deps.clock() - RECENTLY_OPENED
    recent = session.exec(_OPENED_AMONG, params={"people": sorted(people), "since": since})
    for user in sorted(recent.all()):
        publish_home(session, deps, user, at_once=user == actor)
