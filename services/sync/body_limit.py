"""Refuse request bodies over a size limit with 413 problem+json (SECURITY 33), counting
the bytes as they arrive, so a chunked body without Content-Length is cut off too."""

from __future__ import annotations

import json

from shared.errors import PROBLEM_JSON, problem_type

MAX_BODY_BYTES = 256 * 1024


def _problem() -> tuple[dict, bytes]:
    body = json.dumps({"type": problem_type("payload-too-large"), "title": "Payload too large",
                       "status": 413,
                       "detail": f"the request body exceeds {MAX_BODY_BYTES} bytes"}).encode()
    start = {"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", PROBLEM_JSON.encode()),
                         (b"content-length", str(len(body)).encode())]}
    return start, body


class BodyLimit:
    """Pure ASGI middleware (works before any body is parsed)."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen, too_large = 0, False

        async def limited_receive():
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Stop reading; the app's answer is replaced by the 413 below.
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def replacing_send(message):
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._refuse(send)

        await self.app(scope, limited_receive, replacing_send)

    @staticmethod
    async def _refuse(send) -> None:
        start, body = _problem()
        await send(start)
        await send({"type": "http.response.body", "body": body})
