"""The authorization server: Authlib's, configured once per process.

Its configuration (grants, endpoints, client authentication methods) is stateless, so
the token endpoint shares one instance; the request's `AuthContext` (session, clock,
status changes) is bound for the duration of one call (`serve`). The authorization
endpoint still builds one around its context, as the call spans several steps.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from functools import cache
from typing import Any, TypeVar

from authlib.oauth2.rfc6749 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidScopeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from services.auth.client_credentials import basic_credentials
from services.auth.oauth2.client_auth import PrivateKeyJwt
from services.auth.oauth2.client_errors import explain
from services.auth.oauth2.clients import OAuthClient
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.grants import (
    AppCredentialsGrant,
    CodeGrant,
    IdTokens,
    RefreshGrant,
    RequiredS256,
)
from services.auth.oauth2.issue import revoke_family
from services.auth.oauth2.lookup import FoundToken, find_token
from services.auth.oauth2.repository import APP_BY_CLIENT_ID, run
from services.auth.oauth2.requests import ParsedRequest
from shared.oauth import CLIENT_AUTH_METHODS, CONFIDENTIAL_CLIENT_AUTH_METHODS
from shared.policy.apps import may_introspect
from shared.scopes import SCOPES, parse_scope

T = TypeVar("T")
# The context of the call the shared server is serving (each worker thread runs its own
# copy of the context, so concurrent requests never see each other's).
_bound: ContextVar[AuthContext] = ContextVar("koppel_auth_context")


class Revocation(RevocationEndpoint):
    """RFC 7009. Revoking a token ends its token family, never the consent behind it."""

    CLIENT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(self.server.ctx, token_string, token_type_hint)

    def revoke_token(self, token: FoundToken, request) -> None:
        if token.family_id is not None:
            revoke_family(self.server.ctx, token.family_id)


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for the token's own client (and the platform's own backend): any other
    client learns only `active: false` (section 4)."""

    # Introspection tells about tokens: only an authenticated client may ask (RFC 7662
    # section 2.1), never a public one.
    CLIENT_AUTH_METHODS = list(CONFIDENTIAL_CLIENT_AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(self.server.ctx, token_string, token_type_hint)

    def check_permission(self, token: FoundToken, client: OAuthClient, request) -> bool:
        return may_introspect(client.app, client.client_id, token.client_id)

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        if not token.active:
            return {"active": False}
        return {"active": True, **token.claims}

    def authenticate_token(self, request, client):
        # An unknown or foreign token is simply inactive (RFC 7662 section 2.2).
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is not None and self.check_permission(token, client, request):
            return token
        return None

    def create_introspection_payload(self, token):
        if token is None:
            return {"active": False}
        return self.introspect_token(token)


def client_secret_basic(query_client, request) -> OAuthClient | None:
    """`client_secret_basic` with Koppel's one reading of the Basic header (Authlib's own
    raises on a header that is not UTF-8, and the limiter must count the same id)."""
    credentials = basic_credentials(request.headers.get("authorization", ""))
    if credentials is None or not credentials[1]:
        return None
    client = query_client(credentials[0])
    if client is None:
        raise InvalidClientError(status_code=401, description="unknown client")
    return client if client.check_client_secret(credentials[1]) else None


class KoppelAuthorizationServer(AuthorizationServer):
    def __init__(self, ctx: AuthContext | None = None) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self._ctx = ctx
        self.register_grant(CodeGrant, [RequiredS256(), IdTokens(self)])
        self.register_grant(RefreshGrant)
        self.register_grant(AppCredentialsGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_client_auth_method("client_secret_basic", client_secret_basic)
        self.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(self))

    def authenticate_client(self, request, methods, endpoint="token"):
        """Authlib's client authentication, with a failure said in words
        (client_errors.py)."""
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            raise explain(error, request, self.query_client) from None

    def validate_requested_scope(self, scope: str | None) -> None:
        """Refuse scopes Koppel does not know, naming them."""
        unknown = sorted(set(parse_scope(scope)) - set(self.scopes_supported or ()))
        if unknown:
            raise InvalidScopeError(description=f"unknown scope: {' '.join(unknown)}")

    @property
    def ctx(self) -> AuthContext:
        """The context given at construction, else the one bound to the current call."""
        return self._ctx if self._ctx is not None else _bound.get()

    # Authlib answers invalid_client to None; its stubs say a client always comes back.
    def query_client(self, client_id: str) -> OAuthClient | None:  # type: ignore[override]
        ctx = self.ctx
        if client_id not in ctx.clients:
            # The row as a plain (read-only) Core row: every reader only reads attributes,
            # and loading it as an ORM object costs a third more than the query itself.
            # Always the whole row: the client cache keeps it for every endpoint, and PAR
            # and the authorization endpoint show the app (name, publisher, links).
            app = run(ctx.connection(), APP_BY_CLIENT_ID, client_id=client_id).first()
            ctx.clients[client_id] = OAuthClient(app, ctx.keyring.digest_key) if app else None
        return ctx.clients[client_id]

    def save_token(self, token: dict, request) -> None:
        """Nothing to do: access tokens are JWTs, refresh tokens were stored when issued."""

    def create_oauth2_request(self, request: ParsedRequest) -> ParsedRequest:
        return request

    # Only Authlib's registration endpoints (not used here) ask for a JsonRequest.
    def create_json_request(self, request: ParsedRequest) -> ParsedRequest:  # type: ignore[override]
        return request

    # Authlib passes its header list of pairs; its stubs say a Mapping.
    def handle_response(self, status: int, body: Any, headers: list) -> tuple[int, Any, list]:  # type: ignore[override]
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Koppel uses no Authlib signals."""


@cache
def shared_server() -> KoppelAuthorizationServer:
    """The process's authorization server for single-call endpoints (token, revoke, ...)."""
    return KoppelAuthorizationServer()


def serve(ctx: AuthContext, call: Callable[[KoppelAuthorizationServer], T]) -> T:
    """Run `call` on the shared server with `ctx` bound to it."""
    token = _bound.set(ctx)
    try:
        return call(shared_server())
    finally:
        _bound.reset(token)
