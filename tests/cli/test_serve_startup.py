"""`koppel serve` builds its service's app before uvicorn starts and freezes what start-up
made out of the garbage collector's generations (cli/serve.py), so full collections
under load do not walk the modules, models and routes again."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from cli.serve import Service, built_app


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process collects as before


@pytest.mark.usefixtures("unfrozen")
def test_serve_builds_the_app_and_freezes_startup() -> None:
    assert gc.get_freeze_count() == 0
    app = built_app(Service.SYNC)
    assert isinstance(app, FastAPI)
    assert "/v1/employees/{employee_id}" in app.openapi()["paths"]
    assert gc.get_freeze_count() > 10_000
