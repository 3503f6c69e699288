"""Per-app and per-connection request budgets for the sync API (SPEC 5.8): fixed windows
in Redis; over budget answers 429 with `Retry-After`, and every answer carries
`RateLimit` / `RateLimit-Policy` headers (draft-ietf-httpapi-ratelimit-headers)."""

from __future__ import annotations

from fastapi import Request, Response

from shared.auth_deps import PrincipalDep
from shared.errors import RateLimited

WINDOW_S = 60
PER_APP = 6000  # requests per window for all of an app's tokens together
PER_CALLER = 600  # per connection, per first-party user and app, or per app token


def _callers(principal) -> list[tuple[str, int]]:
    app = (f"app:{principal.client_id}", PER_APP)
    if principal.kind == "connection":
        return [app, (f"conn:{principal.connection_id}", PER_CALLER)]
    if principal.kind == "user":
        return [app, (f"user:{principal.client_id}:{principal.user_id}", PER_CALLER)]
    return [app]


async def rate_limit(request: Request, response: Response, principal: PrincipalDep) -> None:
    """Count this request against the caller's budgets; 429 once one is spent."""
    client = request.app.state.runtime.redis
    pipe = client.pipeline(transaction=False)
    budgets = _callers(principal)
    for name, _ in budgets:
        key = f"koppel:rl:sync:{name}"
        pipe.set(key, 0, ex=WINDOW_S, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
    results = await pipe.execute()
    worst = None
    for index, (_, limit) in enumerate(budgets):
        count, ttl = int(results[index * 3 + 1]), max(int(results[index * 3 + 2]), 1)
        remaining = max(limit - count, 0)
        if worst is None or remaining < worst[1]:
            worst = (limit, remaining, ttl, count > limit)
    limit, remaining, reset, exceeded = worst
    headers = {
        "RateLimit-Policy": f'"default";q={limit};w={WINDOW_S}',
        "RateLimit": f'"default";r={remaining};t={reset}',
    }
    if exceeded:
        error = RateLimited(reset)
        error.headers.update(headers)
        raise error
    response.headers.update(headers)
