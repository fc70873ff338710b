"""`feedbot` subcommands of each feature; each module has `register(subcommands)`."""

from __future__ import annotations

from sqlalchemy import Engine

from feedbot.db import make_engine, upgrade
from feedbot.settings import Settings


def command_engine(settings: Settings) -> Engine:
    """The database a one-shot command works on, migrated to head. Its connections are not
    pooled: each is closed as its session ends, so none outlives the command. (Pooled, the
    connections of commands run one after another in one process, as the tests run them,
    stayed open until the engine was collected: enough of them, and PostgreSQL refuses
    more clients.)"""
    engine = make_engine(settings.database_url, pooled=False)
    upgrade(engine, secret_key=settings.secret_key)
    return engine
