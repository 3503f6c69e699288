"""The auth service's scenarios: client-credentials, refresh (rotation included) and
authorization-code grants, password logins, and a FAPI 2.0 client's PAR + code exchange
(private_key_jwt and DPoP). `koppel serve auth` on the server core."""

from __future__ import annotations

import secrets
import time

from bench.harness import repeat
from bench.harness.context import Ctx, url
from bench.harness.load import Exhausted
from bench.harness.proofs import ASSERTION_TYPE, EcKey
from bench.harness.world import FAPI_CLIENT_ID, PASSWORD, REDIRECT, SCOPES, USER_EMAIL, World

MIN_BATCH = 2000
PAR_MIN_BATCH = 500

def _take(pool: list):
    try:
        return pool.pop()
    except IndexError:
        raise Exhausted from None

async def par_exchange(ctx: Ctx, world: World, client_key: EcKey, dpop_key: EcKey,
                       server) -> None:
    """One unit: POST /par (private_key_jwt) then a code exchange at /token with a fresh
    assertion and a DPoP proof, for a code minted bound to the DPoP key. Assertions and
    proofs are signed in a batch before each run (one fresh jti each)."""
    issuer = url("auth")
    par_url, token_url = f"{issuer}/par", f"{issuer}/token"
    batch: list[tuple[str, str, str, str]] = []  # (PAR assertion, code, assertion, proof)
    par_form = {"response_type": "code", "client_id": FAPI_CLIENT_ID, "redirect_uri": REDIRECT,
                "scope": " ".join(SCOPES), "code_challenge": world.challenge,
                "code_challenge_method": "S256", "dpop_jkt": dpop_key.jkt,
                "client_assertion_type": ASSERTION_TYPE}

    def prepare(rate: float) -> None:
        n = max(PAR_MIN_BATCH, int(rate * ctx.seconds * 1.5))
        codes = world.mint_codes(n, fapi=True, dpop_jkt=dpop_key.jkt)
        now = int(time.time())
        batch[:] = [(client_key.assertion(FAPI_CLIENT_ID, issuer, now), code,
                     client_key.assertion(FAPI_CLIENT_ID, issuer, now),
                     dpop_key.dpop_proof("POST", token_url, now=now)) for code in codes]

    async def unit(http):
        try:
            par_assertion, code, assertion, proof = batch.pop()
        except IndexError:
            raise Exhausted from None
        async with http.post(par_url, data={**par_form, "state": secrets.token_urlsafe(8),
                                            "client_assertion": par_assertion}) as r:
            await r.read()
            if r.status != 201:
                return r.status
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": world.verifier, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion}
        async with http.post(token_url, data=form, headers={"DPoP": proof}) as r:
            await r.read()
            return r.status

    figure = await repeat.rates(ctx, "par_exchange", unit, before_run=prepare, server=server)
    figure.notes.append("one unit = POST /par + POST /token (authorization_code): a FAPI 2.0 "
                        "client, ES256 private_key_jwt, DPoP-bound code and tokens")


async def run(ctx: Ctx, world: World, env: dict[str, str], chosen: list[str]) -> None:
    fapi_keys = None
    if "par_exchange" in chosen:  # registered before the service starts, as in production
        fapi_keys = EcKey(kid="bench-fapi-1"), EcKey()
        world.add_fapi_app(fapi_keys[0].jwks)
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

        if fapi_keys is not None:
            await par_exchange(ctx, world, *fapi_keys, server)
    finally:
        server.stop()
