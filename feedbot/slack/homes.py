"""App Home tabs follow what changes: whoever looks at a report there sees it as it is now.

A Home is republished only for people who opened it recently (`RECENTLY_OPENED`): Slack
shows the last published view when someone opens the tab again, and publishing for the
whole workspace on every change would spend the rate limit on tabs nobody looks at.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from feedbot.core import own_reports, privacy
from feedbot.core.identity import SEALED_USER
from feedbot.core.worklist import leader_queue
from feedbot.models import (
    Report,
    SlackUser,
)
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.views.home import build_home

RECENTLY_OPENED = timedelta(hours=12)
"""Homes opened this recently are kept up to date; others are rebuilt when next opened."""


def report_changed(session: Session, deps: Deps, report: Report) -> None:
    """Whatever changed about `report`: the Homes that show it follow."""
    refresh_homes(session, deps, report=report)


def publish_home(session: Session, deps: Deps, user_id: str) -> None:
    """Queue `user_id`'s Home, replacing an older one that is still waiting."""
    config = deps.config()
    queue = None
    if led := config.led_channels(user_id):
        queue = leader_queue(session, user_id=user_id, channels=led, now=deps.clock())
    view = build_home(
        locale=deps.locale_for(user_id),
        my_reports=own_reports.reports_by(
            session, user_id=user_id, identities=deps.identities, limit=10
        ),
        queue=queue,
        audit=privacy.audit_log(session, limit=5) if config.is_admin(user_id) else None,
    )
    # Sealed: a person's Home lists their own reports, anonymous ones too.
    identities = deps.identities
    delivery.publish(
        session,
        address="home:" + identities.key("home", user_id)[:32],
        payload={SEALED_USER: identities.seal(user_id), "view": view.to_dict()},
        now=deps.clock(),
    )


_OPENED_SINCE = select(SlackUser.user_id).where(col(SlackUser.home_opened_at) >= bindparam("since"))
"""Built once: every report asks, and building a statement costs more than running it."""


def refresh_homes(
    session: Session, deps: Deps, *, report: Report | None = None, admins: bool = False
) -> None:
    """Re-publish the Homes that show `report` (its reporter, its owner, leaders who look at
    the queue) or, with `admins`, the admins' settings. Only Homes opened recently."""
    config = deps.config()
    since = deps.clock() - RECENTLY_OPENED
    recent = set(session.exec(_OPENED_SINCE, params={"since": since}).all())
    people: set[str] = set()
    if report is not None:
        people |= {p for p in (report.reporter_id, report.owner_id) if p}
        people |= {user for user in recent if config.leads(user, report.leadership_channel)}
    if admins:
        people |= {user for user in recent if config.is_admin(user)}
    for user in sorted(people & recent):
        publish_home(session, deps, user)
