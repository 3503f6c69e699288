"""The auth service's scenarios: client-credentials, refresh (rotation included) and
authorization-code grants, password logins. `koppel serve auth` on the server core."""

from __future__ import annotations

from bench.harness import repeat
from bench.harness.context import Ctx, url
from bench.harness.load import Exhausted
from bench.harness.world import PASSWORD, REDIRECT, USER_EMAIL, World

MIN_BATCH = 2000

def _take(pool: list):
    try:
        return pool.pop()
    except IndexError:
        raise Exhausted from None

async def run(ctx: Ctx, world: World, env: dict[str, str], chosen: list[str]) -> None:
    server = ctx.serve("auth", env)
    token_url = f"{url('auth')}/token"
    headers = world.basic_auth
    try:
        if "client_credentials" in chosen:
            async def client_credentials(http):
                async with http.post(token_url, headers=headers, data={
                        "grant_type": "client_credentials", "scope": "webhooks.manage"}) as r:
                    await r.read()
                    return r.status

            await repeat.rates(ctx, "client_credentials", client_credentials,
                               server=server)

        codes: list[str] = []
        if "code_exchange" in chosen:
            def mint_codes(rate: float) -> None:
                codes.clear()
                codes.extend(world.mint_codes(max(MIN_BATCH, int(rate * ctx.seconds * 1.5))))

            async def code_exchange(http):
                form = {"grant_type": "authorization_code", "code": _take(codes),
                        "redirect_uri": REDIRECT, "code_verifier": world.verifier}
                async with http.post(token_url, data=form, headers=headers) as r:
                    await r.read()
                    return r.status

            await repeat.rates(ctx, "code_exchange", code_exchange, before_run=mint_codes,
                               server=server)

        tokens: list[str] = []
        if "refresh" in chosen:
            def mint_tokens(rate: float) -> None:
                tokens.clear()
                tokens.extend(world.mint_refresh_tokens(
                    max(MIN_BATCH, int(rate * ctx.seconds * 1.5))))

            async def refresh(http):
                form = {"grant_type": "refresh_token", "refresh_token": _take(tokens)}
                async with http.post(token_url, data=form, headers=headers) as r:
                    await r.read()
                    return r.status

            await repeat.rates(ctx, "refresh", refresh, before_run=mint_tokens,
                               server=server)

        if "login" in chosen:
            pending: list[tuple[str, str]] = []
            browser = {"cookie": ""}

            def mint_challenges(rate: float) -> None:
                minted, cookie = world.mint_login_challenges(
                    max(500, int(rate * ctx.seconds * 2)))
                pending[:] = minted
                browser["cookie"] = cookie

            async def login(http):
                challenge, csrf = _take(pending)
                form = {"username": USER_EMAIL, "password": PASSWORD,
                        "login_challenge": challenge, "csrf_token": csrf}
                async with http.post(f"{url('auth')}/login", data=form, allow_redirects=False,
                                     cookies={"koppel_browser": browser["cookie"]}) as r:
                    await r.read()
                    return r.status

            # Logins are CPU-bound (argon2id): a few concurrent clients keep the core busy.
            await repeat.rates(ctx, "login", login, before_run=mint_challenges, concurrency=8,
                               server=server)
    finally:
        server.stop()
