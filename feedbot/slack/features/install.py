"""The app's installation: Slack tells feedbot when it was uninstalled or its token revoked.

Both pause sending in every process using the token (`feedbot.slack.access`); reports are
still taken and messages kept until the app is reinstalled with a new token.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from feedbot.slack.deps import Deps


def register(app: App, deps: Deps) -> None:
    app.event("app_uninstalled")(_uninstalled(deps))
    app.event("tokens_revoked")(_tokens_revoked(deps))


def _uninstalled(deps: Deps) -> Any:
    def handle() -> None:
        deps.access.revoked("the app was uninstalled from the workspace")

    return handle


def _tokens_revoked(deps: Deps) -> Any:
    def handle(event: dict[str, Any]) -> None:
        tokens = event.get("tokens") if isinstance(event.get("tokens"), dict) else {}
        bots = tokens.get("bot") if isinstance(tokens, dict) else None
        if isinstance(bots, list) and bots:  # user tokens (`oauth`) are not feedbot's
            deps.access.revoked("Slack revoked the bot token")

    return handle
