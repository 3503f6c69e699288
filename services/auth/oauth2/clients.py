"""Koppel's apps as Authlib clients."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from sqlalchemy import Row

from shared.models import App, AppStatus
from shared.scopes import (
    APP_SCOPES,
    CLIENT_CREDENTIALS_SCOPES,
    CONSENT_SCOPES,
    FIRST_PARTY_SCOPES,
    implied,
    parse_scope,
)
from shared.vault import digest_matches

# What an app may ask for with the client credentials grant.
PARTNER_CLIENT_SCOPES = APP_SCOPES
FIRST_PARTY_CLIENT_SCOPES = CLIENT_CREDENTIALS_SCOPES


class OAuthClient(ClientMixin):
    """An `App` row with the checks Authlib asks a client to make.

    `app` is read only: an `App`, or a Core row of the `apps` table (same attributes)."""

    def __init__(self, app: App | Row, digest_key: bytes) -> None:
        self.app = app
        self._digest_key = digest_key

    @property
    def client_id(self) -> str:
        return self.app.client_id

    @property
    def active(self) -> bool:
        return self.app.status == AppStatus.ACTIVE

    @property
    def is_public(self) -> bool:
        return self.app.token_endpoint_auth_method == "none"

    def get_client_id(self) -> str:
        return self.app.client_id

    # Authlib answers invalid_request to None; its stubs say str.
    def get_default_redirect_uri(self) -> str | None:  # type: ignore[override]
        # Only an app with exactly one registered URI may leave it out of the request.
        uris = self.app.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def authorize_scopes(self) -> set[str]:
        """The scopes this app may request at the authorization endpoint: those it
        registered, and the read scope of each write scope it registered (docs/product.md
        section 4: a write scope implies its read scope, so asking for less is fine)."""
        allowed = CONSENT_SCOPES | (FIRST_PARTY_SCOPES if self.app.first_party else set())
        return implied(self.app.scopes) & allowed

    # Authlib passes the request's scope parameter (absent: None); its stubs say the scope
    # is always given.
    def get_allowed_scope(self, scope: str | None) -> str:  # type: ignore[override]
        requested = parse_scope(scope)
        if not requested:
            return " ".join(s for s in self.app.scopes if s in self.authorize_scopes())
        refused = [s for s in requested if s not in self.authorize_scopes()]
        if refused:
            raise InvalidScopeError(
                description=f"this app did not register these scopes: {' '.join(refused)}")
        return " ".join(requested)

    def client_credentials_scopes(self) -> frozenset[str] | set[str]:
        if self.app.first_party:
            return FIRST_PARTY_CLIENT_SCOPES
        return set(PARTNER_CLIENT_SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison: no normalisation of case, slashes or query.
        return redirect_uri in self.app.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return digest_matches(self._digest_key, client_secret, self.app.client_secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.app.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials":
            # Any confidential app may get its app-level scopes without registering it.
            return not self.is_public
        return grant_type in self.app.grant_types
