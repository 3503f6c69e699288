"""Structured logs (structlog): JSON lines on standard error, one per event.

The standard library's records (uvicorn's access and error logs, SQLAlchemy, arq) go
through the same renderer, so every line is JSON and carries the bound context: the
service and, during a request or a job it caused, its `request_id` (see
shared/request_id.py); with tracing on, the current span's `trace_id` and `span_id`.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO, cast

import structlog
from structlog.typing import Processor

from shared.config import Settings

# uvicorn gives these loggers handlers of their own; they hand their records to the root.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker")
_HANDLER_NAME = "koppel-json"


class _Stderr:
    """Standard error as it is when a line is written, not when logging was set up (a
    test runner swaps and closes its captured streams). structlog and the standard
    library's handler each write a line in one call; one lock keeps lines from threads
    writing at once whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _Stderr()

# structlog's loggers cache their processors on first use. One list object, changed in
# place, and a level held here keep a second configuration (another service, a test's
# settings, tracing turned on) in force for loggers already used.
_PROCESSORS: list = []
_LEVEL = [logging.INFO]
_METHOD_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "msg": logging.INFO,
                  "warning": logging.WARNING, "warn": logging.WARNING,
                  "error": logging.ERROR, "exception": logging.ERROR,
                  "critical": logging.CRITICAL, "fatal": logging.CRITICAL}


def _drop_below_level(logger: object, method: str, event: dict) -> dict:
    if _METHOD_LEVELS.get(method, logging.INFO) < _LEVEL[0]:
        raise structlog.DropEvent
    return event


# structlog makes its filtering logger classes at run time, which mypy cannot follow.
class _BoundLogger(structlog.make_filtering_bound_logger(logging.NOTSET)):  # type: ignore[misc]
    def debug(self, event: str | None = None, *args: object, **kw: object) -> object:
        if _LEVEL[0] > logging.DEBUG:
            return None  # the cheap way out of the commonest call below the level
        return super().debug(event, *args, **kw)


def configure_logging(settings: Settings, service: str) -> None:
    """Set up structlog and the standard library's root logger for one process."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    renderer = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared_processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if settings.otel_enabled:
        from shared.tracing import trace_ids_processor

        shared_processors.append(trace_ids_processor())
    _LEVEL[0] = level
    _PROCESSORS[:] = [_drop_below_level, *shared_processors,
                      structlog.processors.format_exc_info, renderer]
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=_BoundLogger,
        # structlog only writes and flushes; its types ask for a whole TextIO.
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _STDERR)),  # one write a line
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)

    handler = logging.StreamHandler(_STDERR)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_processors, structlog.stdlib.add_logger_name,
                           structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler: configuring twice (worker start-up) must not double
    # the lines, and handlers others installed (a test runner's) stay.
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
