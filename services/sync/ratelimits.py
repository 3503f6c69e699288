"""Request budgets for the sync API (docs/product.md 5.8): fixed windows in Redis, counted by
one Lua call per request; over budget answers 429 with `Retry-After`, and every answer
carries `RateLimit` / `RateLimit-Policy` headers (draft-ietf-httpapi-ratelimit-headers).

An app's budget is counted per environment, so the end users of one customer cannot
spend it for another's; beside it each connection, or each user of a first-party app,
has its own. `RateLimit-Policy` lists the policies that apply to the caller and
`RateLimit` names the one closest to exhaustion (the one that refused, on a 429).

A DPoP call's proof `jti` is reserved in that same Lua call (`reserve_and_count`, which
the shared authentication runs as the app's `dpop_reserve`): one Redis round trip per
request with or without DPoP. A replayed proof counts against no budget."""

from __future__ import annotations

from fastapi import Request, Response

from shared.auth_deps import PrincipalDep
from shared.dpop import DPoPError, Proof, ProofChecker
from shared.errors import RateLimited
from shared.openapi import answers
from shared.tokens import Principal

WINDOW_S = 60
PER_APP = 6000  # requests per window for all of an app's tokens in one environment
PER_CALLER = 600  # per connection, per first-party user and app, or per app token


def _budgets(principal: Principal) -> list[tuple[str, str, int]]:
    """(policy name, counter key, limit) of each budget the caller's request counts against."""
    client = principal.client_id
    if principal.kind == "app":  # the app's own token (its webhook endpoints): one budget
        return [("app", f"app:{client}", PER_CALLER)]
    tenant = ("app-environment", f"app:{client}:env:{principal.environment_id}", PER_APP)
    if principal.kind == "connection":
        return [tenant, ("connection", f"conn:{principal.connection_id}", PER_CALLER)]
    return [tenant, ("user", f"user:{client}:{principal.user_id}", PER_CALLER)]


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


# The same, after reserving a DPoP proof's jti (KEYS[1], for ARGV[2] seconds): nothing
# counted and an empty answer if it was taken.
_RESERVE_AND_COUNT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  return {}
end
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local count = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if count == 1 or ttl < 0 then
    redis.call('EXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[2 * i - 3] = count
  out[2 * i - 2] = ttl
end
return out
"""
# Where reserve_and_count leaves its counts for rate_limit, in the request's scope.
_COUNTED = "koppel.sync.rate_counts"


def _script(request: Request, name: str, source: str):
    state = request.app.state
    script = getattr(state, name, None)
    if script is None or script.registered_client is not state.runtime.redis:
        script = state.runtime.redis.register_script(source)
        setattr(state, name, script)
    return script


def _keys(budgets: list[tuple[str, str, int]]) -> list[str]:
    return [f"koppel:rl:sync:{key}" for _, key, _ in budgets]


async def reserve_and_count(request: Request, principal: Principal, checker: ProofChecker,
                            proof: Proof) -> None:
    """Reserve the proof's jti (DPoPError if it was used before) and count the request
    against the caller's budgets, in one round trip; `rate_limit` takes the counts."""
    script = _script(request, "sync_rate_reserver", _RESERVE_AND_COUNT)
    results = await script(keys=[checker.jti_key(proof), *_keys(_budgets(principal))],
                           args=[WINDOW_S, checker.jti_ttl])
    if not results:
        raise DPoPError("this DPoP proof was used before (jti)")
    request.scope[_COUNTED] = results


@answers(429)
async def rate_limit(request: Request, response: Response, principal: PrincipalDep) -> None:
    """Count this request against the caller's budgets (unless its DPoP check counted it
    already); 429 once one is spent."""
    budgets = _budgets(principal)
    results = request.scope.pop(_COUNTED, None)
    if results is None:
        results = await _script(request, "sync_rate_counter", _COUNT)(
            keys=_keys(budgets), args=[WINDOW_S])
    worst = None
    for index, (policy, _, limit) in enumerate(budgets):
        count, ttl = int(results[index * 2]), max(int(results[index * 2 + 1]), 1)
        remaining = max(limit - count, 0)
        exceeded = count > limit
        # The refusing budget wins, then the one with the fewest requests left.
        if worst is None or (exceeded, -remaining) > (worst[3], -worst[1]):
            worst = (policy, remaining, ttl, exceeded)
    if worst is None:
        raise RuntimeError("every caller has a budget")
    policy, remaining, reset, exceeded = worst
    headers = {
        "RateLimit-Policy": ", ".join(f'"{name}";q={limit};w={WINDOW_S}'
                                      for name, _, limit in budgets),
        "RateLimit": f'"{policy}";r={remaining};t={reset}',
    }
    if exceeded:
        error = RateLimited(reset)
        error.headers.update(headers)
        raise error
    response.headers.update(headers)
