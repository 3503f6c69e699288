"""Talking to Koppel: linking (authorization code with PKCE, pushed first with PAR),
tokens bound to the app's key with DPoP, refreshing, and calls to the data API as one
connection.

Authlib's OAuth client does the OAuth parts (authorization URL, code exchange, refresh,
client authentication); `requests` makes the API calls, each with a fresh DPoP proof.
Everything about the server comes from its discovery document. The connection id that
identifies a link is the token response's `grant_id` (OpenID Grant Management).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from examples.partner_app.dpop import DPoPKey
from examples.partner_app.settings import Settings
from examples.partner_app.store import Store

TIMEOUT_S = 15
REFRESH_LEEWAY_S = 30  # refresh a little before the access token expires


class LinkFailed(Exception):
    """The user denied, the callback did not match a request of ours, or the exchange
    failed; the message says which."""


class ConnectionGone(Exception):
    """Koppel no longer accepts this connection's tokens (revoked, expired, or the
    refresh failed)."""


class Koppel:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.dpop = DPoPKey(store)
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
            token_endpoint_auth_method="client_secret_basic", **fields)

    def _token_request(self, call: Any, **fields: Any) -> dict[str, Any]:
        """A token endpoint request with a DPoP proof: the tokens come back bound."""
        url = self.metadata["token_endpoint"]
        proof = self.dpop.proof("POST", url)
        return dict(call(url, headers={"DPoP": proof}, timeout=TIMEOUT_S, **fields))

    # Linking.
    def start_link(self) -> str:
        """Push the authorization request (PAR, RFC 9126) and return the URL to send the
        user's browser to: it carries only our client id and the pushed request's URI."""
        verifier = secrets.token_urlsafe(48)
        oauth = self._oauth(scope=self.settings.scope, redirect_uri=self.settings.redirect_uri,
                            code_challenge_method="S256")
        url, state = oauth.create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=verifier)
        parameters = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        parameters["dpop_jkt"] = self.dpop.thumbprint  # the code is bound to our key too
        pushed = requests.post(
            self.metadata["pushed_authorization_request_endpoint"], data=parameters,
            auth=(self.settings.client_id, self.settings.client_secret), timeout=TIMEOUT_S)
        pushed.raise_for_status()
        with self._lock:
            self._pending[state] = verifier
        query = urlencode({"client_id": self.settings.client_id,
                           "request_uri": pushed.json()["request_uri"]})
        return f"{self.metadata['authorization_endpoint']}?{query}"

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
        token = self._token_request(oauth.fetch_token, authorization_response=callback_url,
                                    code_verifier=verifier)
        connection_id = str(token["grant_id"])
        self.store.save_token(connection_id, token)
        return connection_id

    # The data API, as one connection.
    def _access_token(self, connection_id: str) -> str:
        token = self.store.token(connection_id)
        if token is None:
            raise ConnectionGone(connection_id)
        if token.get("expires_at", 0) < time.time() + REFRESH_LEEWAY_S:
            try:
                token = self._token_request(self._oauth().refresh_token,
                                            refresh_token=token["refresh_token"])
            except OAuthError as error:  # invalid_grant: the link ended
                raise ConnectionGone(connection_id) from error
            self.store.save_token(connection_id, token)
        return str(token["access_token"])

    def get(self, connection_id: str, path: str, **params: Any) -> dict[str, Any]:
        access_token = self._access_token(connection_id)
        url = f"{self.settings.api_url}{path}"
        response = requests.get(url, params=params, timeout=TIMEOUT_S, headers={
            "Authorization": f"DPoP {access_token}",
            "DPoP": self.dpop.proof("GET", url, access_token)})
        if response.status_code == 401:
            raise ConnectionGone(connection_id)
        response.raise_for_status()
        return dict(response.json())

    # The app itself (client credentials), for its webhook endpoint.
    def app_session(self, scope: str) -> OAuth2Session:
        oauth = self._oauth(scope=scope)
        oauth.fetch_token(self.metadata["token_endpoint"], grant_type="client_credentials",
                          timeout=TIMEOUT_S)
        return oauth
