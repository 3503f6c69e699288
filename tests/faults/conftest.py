"""Fault injection (issue 7, SECURITY lines 24, 28 and 17): real processes, a real
database and Redis, broken on purpose. Each scenario counts the events it wrote and the
events the receiver got; the counts are printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.db.engine import create_sync_engine, sync_session_factory
from shared.vault import KeyRing
from tests.faults.redis_server import RedisServer
from tests.faults.stack import Stack, seed
from tests.fixtures.database import fresh_database, migrate
from tests.multi_instance.cluster import ThreadedReceiver

COUNTS = "fault_counts"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port (kill and start it at will)."""
    with RedisServer(tmp_path).running() as server:
        yield server


@pytest.fixture
def stack(settings: Settings, subprocess_env: dict[str, str], keyring: KeyRing,
          redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    """A migrated, seeded database of its own, the private Redis and a receiver; the
    processes the test starts are stopped after it."""
    with fresh_database(tmp_path) as database_url, ThreadedReceiver().running() as receiver:
        migrate(database_url)
        engine = create_sync_engine(database_url)
        try:
            sessions = sync_session_factory(engine)
            stack = Stack(settings, subprocess_env, database_url, redis_server, sessions,
                          keyring, seed(sessions, keyring), receiver, tmp_path)
            try:
                yield stack
            finally:
                stack.stop()
        finally:
            engine.dispose()


@pytest.fixture
def report(record_property) -> object:
    """`report(written=..., delivered=...)`: check that nothing was lost, and record the
    counts for the summary at the end of the run."""

    def check(*, written: set[str], delivered: set[str]) -> None:
        record_property(COUNTS, (len(written), len(written & delivered)))
        missing = written - delivered
        assert written, "the scenario wrote no event"
        assert not missing, f"{len(missing)} of {len(written)} events never delivered"

    return check


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = []
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", []):
            if name == COUNTS and report.when == "call":
                written, delivered = value
                test = report.nodeid.split("::")[-1]
                lines.append(f"{test}: {written} events written, {delivered} delivered")
    if lines:
        terminalreporter.section("fault injection: events written and delivered")
        for line in lines:
            terminalreporter.write_line(line)
