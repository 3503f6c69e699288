"""`koppel db`: schema migrations."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from cli.context import ensure_sqlite_dir, load_settings
from cli.output import CliError, handle_errors, stderr
from shared.config import Settings

app = typer.Typer(help="Database schema.", no_args_is_help=True)


def alembic_config(settings: Settings) -> Config:
    """Alembic's config for the checkout's alembic.ini, aimed at the configured database."""
    ini = Path(__file__).resolve().parents[1] / "alembic.ini"
    if not ini.is_file():
        raise CliError(f"alembic.ini not found at {ini}")
    config = Config(str(ini))
    config.attributes["database_url"] = settings.resolved_database_url
    return config


def upgrade(settings: Settings) -> None:
    """Migrate the configured database to the newest revision."""
    ensure_sqlite_dir(settings)
    command.upgrade(alembic_config(settings), "head")


def check_migrated(settings: Settings, engine: Engine) -> None:
    """Raise CliError unless the database is at the newest revision."""
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    # Alembic says at INFO which dialect it found; a check that prints one line on
    # failure must not print that too, whatever the process's logging is.
    chatter = logging.getLogger("alembic.runtime.migration")
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        chatter.setLevel(level)
    if current != head:
        found = current or "an empty schema"
        raise CliError(
            f"the database is at {found}, not at {head}: run `koppel db upgrade` first"
        )


@app.command("upgrade")
@handle_errors
def upgrade_command() -> None:
    """Migrate the database to the newest schema (alembic upgrade head)."""
    settings = load_settings()
    upgrade(settings)
    stderr().print("database is up to date")
