"""The test harness: see tests/fixtures/. `make test` runs on PostgreSQL and Redis when
KOPPEL_TEST_DATABASE_URL and KOPPEL_TEST_REDIS_URL are set, else on SQLite and an
embedded Redis."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.backend import on_postgres

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.redis",
    "tests.fixtures.settings",
    # Last: it imports the fixture modules above, which must be registered first.
    "tests.fixtures.auth_server",
    "tests.fixtures.stack",
]


def pytest_configure(config: pytest.Config) -> None:
    # The suite sets its own configuration; a developer's KOPPEL_* must not leak in.
    for name in list(os.environ):
        if name.startswith("KOPPEL_") and not name.startswith("KOPPEL_TEST_"):
            del os.environ[name]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if on_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set KOPPEL_TEST_DATABASE_URL")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)
