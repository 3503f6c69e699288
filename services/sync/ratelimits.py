"""Per-app and per-connection request budgets for the sync API (docs/product.md 5.8): fixed windows
in Redis, counted by one Lua call per request; over budget answers 429 with
`Retry-After`, and every answer carries `RateLimit` / `RateLimit-Policy` headers
(draft-ietf-httpapi-ratelimit-headers)."""

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


# Counts one request against each budget (KEYS) in one round trip; a window starts with
# its first request. Returns count and seconds left per key.
_COUNT = """
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if count == 1 or ttl < 0 then
    redis.call('EXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[2 * i - 1] = count
  out[2 * i] = ttl
end
return out
"""


def _counter(request: Request):
    state = request.app.state
    script = getattr(state, "sync_rate_counter", None)
    if script is None or script.registered_client is not state.runtime.redis:
        script = state.sync_rate_counter = state.runtime.redis.register_script(_COUNT)
    return script


async def rate_limit(request: Request, response: Response, principal: PrincipalDep) -> None:
    """Count this request against the caller's budgets; 429 once one is spent."""
    budgets = _callers(principal)
    results = await _counter(request)(keys=[f"koppel:rl:sync:{name}" for name, _ in budgets],
                                      args=[WINDOW_S])
    worst = None
    for index, (_, limit) in enumerate(budgets):
        count, ttl = int(results[index * 2]), max(int(results[index * 2 + 1]), 1)
        remaining = max(limit - count, 0)
        if worst is None or remaining < worst[1]:
            worst = (limit, remaining, ttl, count > limit)
    if worst is None:
        raise RuntimeError("every caller has an app budget")
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
