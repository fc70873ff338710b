"""The App Home tab: published when someone opens it (`feedbot.slack.homes.publish_home`),
and again by the flows when what it shows changes, while it was opened recently.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt import App

from feedbot.db import upsert_insert
from feedbot.models import SlackUser
from feedbot.slack import homes
from feedbot.slack.deps import Deps

NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def register(app: App, deps: Deps) -> None:
    app.event("app_home_opened")(_opened(deps))


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
            homes.publish_home(session, deps, user_id)

    return handle
