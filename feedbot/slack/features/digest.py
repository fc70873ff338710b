"""The digest feature's listeners."""

from __future__ import annotations

from slack_bolt import App

from feedbot.slack.app import Deps


def register(app: App, deps: Deps) -> None:
    """Nothing to register yet."""
    _ = app, deps


def send_due(deps: Deps) -> None:
    """Nothing is scheduled yet."""
    _ = deps
