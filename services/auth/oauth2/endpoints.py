"""Token, revocation, introspection, userinfo, discovery and JWKS."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from services.auth.client_credentials import claimed_client_id, failure_key, uses_basic
from services.auth.deps import client_address, get_client_cache, get_runtime, run_authlib
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.dpop import JKT_PARAMETER
from services.auth.oauth2.grant_management import SUPPORTED_ACTIONS
from services.auth.oauth2.lookup import find_access_token, token_user
from services.auth.oauth2.par import push_request
from services.auth.oauth2.requests import ParsedRequest
from services.auth.oauth2.server import serve
from shared import ratelimit
from shared.attestation import attestation_jwks
from shared.auth_deps import challenge, get_proof_checker, proof_error_headers, request_proof
from shared.body_limits import KiB, body_limit
from shared.dpop import (
    DPOP_ALGS,
    NONCE_HEADER,
    DPoPError,
)
from shared.metrics import TOKENS_ISSUED
from shared.oauth import (
    CLIENT_ASSERTION_ALGS,
    CLIENT_AUTH_METHODS,
    CONFIDENTIAL_CLIENT_AUTH_METHODS,
)
from shared.scopes import CONSENT_SCOPES, parse_scope
from shared.signing import ID_TOKEN_ALGS, jwks_document, published_keys

router = APIRouter(tags=["oauth2"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 50
FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_TYPE: {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}
        },
    },
    # A token request is a few hundred bytes; a client assertion or a long refresh token
    # fits many times over. Oversized: 413 with an OAuth error.
    **body_limit(16 * KiB, oauth=True),
}


def _oauth_error(status: int, error: str, description: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={**NO_STORE, **(headers or {})})


async def _form_request(request: Request) -> ParsedRequest | JSONResponse:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return _oauth_error(400, "invalid_request", f"the body must be {FORM_TYPE}")
    # A urlencoded body is parsed directly: Starlette's general form parser costs more
    # than the rest of a client credentials grant (and files cannot occur in this type).
    try:
        items = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS, errors="replace")
    except (ValueError, ClientDisconnect):
        return _oauth_error(400, "invalid_request", "the body could not be parsed")
    uri = f"{request.app.state.settings.issuer}{request.url.path}"
    return ParsedRequest("POST", uri, request.headers, form=items)


async def _run_endpoint(request: Request, work, parsed=None, *,
                        read_only: bool = False) -> Response:
    """Run a client-authenticated endpoint, rate limiting failed client authentication.
    `read_only` work runs without a transaction (`run_authlib`).

    The endpoints take the runtime from the app, not as a FastAPI dependency: resolving
    dependencies costs about a tenth of a client credentials grant."""
    runtime = get_runtime(request)
    if parsed is None:
        parsed = await _form_request(request)
    if isinstance(parsed, JSONResponse):
        return parsed
    if uses_basic(parsed.headers.get("authorization", "")) and (
        "client_secret" in parsed.form or "client_assertion" in parsed.form
    ):
        # RFC 6749 section 2.3: a client uses one authentication method per request.
        return _oauth_error(400, "invalid_request", "use one client authentication method")
    client_id = claimed_client_id(parsed.headers, parsed.form)
    limit_key = failure_key(client_id, client_address(request))
    settings = runtime.settings
    cache = get_client_cache(request)
    await cache.ready()
    # The failure counter is read only when this process cannot know that it stayed
    # below the limit (client_cache.py): a lockout still refuses a correct credential.
    lock_ticket = cache.lock_ticket(limit_key)
    if lock_ticket is not None:
        wait = await ratelimit.retry_after(runtime.redis, limit_key,
                                           settings.failed_client_auth_limit)
        if wait is not None:
            return _oauth_error(429, "invalid_client", "too many failed client authentications",
                                {"Retry-After": str(wait)})
        cache.not_locked(limit_key, lock_ticket)
    client, client_ticket = cache.client(client_id)
    clients = {client_id: client} if client is not None else {}
    status, body, headers = await run_authlib(request, lambda ctx: work(ctx, parsed),
                                              read_only=read_only, clients=clients)
    cache.keep(client_id, clients.get(client_id), client_ticket)
    if isinstance(body, dict) and body.get("error") == "invalid_client":
        cache.failed(limit_key)
        await ratelimit.record(runtime.redis, limit_key, settings.failed_attempt_window)
    return JSONResponse(body, status_code=status, headers={**dict(headers), **NO_STORE})


async def _proved_key(request: Request, parsed: ParsedRequest) -> JSONResponse | None:
    """Check the token request's DPoP proof, if it has one (RFC 9449 section 5), and
    leave its key's thumbprint in the request for the grants; 400 if it is not valid."""
    try:
        checked = await request_proof(request)
    except DPoPError as error:
        return _oauth_error(400, error.error, error.description,
                            proof_error_headers(request, error, None))
    if checked is not None:
        parsed.koppel[JKT_PARAMETER] = checked.jkt
    return None


