"""The migrations build exactly the schema the models describe, and undo it."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

import shared.models  # noqa: F401 - registers every table on the metadata
from shared.db.base import metadata
from shared.db.engine import create_sync_engine
from tests.fixtures.database import alembic_config, fresh_database, migrate


@pytest.fixture
def fresh_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path) as url:
        yield url


def _differences(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_upgrade_head_builds_what_the_models_describe(fresh_url: str) -> None:
    migrate(fresh_url)
    engine = create_sync_engine(fresh_url)
    try:
        assert set(inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version"}
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(fresh_url: str) -> None:
    config = alembic_config(fresh_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_sync_engine(fresh_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_the_comparison_sees_a_missing_table(fresh_url: str) -> None:
    migrate(fresh_url)
    engine = create_sync_engine(fresh_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE refresh_tokens")
        assert any(diff[0] == "add_table" for diff in _differences(engine))
    finally:
        engine.dispose()
