"""The certified client libraries meet the stack of tests/fixtures/stack.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.harness import NodeApp


@pytest.fixture
def node_app() -> Iterator[NodeApp]:
    app = NodeApp()
    try:
        yield app
    finally:
        app.close()
