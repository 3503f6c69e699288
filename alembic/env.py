"""Alembic environment: migrates the database in the settings, or the URL it is given.

`koppel db upgrade` passes the URL in the config's attributes; plain `alembic` falls
back to KOPPEL_DATABASE_URL (or the embedded SQLite file).
"""

from __future__ import annotations

from alembic import context

import shared.models  # noqa: F401 - registers every table on the metadata
from shared.config import get_settings
from shared.db.base import metadata
from shared.db.engine import create_sync_engine

config = context.config


def _url() -> str:
    return config.attributes.get("database_url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_sync_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
