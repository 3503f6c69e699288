"""The authorization server: Authlib's, built per request around a sync session."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlmodel import select

from services.auth.oauth2.client_auth import PrivateKeyJwt
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
from services.auth.oauth2.requests import ParsedRequest
from shared.models import App
from shared.scopes import SCOPES

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class Revocation(RevocationEndpoint):
    """RFC 7009. Revoking a token ends its token family, never the consent behind it."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(self.server.ctx, token_string, token_type_hint)

    def revoke_token(self, token: FoundToken, request) -> None:
        if token.family_id is not None:
            revoke_family(self.server.ctx, token.family_id)


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for the token's own client (and the SaaS's first-party apps)."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(self.server.ctx, token_string, token_type_hint)

    def check_permission(self, token: FoundToken, client: OAuthClient, request) -> bool:
        return token.client_id == client.client_id or client.app.first_party

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


class KoppelAuthorizationServer(AuthorizationServer):
    def __init__(self, ctx: AuthContext) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.ctx = ctx
        self._clients: dict[str, OAuthClient | None] = {}
        self.register_grant(CodeGrant, [RequiredS256(), IdTokens(ctx)])
        self.register_grant(RefreshGrant)
        self.register_grant(AppCredentialsGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(ctx))

    def query_client(self, client_id: str) -> OAuthClient | None:
        if client_id not in self._clients:
            app = self.ctx.session.exec(select(App).where(App.client_id == client_id)).first()
            self._clients[client_id] = (
                OAuthClient(app, self.ctx.keyring.digest_key) if app else None
            )
        return self._clients[client_id]

    def save_token(self, token: dict, request) -> None:
        """Nothing to do: access tokens are JWTs, refresh tokens were stored when issued."""

    def create_oauth2_request(self, request: ParsedRequest) -> ParsedRequest:
        return request

    def create_json_request(self, request: ParsedRequest) -> ParsedRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list) -> tuple[int, Any, list]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Koppel uses no Authlib signals."""
