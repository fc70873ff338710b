"""The App Home tab: published when someone opens it, and again when what they see changes.

Publishing goes through the outbox like every other message, so a listener only writes to
the database; a newer Home for the same person replaces one still waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App
from sqlmodel import Session, col, select

from feedbot.core import outbox, privacy, reports
from feedbot.core.identity import SEALED_USER
from feedbot.core.queue import leader_queue
from feedbot.db import upsert_insert
from feedbot.models import Report, SlackUser
from feedbot.slack.deps import Deps
from feedbot.slack.views.home import build_home

RECENTLY_OPENED = timedelta(hours=12)
"""Homes opened this recently are kept up to date; others are rebuilt when next opened."""
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def register(app: App, deps: Deps) -> None:
    app.event("app_home_opened")(_opened(deps))
    deps.report_watchers.append(lambda session, report: refresh_homes(session, deps, report=report))


def _opened(deps: Deps) -> Any:
    def handle(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        user_id = str(event["user"])
        now = deps.clock()
        # To the hour: enough to keep recent Homes fresh, too coarse to tell a database reader
        # when someone acted (and so which anonymous report was theirs).
        opened = now.replace(minute=0, second=0, microsecond=0)
        with deps.transaction() as session:
            session.execute(
                upsert_insert(session, SlackUser)
                .values(user_id=user_id, fetched_at=NEVER, home_opened_at=opened)
                .on_conflict_do_update(index_elements=["user_id"], set_={"home_opened_at": opened})
            )
            publish_home(session, deps, user_id)

    return handle


def publish_home(session: Session, deps: Deps, user_id: str) -> None:
    """Queue `user_id`'s Home, replacing an older one that is still waiting."""
    config = deps.config()
    queue = None
    if config.is_leader(user_id):
        queue = leader_queue(
            session, user_id=user_id, channels=config.leadership_channels, now=deps.clock()
        )
    view = build_home(
        locale=deps.locale_for(user_id),
        my_reports=reports.reports_by(
            session, user_id=user_id, identities=deps.identities, limit=10
        ),
        queue=queue,
        audit=privacy.audit_log(session, limit=5) if config.is_admin(user_id) else None,
    )
    # Sealed: a person's Home lists their own reports, anonymous ones too.
    identities = deps.identities
    outbox.enqueue(
        session,
        conversation="home:" + identities.key("home", user_id)[:32],
        method="views.publish",
        payload={SEALED_USER: identities.seal(user_id), "view": view.to_dict()},
        purpose="home",
        replace_pending=True,
        now=deps.clock(),
    )


def refresh_homes(
    session: Session, deps: Deps, *, report: Report | None = None, admins: bool = False
) -> None:
    """Re-publish the Homes that show `report` (its reporter, its owner, leaders who look at
    the queue) or, with `admins`, the admins' settings. Only Homes opened recently."""
    config = deps.config()
    since = deps.clock() - RECENTLY_OPENED
    recent = set(
        session.exec(select(SlackUser.user_id).where(col(SlackUser.home_opened_at) >= since)).all()
    )
    people: set[str] = set()
    if report is not None:
        people |= {p for p in (report.reporter_id, report.owner_id) if p}
        people |= {user for user in recent if config.is_leader(user)}
    if admins:
        people |= {user for user in recent if config.is_admin(user)}
    for user in sorted(people & recent):
        publish_home(session, deps, user)
