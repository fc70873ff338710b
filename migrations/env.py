"""Alembic environment: the models' metadata, and the URL or connection feedbot hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from feedbot import models
from feedbot.db import make_engine, migration_connection
from feedbot.settings import get_settings

target_metadata = models.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = context.config.attributes.get("engine") or make_engine(get_settings().database_url)
    with migration_connection(engine) as connection:  # SQLite: foreign keys off, see there
        _run(connection)


if context.is_offline_mode():
    context.configure(url=get_settings().database_url, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