@router.post("/token", openapi_extra=FORM_BODY)
async def token(request: Request) -> Response:
    """OAuth 2.0 token endpoint: authorization_code, refresh_token, client_credentials;
    a `DPoP` proof header binds the tokens to its key (RFC 9449)."""
    parsed = await _form_request(request)
    if isinstance(parsed, ParsedRequest):
        refused = await _proved_key(request, parsed)
        if refused is not None:
            return refused
    # A client credentials grant only reads (the client); every other grant writes.
    read_only = (isinstance(parsed, ParsedRequest)
                 and parsed.payload.grant_type == "client_credentials")
    response = await _run_endpoint(
        request,
        lambda ctx, parsed: serve(ctx, lambda server: server.create_token_response(parsed)),
        parsed, read_only=read_only,
    )
    if response.status_code == 200 and isinstance(parsed, ParsedRequest):
        TOKENS_ISSUED.labels(parsed.form.get("grant_type", "unknown")).inc()
    checker = get_proof_checker(request)
    if checker.nonce_required and JKT_PARAMETER in getattr(parsed, "koppel", {}):
        # The nonce for the client's next proof (RFC 9449 section 8.2).
        response.headers[NONCE_HEADER] = checker.nonce()
    return response


@router.post(
    "/par", openapi_extra=FORM_BODY, status_code=201,
    responses={201: {"description": "the request_uri to send to /authorize, and how long it "
                                    "lasts"},
               400: {"description": "an OAuth error: the request is not valid"},
               401: {"description": "invalid_client"}},
)
async def pushed_authorization_request(request: Request) -> Response:
    """RFC 9126 pushed authorization request: the client authenticates as at the token
    endpoint and sends the parameters of its authorization request; /authorize then takes
    only `client_id` and the `request_uri` answered here (usable once). A `DPoP` proof
    header binds the code to its key, as `dpop_jkt` does (RFC 9449 section 10.1)."""
    parsed = await _form_request(request)
    if isinstance(parsed, ParsedRequest):
        refused = await _proved_key(request, parsed)
        if refused is not None:
            return refused
    return await _run_endpoint(request, push_request, parsed, read_only=True)


@router.post("/revoke", openapi_extra=FORM_BODY)
async def revoke(request: Request) -> Response:
    """RFC 7009 token revocation; the consent behind the token stays."""
    return await _run_endpoint(
        request,
        lambda ctx, parsed: serve(
            ctx, lambda server: server.create_endpoint_response("revocation", parsed)
        ),
    )


@router.post("/introspect", openapi_extra=FORM_BODY)
async def introspect(request: Request) -> Response:
    """RFC 7662 token introspection; a revoked or suspended connection's tokens are inactive."""
    return await _run_endpoint(
        request,
        lambda ctx, parsed: serve(
            ctx, lambda server: server.create_endpoint_response("introspection", parsed)
        ),
    )


def _userinfo(ctx: AuthContext, token: str, jkt: str | None) -> dict[str, Any] | None:
    """The claims for `token`, presented with a proof of key `jkt` (None: as Bearer)."""
    found = find_access_token(ctx, token)
    if found is None or not found.active or "openid" not in parse_scope(found.claims.get("scope")):
        return None
    cnf = found.claims.get("cnf")
    if (cnf.get("jkt") if isinstance(cnf, dict) else None) != jkt:
        return None  # a DPoP-bound token as Bearer, or a proof of another key (RFC 9449)
    user = token_user(ctx, found)
    if user is None:
        return None
    scopes = set(parse_scope(found.claims["scope"]))
    info: dict[str, Any] = {"sub": str(user.id)}
    if scopes & {"profile", "user.info.read"}:
        info["name"] = user.name
    if scopes & {"email", "user.info.read"}:
        info["email"] = user.email
        info["email_verified"] = True
    return info


