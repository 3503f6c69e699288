"""A request id for every request: the caller's `X-Request-ID` when well formed, else a
new one; bound to structlog's context for the request's log lines and sent back.

It travels on: `shared.outbox.emit` stores it on the event row, the jobs a request
enqueues take it as their `request_id` argument, and the worker binds it while a job (or
a delivery of that event) runs. It is never sent to webhook receivers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
MAX_LENGTH = 128
# Letters, digits and a few separators: nothing that could forge a log line or a header.
WELL_FORMED = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_LENGTH - 1}}}")


def request_id_from(value: str | None) -> str:
    """The caller's id if well formed, else a fresh random one."""
    if value and is_well_formed(value):
        return value
    return uuid.uuid4().hex


def is_well_formed(value: object) -> bool:
    return isinstance(value, str) and WELL_FORMED.fullmatch(value) is not None


# The id in force, beside structlog's copy: reading it back costs one lookup.
_CURRENT: ContextVar[str | None] = ContextVar("koppel_request_id", default=None)


def current_request_id() -> str | None:
    """The request id bound to this task's log context (a request's, or a job's)."""
    return _CURRENT.get()


def bind_request_id(value: str | None) -> None:
    """Bind a request id read back from a job argument or an event row to this task's log
    context. None (or anything not well formed) unbinds it: the work at hand was not
    caused by a request, whatever its job was."""
    if is_well_formed(value):
        _CURRENT.set(value)
        structlog.contextvars.bind_contextvars(request_id=value)
    elif _CURRENT.get() is not None:
        _CURRENT.set(None)
        structlog.contextvars.unbind_contextvars("request_id")


class RequestIdMiddleware:
    """Pure ASGI (no task switch), so the bound id reaches every log line of the request."""

    def __init__(self, app: ASGIApp, service: str,
                 on_request_id: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.service = service
        self.on_request_id = on_request_id  # e.g. tags the request's trace span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k.lower() == HEADER.encode()),
            None,
        )
        request_id = request_id_from(supplied)
        scope.setdefault("state", {})["request_id"] = request_id
        if self.on_request_id is not None:
            self.on_request_id(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != HEADER.encode()]
                headers.append((HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        current = _CURRENT.set(request_id)
        try:
            with structlog.contextvars.bound_contextvars(
                request_id=request_id, service=self.service
            ):
                await self.app(scope, receive, send_with_id)
        finally:
            _CURRENT.reset(current)
