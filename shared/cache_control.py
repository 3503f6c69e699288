"""No cache keeps an answer given to a caller with credentials (SECURITY 39, issue 14
finding 7).

One rule for every route instead of a header per endpoint: an answer to a request that
carries an `Authorization` header (a bearer token, HTTP Basic) may hold personal data
(employees and their slices, users, connections with their users, the overview), so it
gets `Cache-Control: no-store` and `Vary: Authorization`, replacing what the route set;
an `ETag` stays. Answers to anonymous requests (metadata, the scope catalogue, JWKS,
logos) keep their own caching headers.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_STORE = "no-store"


def _with_authorization(vary: str) -> str:
    names = [name.strip() for name in vary.split(",") if name.strip()]
    if "*" in names or any(name.lower() == "authorization" for name in names):
        return vary
    return ", ".join([*names, "Authorization"])


class NoStoreForCredentials:
    """Pure ASGI middleware: `no-store` on every answer to a request with credentials."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(name == b"authorization"
                                               for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return

        async def private(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Cache-Control"] = NO_STORE
                headers["Vary"] = _with_authorization(headers.get("Vary", ""))
            await send(message)

        await self.app(scope, receive, private)
