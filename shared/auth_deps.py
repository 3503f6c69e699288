"""FastAPI dependencies that turn `Authorization: Bearer ...` into a Principal.

    CompanyReader = Annotated[Principal, Depends(require_scope("company.info.read"))]

    @router.get("/v1/companies")
    async def list_companies(caller: CompanyReader): ...

Tokens are accepted in the Authorization header only (RFC 6750 2.1), never in the
query string, where they would end up in logs.

The caller is one `async def` dependency: FastAPI runs a plain `def` dependency in the
thread pool, and resolves each dependency of a request's tree anew, both of which cost
more than the work of parsing the header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPBearer

from shared.errors import InsufficientScope, Unauthorized
from shared.last_used import UsageRecorder
from shared.scopes import SCOPES
from shared.tokens import Principal, TokenVerifier


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


def _challenge(detail: str, error: str | None = None) -> Unauthorized:
    exc = Unauthorized(detail)
    exc.headers["WWW-Authenticate"] = f'Bearer error="{error}"' if error else "Bearer"
    return exc


def bearer_token(request: Request) -> str:
    """The bearer token of the Authorization header (scheme case-insensitive); 401 if
    there is none."""
    if "access_token" in request.query_params:
        raise _challenge("send the access token in the Authorization header, not the URL",
                         "invalid_request")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _challenge("this call needs a bearer access token")
    return token


def get_usage_recorder(request: Request) -> UsageRecorder:
    """The app's recorder of connection use, made on first use on the runtime's Redis."""
    state = request.app.state
    recorder = getattr(state, "usage_recorder", None)
    if recorder is None:
        recorder = state.usage_recorder = UsageRecorder(state.runtime.redis)
    return recorder


class _BearerPrincipal(HTTPBearer):
    """The verified caller as one dependency that also declares the bearer scheme in
    OpenAPI (each dependency costs a request several microseconds to resolve)."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        """The verified caller of this request; a connection's use is noted (at most one
        Redis round trip per connection and minute, never an error)."""
        caller = await get_verifier(request).verify(bearer_token(request))
        if caller.connection_id is not None:
            await get_usage_recorder(request).used(caller.connection_id)
        return caller


principal = _BearerPrincipal(auto_error=False, bearerFormat="JWT", scheme_name="HTTPBearer",
                             description="An access token (RFC 9068) from the auth service")
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
