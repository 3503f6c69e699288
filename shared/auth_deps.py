"""FastAPI dependencies that turn `Authorization: Bearer ...` (or `DPoP ...` with a
proof) into a Principal.

    CompanyReader = Annotated[Principal, Depends(require_scope("company.info.read"))]

    @router.get("/v1/companies")
    async def list_companies(caller: CompanyReader): ...

Tokens are accepted in the Authorization header only (RFC 6750 2.1), never in the
query string, where they would end up in logs. A DPoP-bound token (`cnf.jkt`, RFC 9449)
is accepted only with the DPoP scheme and a proof of its key for this very request
(method, public URL, the token's hash); sent as Bearer it is refused (section 7.2). A
token that is not bound is a bearer token: a DPoP header beside it changes nothing, and
the DPoP scheme is refused for it. `authenticate` does all of it once per request, for
every route's dependency and for the idempotency middleware alike.

The caller is one `async def` dependency: FastAPI runs a plain `def` dependency in the
thread pool, and resolves each dependency of a request's tree anew, both of which cost
more than the work of parsing the header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPBearer

from shared.dpop import (
    DPOP_ALGS,
    NONCE_HEADER,
    USE_NONCE,
    DPoPError,
    Proof,
    ProofChecker,
    only_proof,
)
from shared.errors import InsufficientScope, Unauthorized
from shared.last_used import UsageRecorder
from shared.scopes import SCOPES
from shared.tokens import InvalidToken, Principal, TokenVerifier

# Where `authenticate` keeps its answer (a Principal, or the 401 it raised) for the rest
# of the request: the idempotency middleware and the route's dependency share it.
_SCOPE_KEY = "koppel.principal"
DPOP_ALGS_PARAMETER = 'algs="' + " ".join(DPOP_ALGS) + '"'


def get_verifier(request: Request) -> TokenVerifier:
    """The app's verifier, made on first use from `app.state.runtime`."""
    state = request.app.state
    verifier = getattr(state, "token_verifier", None)
    if verifier is None:
        verifier = state.token_verifier = TokenVerifier.from_runtime(state.runtime)
    return verifier


def close_verifier(app: FastAPI) -> None:
    """Close the app's verifier, if one was made (call it when the runtime closes)."""
    app.state.usage_recorder = None  # it holds the runtime's Redis client
    verifier = getattr(app.state, "token_verifier", None)
    if verifier is not None:
        verifier.close()
        app.state.token_verifier = None


def get_proof_checker(request: Request) -> ProofChecker:
    """The app's DPoP proof checker, made on first use from `app.state.runtime`."""
    state = request.app.state
    checker = getattr(state, "dpop_checker", None)
    if checker is None:
        runtime = state.runtime
        checker = state.dpop_checker = ProofChecker.from_settings(
            runtime.settings, runtime.keyring.digest_key)
    return checker


def challenge(error: str | None = None, scheme: str = "bearer") -> str:
    """The WWW-Authenticate value of a 401: both schemes, the error on the one the
    request used, and the DPoP algorithms (RFC 9449 section 7.1)."""
    if scheme == "dpop":
        dpop = f'DPoP error="{error}", {DPOP_ALGS_PARAMETER}' if error else \
            f"DPoP {DPOP_ALGS_PARAMETER}"
        return f"Bearer, {dpop}"
    bearer = f'Bearer error="{error}"' if error else "Bearer"
    return f"{bearer}, DPoP {DPOP_ALGS_PARAMETER}"


def _challenge(detail: str, error: str | None = None, scheme: str = "bearer") -> Unauthorized:
    exc = Unauthorized(detail)
    exc.headers["WWW-Authenticate"] = challenge(error, scheme)
    return exc


class InvalidDPoPProof(Unauthorized):
    """A DPoP proof that is missing, invalid, replayed or of another key (RFC 9449)."""

    slug, title = "invalid-dpop-proof", "Invalid DPoP proof"


def access_token(request: Request) -> tuple[str, str]:
    """The scheme (`bearer` or `dpop`, case-insensitive) and the access token of the
    Authorization header; 401 if there is none."""
    if "access_token" in request.query_params:
        raise _challenge("send the access token in the Authorization header, not the URL",
                         "invalid_request")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme not in ("bearer", "dpop") or not token:
        raise _challenge("this call needs an access token (Bearer, or DPoP with a proof)")
    return scheme, token


def bearer_token(request: Request) -> str:
    """The access token of the Authorization header, whichever its scheme; 401 if none."""
    return access_token(request)[1]


def request_url(request: Request) -> str:
    """The URL the client called, as a DPoP proof names it: the service's configured
    public URL (never the Host header) and the path as sent."""
    base = request.app.state.public_url  # create_service_app sets it for every service
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1").partition("?")[0] if raw else request.url.path
    return base.rstrip("/") + path


