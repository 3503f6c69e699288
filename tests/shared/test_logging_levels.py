"""Configuring logging again (another service's settings, a test's, tracing turned on)
holds for loggers already used: structlog caches them on first use."""

from __future__ import annotations

import json
import logging
import threading

import pytest
import structlog

from shared.config import Settings
from shared.logging import configure_logging
from shared.request_id import bind_request_id, current_request_id


def lines(capsys: pytest.CaptureFixture) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()
            if line.startswith("{")]


def test_a_second_configuration_holds_for_a_logger_already_used(
    capsys: pytest.CaptureFixture,
) -> None:
    log = structlog.get_logger("koppel.test.levels")
    configure_logging(Settings(log_json=True, log_level="warning"), "first")
    log.info("hidden at warning")
    log.debug("hidden too")
    log.warning("shown at warning")
    assert [line["event"] for line in lines(capsys)] == ["shown at warning"]

    configure_logging(Settings(log_json=True, log_level="debug"), "second")
    log.debug("shown at debug")
    log.info("shown at info")
    assert [(line["event"], line["level"], line["service"]) for line in lines(capsys)] == [
        ("shown at debug", "debug", "second"), ("shown at info", "info", "second")]

    configure_logging(Settings(log_json=True, log_level="info"), "third")
    log.debug("hidden at info")
    log.error("shown at info")
    assert [line["event"] for line in lines(capsys)] == ["shown at info"]


@pytest.mark.parametrize("value", [None, "", "bad id", "x" * 129])
def test_binding_no_or_a_malformed_request_id_unbinds_it(value: str | None) -> None:
    with structlog.contextvars.bound_contextvars():
        bind_request_id("req-1")
        assert current_request_id() == "req-1"
        bind_request_id(value)
        assert current_request_id() is None
        assert "request_id" not in structlog.contextvars.get_contextvars()


def test_lines_from_structlog_and_the_standard_library_never_share_a_line(
    capsys: pytest.CaptureFixture,
) -> None:
    """Threads logging at once through both (the worker: structlog in the event loop, a
    driver's logging in its thread) each write whole lines."""
    configure_logging(Settings(log_json=True, log_level="info"), "mixed")
    ours, theirs = structlog.get_logger("koppel.test.mixed"), logging.getLogger("driver")
    count = 3000

    def through_structlog() -> None:
        for number in range(count):
            ours.info("structlog line", number=number)

    def through_logging() -> None:
        for number in range(count):
            theirs.warning("logging line %d", number)

    threads = [threading.Thread(target=work) for work in (through_structlog, through_logging)
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each line parses on its own; count this test's lines only (a service or worker
    # thread that another test left running may log in between).
    events = [line["event"] for line in lines(capsys)
              if line["event"] == "structlog line" or line["event"].startswith("logging line")]
    assert len(events) == 4 * count
