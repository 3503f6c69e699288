"""What the sync service's directly served routes (shared/direct_route.py) run in place
of FastAPI's dependency solving, in the order FastAPI runs the dependencies: the caller
(its token, and its DPoP proof), its rate limit (the router's dependency), the request's
session and the declared policy's rule for the operation on it (`deps.allowed`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.deps import allowed, request_session
from services.sync.ratelimits import rate_limit
from shared.auth_deps import principal
from shared.policy import RULES, Caller
from shared.tokens import Principal


async def counted_caller(request: Request, response: Response) -> Principal:
    """The verified caller, counted against its rate limits (429 once one is spent);
    `response` gets the rate-limit headers."""
    caller = await principal(request)
    await rate_limit(request, response, caller)
    return caller


@asynccontextmanager
async def authorized_on(request: Request, caller: Principal, operation: str
                        ) -> AsyncIterator[tuple[Caller, AsyncSession]]:
    """The caller authorized for `operation` on the request's session, which is
    committed when the block succeeds (rolled back if it raises)."""
    async with request_session(request, request.app.state.runtime) as session:
        yield await allowed.authorized(request, caller, session, RULES[operation]), session


def carried_headers(response: Response) -> dict[str, str]:
    """The headers the route's work set on `response` (rate limits, Link, ETag), for the
    answer that replaces it."""
    headers = dict(response.headers)
    headers.pop("content-length", None)
    return headers


def json_answer(body: bytes, response: Response, status_code: int = 200) -> Response:
    """A JSON answer carrying the headers the route's work set on `response`."""
    return Response(body, status_code=status_code, media_type="application/json",
                    headers=carried_headers(response))


def json_document(document: object, response: Response) -> Response:
    """`document` (JSON values) encoded with orjson, as `json_answer`."""
    return json_answer(orjson.dumps(document), response)