# A resource server may reserve the proof's jti together with its own Redis work of the
# request, in one round trip: `app.state.dpop_reserve(request, principal, checker, proof)`
# must reserve `checker.jti_key(proof)` for `checker.jti_ttl` seconds (SET NX) and raise
# DPoPError if it was taken (sync: with its rate-limit counters, services/sync/ratelimits.py).
# It runs inside the one authentication step, so no route and no replay skips it.
DPoPReserve = Callable[[Request, Principal, ProofChecker, Proof], Awaitable[None]]


async def request_proof(request: Request, *, access_token: str | None = None,
                        principal: Principal | None = None) -> Proof | None:
    """The request's DPoP proof (RFC 9449 section 4.3), checked for its method and public
    URL (and, at a resource server, `access_token`'s hash and the key of the `principal`'s
    token), its jti reserved (by the app's `dpop_reserve` hook when it has one and the
    principal is known, else one SET NX); None if the request has no proof. DPoPError
    if it is not acceptable: every endpoint that takes a proof (token, PAR, userinfo,
    registry, sync) checks it here."""
    checker = get_proof_checker(request)
    proof = only_proof(request.headers.getlist("dpop"))
    if proof is None:
        return None
    checked = checker.check(proof, method=request.method, url=request_url(request),
                            access_token=access_token)
    if principal is not None and checked.jkt != principal.jkt:
        raise DPoPError("the DPoP proof is signed with another key than the token's")
    reserve = getattr(request.app.state, "dpop_reserve", None)
    if reserve is None or principal is None:
        await checker.reserve(request.app.state.runtime.redis, checked)
    else:
        await reserve(request, principal, checker, checked)
    return checked


def proof_error_headers(request: Request, error: DPoPError,
                        scheme: str | None = "dpop") -> dict[str, str]:
    """The headers of an answer refusing a proof: a 401's challenge (`scheme`; None for
    the token endpoint's 400) and, for `use_dpop_nonce`, the nonce to retry with."""
    headers = {"WWW-Authenticate": challenge(error.error, scheme)} if scheme else {}
    if error.error == USE_NONCE:
        headers[NONCE_HEADER] = get_proof_checker(request).nonce()
    return headers


async def _check_proof(request: Request, principal: Principal, token: str) -> None:
    try:
        checked = await request_proof(request, access_token=token, principal=principal)
        if checked is None:
            raise DPoPError("the DPoP scheme needs a DPoP proof header")
    except DPoPError as error:
        exc = InvalidDPoPProof(error.description)
        exc.headers.update(proof_error_headers(request, error))
        raise exc from None


async def _authenticate(request: Request) -> Principal:
    scheme, token = access_token(request)
    try:
        principal = await get_verifier(request).verify(token)
        if scheme == "bearer" and principal.jkt is not None:
            raise InvalidToken("this access token is DPoP-bound: send it with the DPoP "
                               "scheme and a proof")
        if scheme == "dpop" and principal.jkt is None:
            raise InvalidToken("this access token is not DPoP-bound: send it as Bearer")
    except InvalidToken as exc:
        exc.headers["WWW-Authenticate"] = challenge("invalid_token", scheme)
        raise
    if scheme == "dpop":
        await _check_proof(request, principal, token)
    return principal


async def authenticate(request: Request) -> Principal:
    """The verified caller of this request (token and, for DPoP, proof), worked out once
    per request; 401 (with its challenge) if it has none."""
    known = request.scope.get(_SCOPE_KEY)
    if isinstance(known, Principal):
        return known
    if isinstance(known, Unauthorized):
        raise known
    try:
        principal = await _authenticate(request)
    except Unauthorized as exc:
        request.scope[_SCOPE_KEY] = exc
        raise
    request.scope[_SCOPE_KEY] = principal
    return principal


def get_usage_recorder(request: Request) -> UsageRecorder:
    """The app's recorder of connection use, made on first use on the runtime's Redis."""
    state = request.app.state
    recorder = getattr(state, "usage_recorder", None)
    if recorder is None:
        runtime = state.runtime
        recorder = state.usage_recorder = UsageRecorder(
            runtime.redis, track_scopes=runtime.settings.scope_usage_tracking)
    return recorder


class _BearerPrincipal(HTTPBearer):
    """The verified caller as one dependency that also declares the bearer scheme in
    OpenAPI (each dependency costs a request several microseconds to resolve)."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        """The verified caller of this request; a connection's use is noted (at most one
        Redis round trip per connection and minute, never an error)."""
        caller = await authenticate(request)
        if caller.connection_id is not None:
            await get_usage_recorder(request).used(caller.connection_id)
        return caller


principal = _BearerPrincipal(auto_error=False, bearerFormat="JWT", scheme_name="HTTPBearer",
                             description="An access token (RFC 9068) from the auth service; "
                             "a DPoP-bound one as `Authorization: DPoP <token>` with a "
                             "`DPoP` proof header (RFC 9449)")
PrincipalDep = Annotated[Principal, Depends(principal)]


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency giving the caller if its token grants `scope`, else 403."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(caller: PrincipalDep) -> Principal:
        if not caller.has_scope(scope):
            raise InsufficientScope(scope)
        return caller

    dependency.__name__ = f"require_scope_{scope.replace('.', '_')}"
    return dependency
