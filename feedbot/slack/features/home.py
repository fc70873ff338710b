"""The home feature's listeners."""

from __future__ import annotations

from slack_bolt import App

from feedbot.slack.app import Deps


def register(app: App, deps: Deps) -> None:
    """Nothing to register yet."""
    _ = app, deps