@router.get("/userinfo", operation_id="oauth2.getUserinfo")
@router.post("/userinfo", operation_id="oauth2.postUserinfo")
async def userinfo(request: Request) -> Response:
    """OpenID Connect userinfo for an access token with `openid`; a DPoP-bound one with
    the DPoP scheme and a proof (RFC 9449 section 7)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme not in ("bearer", "dpop") or not token:
        return JSONResponse({"error": "invalid_token"}, status_code=401,
                            headers={"WWW-Authenticate": challenge()})
    jkt = None
    if scheme == "dpop":
        try:
            checked = await request_proof(request, access_token=token)
            if checked is None:
                raise DPoPError("the DPoP scheme needs a DPoP proof header")
        except DPoPError as error:
            return JSONResponse({"error": error.error, "error_description": error.description},
                                status_code=401, headers=proof_error_headers(request, error))
        jkt = checked.jkt
    info = await run_authlib(request, lambda ctx: _userinfo(ctx, token, jkt))
    if info is None:
        return JSONResponse({"error": "invalid_token"}, status_code=401,
                            headers={"WWW-Authenticate": challenge("invalid_token", scheme)})
    return JSONResponse(info, headers=NO_STORE)


def metadata(settings) -> dict[str, Any]:
    """RFC 8414 / OpenID Connect discovery metadata."""
    issuer = settings.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        # True when every client must use PAR; a client can also require it for itself
        # (its `require_pushed_authorization_requests` metadata, RFC 9126 section 6).
        "require_pushed_authorization_requests": settings.require_pushed_authorization_requests,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        # Koppel's own statements (audit checkpoints), never tokens: shared/attestation.py.
        "attestation_jwks_uri": f"{issuer}/.well-known/attestation-jwks.json",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/end-session",
        "registration_endpoint": f"{settings.registry_url}/oauth2/register",
        # What a partner can ask for at authorize: the consent catalogue. App-level scopes
        # (webhooks.manage, client credentials) and first-party ones are not listed.
        "scopes_supported": sorted(CONSENT_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_CLIENT_AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGS),
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "claims_supported": ["sub", "name", "email", "email_verified", "auth_time", "nonce"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["nl", "en"],
        # Request objects (RFC 9101) are not supported: /authorize refuses them by name, and
        # a `request_uri` other than one the PAR endpoint issued. A PAR `request_uri` works
        # whatever these say (RFC 9126 section 5).
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        # Grant Management for OAuth 2.0: a grant is a connection; the registry serves
        # the grant management endpoint.
        "grant_management_endpoint": f"{settings.registry_url}/v1/grants",
        "grant_management_actions_supported": list(SUPPORTED_ACTIONS),
        "grant_management_action_required": False,
    }


@router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> JSONResponse:
    """OpenID Connect discovery."""
    return JSONResponse(metadata(request.app.state.settings))


@router.get("/.well-known/oauth-authorization-server")
async def authorization_server_metadata(request: Request) -> JSONResponse:
    """RFC 8414 authorization server metadata."""
    return JSONResponse(metadata(request.app.state.settings))


@router.get("/.well-known/attestation-jwks.json")
async def attestation_keys(request: Request) -> JSONResponse:
    """Every attestation public key ever made (they sign audit checkpoints, never
    tokens); none is ever withdrawn, so an old statement stays verifiable."""
    keys = await run_authlib(request, lambda ctx: attestation_jwks(ctx.session),
                             read_only=True)
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    """The public signing keys: active ones, and retired ones until their tokens expired."""
    keys = await run_authlib(request, lambda ctx: published_keys(ctx.session))
    return JSONResponse(jwks_document(keys), headers={"Cache-Control": "public, max-age=300"})
