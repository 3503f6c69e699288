"""Talking to Koppel: linking (authorization code with PKCE, through Authlib's client),
refreshing, and calling the data API with a connection's token.

Everything about the server comes from its discovery document. The connection id that
identifies a link is the token response's `grant_id` (OpenID Grant Management).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session

from examples.partner_app.settings import Settings
from examples.partner_app.store import Store

TIMEOUT_S = 15


class LinkFailed(Exception):
    """The user denied, the callback did not match a request of ours, or the exchange
    failed; the message says which."""


class ConnectionGone(Exception):
    """Koppel no longer accepts this connection's tokens (revoked, or the refresh failed)."""


class Koppel:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        metadata = requests.get(f"{settings.issuer}/.well-known/openid-configuration",
                                timeout=TIMEOUT_S)
        metadata.raise_for_status()
        self.metadata: dict[str, Any] = metadata.json()
        if self.metadata["issuer"] != settings.issuer:
            raise RuntimeError("the discovery document names another issuer")
        self._pending: dict[str, str] = {}  # state -> PKCE verifier, until the callback
        self._lock = threading.Lock()

    def _oauth(self, **fields: Any) -> OAuth2Session:
        return OAuth2Session(
            self.settings.client_id, self.settings.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            token_endpoint=self.metadata["token_endpoint"], **fields)

    # Linking.
    def start_link(self) -> str:
        """The URL to send the user's browser to."""
        verifier = secrets.token_urlsafe(48)
        oauth = self._oauth(scope=self.settings.scope, redirect_uri=self.settings.redirect_uri,
                            code_challenge_method="S256")
        url, state = oauth.create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=verifier)
        with self._lock:
            self._pending[state] = verifier
        return str(url)

    def finish_link(self, callback_url: str) -> str:
        """Exchange the code the browser brought back; returns the connection id."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
        with self._lock:
            verifier = self._pending.pop(query.get("state", ""), None)
        if verifier is None:
            raise LinkFailed("this callback does not answer a link we started")
        if query.get("iss") != self.settings.issuer:  # RFC 9207: mix-up defence
            raise LinkFailed("the callback comes from another issuer")
        if "error" in query:
            raise LinkFailed(f"{query['error']}: {query.get('error_description', '')}")
        oauth = self._oauth(redirect_uri=self.settings.redirect_uri, state=query["state"])
        token = dict(oauth.fetch_token(authorization_response=callback_url,
                                       code_verifier=verifier, timeout=TIMEOUT_S))
        connection_id = str(token["grant_id"])
        self.store.save_token(connection_id, token)
        return connection_id

    # The data API, as one connection.
    def get(self, connection_id: str, path: str, **params: Any) -> dict[str, Any]:
        token = self.store.token(connection_id)
        if token is None:
            raise ConnectionGone(connection_id)

        def keep(new: dict[str, Any], refresh_token: str | None = None,
                 access_token: str | None = None) -> None:
            self.store.save_token(connection_id, dict(new))

        oauth = self._oauth(token=token, update_token=keep)
        try:
            response = oauth.get(f"{self.settings.api_url}{path}", params=params,
                                 timeout=TIMEOUT_S)
        except Exception as error:  # the refresh failed: invalid_grant and the like
            if "invalid_grant" in str(error):
                raise ConnectionGone(connection_id) from error
            raise
        if response.status_code == 401:
            raise ConnectionGone(connection_id)
        response.raise_for_status()
        return dict(response.json())

    # The app itself (client credentials), for its webhook endpoint.
    def app_session(self, scope: str) -> OAuth2Session:
        oauth = self._oauth(scope=scope)
        oauth.fetch_token(grant_type="client_credentials", timeout=TIMEOUT_S)
        return oauth
