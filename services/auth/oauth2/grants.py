"""Koppel's grants: Authlib's grant classes with only their storage hooks overridden.

Codes and refresh tokens are spent by compare-and-swap updates, so of two requests that
race with one credential exactly one wins, on PostgreSQL and on SQLite alike.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Literal, cast

from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.grants.util import is_openid_scope

from services.auth.oauth2.clients import OAuthClient
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.dpop import JKT_PARAMETER, check_binding, proved_key
from services.auth.oauth2.issue import (
    gets_refresh_token,
    issue_tokens,
    new_family,
    refresh_token_row,
    revoke_family,
)
from services.auth.oauth2.repository import (
    CODE_LOOKUP,
    EXTEND_REFRESH,
    REFRESH_LOOKUP,
    ROTATE_AND_INSERT_REFRESH,
    ROTATE_REFRESH,
    SPEND_CODE,
    ConnectionRow,
    FamilyRow,
    UserRow,
    connection_of,
    family_of,
    run,
    user_of,
)
from services.auth.oauth2.requests import ParsedRequest
from shared.models import (
    AuthorizationCode,
    User,
    is_expired,
    is_live,
)
from shared.oauth import (
    CLIENT_AUTH_METHODS,
    CONFIDENTIAL_CLIENT_AUTH_METHODS,
    FAPI_MAX_CODE_TTL_S,
    is_fapi,
)
from shared.policy.apps import admits_user
from shared.scopes import DATA_SCOPES, implied, parse_scope
from shared.signing import ID_TOKEN_ALG
from shared.unit_of_work import unit_of_work
from shared.vault import TokenKind, new_token, token_digest

# Two refreshes with one token within this many seconds are one client racing itself:
# the loser gets invalid_grant and the family lives on. A later reuse revokes the family.
REFRESH_RACE_GRACE = timedelta(seconds=2)


class CodeRecord(AuthorizationCodeMixin):
    """A spent code, read with its family, user and connection in one statement."""

    def __init__(self, row) -> None:
        self.row = row
        self.family = family_of(row)
        self.user = user_of(row)
        self.connection = connection_of(row)
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    # Authlib checks the redirect URI only when one was stored; its stubs say str.
    def get_redirect_uri(self) -> str | None:  # type: ignore[override]
        return self.row.redirect_uri or None

    def get_scope(self) -> str:
        return " ".join(self.row.scopes)

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


def _live(connection: ConnectionRow | None, now: datetime
          ) -> ConnectionRow | Literal[False] | None:
    """The connection if it is live at `now` (active, not past its expiry); None when
    there is none; False when it is not."""
    if connection is None:
        return None
    return connection if is_live(connection.status, connection.expires_at, now) else False


def _expired(connection: ConnectionRow, now: datetime) -> bool:
    """Whether the connection is not live because its consent ran out (the worker's job
    may not have turned it `expired` yet); a suspension or revocation takes precedence."""
    return is_expired(connection.status, connection.expires_at, now)


def _admitted(user: UserRow | None, client) -> UserRow | None:
    """The user if active and one the client may hold tokens for: a first-party app
    bound to an environment never gets a token for another environment's user (its
    logins already refuse them; this holds even if a code or family says otherwise)."""
    if user is None or not user.active or not admits_user(client.app, user.environment_id):
        return None
    return user


class _KoppelGrant:
    server: object
    request: OAuth2Request

    @property
    def ctx(self) -> AuthContext:
        return self.server.ctx  # type: ignore[attr-defined]

    @property
    def client(self) -> OAuthClient:
        """The client Authlib authenticated before it called any storage hook."""
        return cast(OAuthClient, self.request.client)


class CodeGrant(_KoppelGrant, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)
    request: ParsedRequest

    def generate_authorization_code(self) -> str:
        return new_token(TokenKind.AUTHORIZATION_CODE)

    def save_authorization_code(self, code: str, request) -> None:
        ctx = self.ctx
        connection = request.koppel.get("connection")
        scopes = request.koppel.get("scopes") or parse_scope(request.scope)
        family = new_family(ctx, request.client, request.user, connection, scopes)
        ttl = ctx.settings.authorization_code_ttl
        if is_fapi(request.client.app):
            ttl = min(ttl, FAPI_MAX_CODE_TTL_S)  # FAPI 2.0 section 5.3.2.1
        ctx.session.add(
            AuthorizationCode(
                code_digest=token_digest(ctx.keyring.digest_key, code),
                app_id=request.client.app.id,
                user_id=request.user.id,
                connection_id=connection.id if connection else None,
                family_id=family.id,
                redirect_uri=request.payload.redirect_uri or "",
                scopes=scopes,
                code_challenge=request.payload.data["code_challenge"],
                code_challenge_method="S256",
                nonce=request.payload.data.get("nonce"),
                dpop_jkt=request.payload.data.get(JKT_PARAMETER),
                auth_time=request.koppel["auth_time"],
                expires_at=ctx.now + timedelta(seconds=ttl),
            )
        )

    def query_authorization_code(self, code: str, client) -> CodeRecord | None:
        ctx = self.ctx
        conn = ctx.connection()
        # One round trip reads the code with its family, user and connection.
        row = run(conn, CODE_LOOKUP, digest=token_digest(ctx.keyring.digest_key, code),
                  app_id=client.app.id).first()
        if row is None or row.expires_at <= ctx.now:
            return None
        # Before the code is spent: a thief without the key leaves it to its owner.
        check_binding(row.dpop_jkt, proved_key(self.request, client), "code")
        spent = run(conn, SPEND_CODE, code_id=row.id, now=ctx.now)
        if spent.rowcount != 1:
            # A second redemption: whatever the first one got stops working.
            revoke_family(ctx, row.family_id)
            return None
        return CodeRecord(row)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        """Nothing to do: the code was spent when it was looked up."""

    def authenticate_user(self, authorization_code: CodeRecord) -> UserRow | None:
        client = self.client
        if not client.active or _live(authorization_code.connection, self.ctx.now) is False:
            return None
        if authorization_code.family.revoked_at is not None:
            return None  # e.g. the user's password changed after the code was issued
        return _admitted(authorization_code.user, client)

    def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None,
                       include_refresh_token=True):
        # Authlib stored the code it validated (query_authorization_code's answer).
        record = cast(CodeRecord, self.request.authorization_code)
        return issue_tokens(self.ctx, self.client, user, parse_scope(scope),
                            record.family, _live(record.connection, self.ctx.now) or None,
                            jkt=self.request.koppel.get(JKT_PARAMETER))


class RefreshRecord:
    def __init__(self, family: FamilyRow, user: UserRow, connection: ConnectionRow | None,
                 *, rotate: bool = True, stored: str | None = None) -> None:
        self.family = family
        self.user = user
        self.connection = connection
        self.rotate = rotate  # False: the token stays valid and no new one is issued
        self.stored = stored  # the new refresh token, stored with the rotation

    def check_client(self, client) -> bool:
        return self.family.app_id == client.app.id

    def get_scope(self) -> str:
        return " ".join(self.family.scopes)


class RefreshGrant(_KoppelGrant, grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)
    request: ParsedRequest
    INCLUDE_NEW_REFRESH_TOKEN = True

    # Every refusal says why (invalid_grant with a description). Authlib only calls
    # check_client and get_scope on the record; its stubs want a TokenMixin.
    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord:  # type: ignore[override]
        ctx, client = self.ctx, self.client
        conn = ctx.connection()
        # One round trip for the token, its family, and the family's user and connection.
        row = run(conn, REFRESH_LOOKUP,
                  digest=token_digest(ctx.keyring.digest_key, refresh_token)).first()
        if row is None:
            raise InvalidGrantError("unknown refresh token")
        family = family_of(row)
        if family.app_id != client.app.id:
            raise InvalidGrantError("this refresh token was not issued to this client")
        if family.revoked_at is not None:
            raise InvalidGrantError("this refresh token was revoked")
        # A bound refresh token is of no use without its key (not even to get its
        # family revoked by presenting it again).
        check_binding(family.dpop_jkt, proved_key(self.request, client), "refresh token")
        if row.rotated_at is not None:
            if ctx.now - row.rotated_at > REFRESH_RACE_GRACE:
                revoke_family(ctx, family.id)  # an old refresh token came back: stolen
                raise InvalidGrantError("this refresh token was used before: every token "
                                        "of its grant is revoked now")
            raise InvalidGrantError("this refresh token was just used by another request")
        if row.expires_at <= ctx.now or family.expires_at <= ctx.now:
            raise InvalidGrantError("this refresh token expired")
        requested = parse_scope(self.request.payload.scope)
        if not set(requested) <= implied(family.scopes):  # narrower is fine, wider is not
            raise InvalidScopeError("a refresh cannot widen the granted scope")
        user = _admitted(user_of(row), client)
        row_connection = connection_of(row)
        connection = _live(row_connection, ctx.now)
        if user is None:
            raise InvalidGrantError("the user of this grant can no longer sign in")
        if connection is False:
            if row_connection is not None and _expired(row_connection, ctx.now):
                raise InvalidGrantError("the connection of this grant expired; the user "
                                        "may renew it")
            raise InvalidGrantError("the connection of this grant is suspended or revoked")
        if not client.active:
            raise InvalidGrantError("this client is suspended")
        if is_fapi(client.app):
            # FAPI 2.0 section 5.3.2.1: no rotation. The token stays the same (only a
            # client holding its private key can use it); each use moves its idle end.
            idle_end = min(ctx.now + timedelta(seconds=ctx.settings.refresh_token_idle_ttl),
                           family.expires_at)
            run(conn, EXTEND_REFRESH, token_id=row.id, idle_end=idle_end)
            return RefreshRecord(family, user, connection or None, rotate=False)
        stored = None
        if conn.dialect.name == "postgresql" and gets_refresh_token(client, family, []):
            # The rotation and the new token in one statement (one round trip less).
            stored, new_row = refresh_token_row(ctx, family)  # id, digest, created, expires
            won = run(conn, ROTATE_AND_INSERT_REFRESH, token_id=row.id, now=ctx.now,
                      **{f"new_{name}": value for name, value in new_row.items()}
                      ).first() is not None
        else:
            won = run(conn, ROTATE_REFRESH, token_id=row.id, now=ctx.now).rowcount == 1
        if not won:
            # Another request with this token won the race.
            raise InvalidGrantError("this refresh token was just used by another request")
        return RefreshRecord(family, user, connection or None, stored=stored)

    def _validate_token_scope(self, token: RefreshRecord) -> None:
        """Done in authenticate_refresh_token, before the token is rotated: a write scope
        of the grant covers its read scope there (Authlib's check takes names literally)."""

    def authenticate_user(self, refresh_token: RefreshRecord) -> UserRow:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: object) -> None:
        """Nothing to do: the token was rotated when it was looked up."""

    def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None,
                       include_refresh_token=True):
        # Authlib stored the token it validated (authenticate_refresh_token's answer).
        record = cast(RefreshRecord, self.request.refresh_token)
        if record.connection is not None:
            unit_of_work(self.ctx.session).record_use(record.connection.id)
        scopes = parse_scope(scope)
        if record.connection is not None and record.connection.scopes is not None:
            # A narrowing dropped data scopes from the consent: the family still names
            # them, the new token does not.
            granted = implied(record.connection.scopes)
            scopes = [s for s in scopes if s not in DATA_SCOPES or s in granted]
        return issue_tokens(self.ctx, self.client, user, scopes,
                            record.family, record.connection, new_refresh_token=record.rotate,
                            jkt=self.request.koppel.get(JKT_PARAMETER),
                            stored_refresh_token=record.stored)


class AppCredentialsGrant(_KoppelGrant, grants.ClientCredentialsGrant):
    """Client credentials for app-level scopes (`webhooks.manage`), never user data."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(CONFIDENTIAL_CLIENT_AUTH_METHODS)
    request: ParsedRequest

    def validate_token_request(self) -> None:
        client = cast(OAuthClient, self.authenticate_token_endpoint_client())
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("this client may not use client_credentials")
        if not client.active:
            raise UnauthorizedClientError("this app is suspended")
        allowed = client.client_credentials_scopes()
        requested = parse_scope(self.request.payload.scope) or sorted(allowed & {"webhooks.manage"})
        if not set(requested) <= allowed:
            raise InvalidScopeError("client credentials give app-level scopes only")
        proved_key(self.request, client)
        self.request.client = client
        self.request.koppel["scopes"] = requested

    def create_token_response(self):
        token = issue_tokens(self.ctx, self.client, None, self.request.koppel["scopes"],
                             jkt=self.request.koppel.get(JKT_PARAMETER))
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RequiredS256(CodeChallenge):
    """PKCE with S256 for every client, confidential ones too; `plain` is refused."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result) -> None:
        code = grant.request.authorization_code
        if not grant.request.form.get("code_verifier") or not code.row.code_challenge:
            raise InvalidGrantError("code_verifier missing or not expected")
        try:
            super().validate_code_verifier(grant, result)
        except InvalidRequestError as exc:
            raise InvalidGrantError(exc.description) from None


class IdTokens(OpenIDCode):
    """OpenID Connect ID tokens (RS256, or ES256 for a client that registered it) for code
    exchanges that include `openid`."""

    def __init__(self, server) -> None:
        super().__init__(require_nonce=False)
        self._server = server

    @property
    def ctx(self) -> AuthContext:
        return self._server.ctx

    def __call__(self, grant) -> None:
        # Koppel handles prompt itself; only the token hook and nonce checks are needed.
        grant.register_hook("after_create_token_response", self.process_token)
        if is_openid_scope(grant.request.payload.scope):
            grant.register_hook(
                "after_validate_authorization_request_payload",
                self.validate_openid_authorization_request,
            )

    def exists_nonce(self, nonce: str, request) -> bool:
        return False

    def get_client_algorithm(self, client) -> str:
        """RS256, or what the client registered (`id_token_signed_response_alg`)."""
        return client.app.id_token_signed_response_alg or ID_TOKEN_ALG

    def resolve_client_private_key(self, client):
        alg = self.get_client_algorithm(client)
        return self.ctx.signer.private_key(self.ctx.session, alg)[1]

    def get_encode_header(self, client) -> dict[str, str]:
        alg = self.get_client_algorithm(client)
        kid, _ = self.ctx.signer.private_key(self.ctx.session, alg)
        return {"alg": alg, "kid": kid, "typ": "JWT"}

    def get_compatible_claims(self, request) -> dict:
        now = int(time.time())
        return {
            "iss": self.ctx.settings.issuer,
            "aud": request.client.get_client_id(),
            "iat": now,
            "exp": now + self.ctx.settings.id_token_ttl,
        }

    # Authlib only merges these claims into the ID token; its stubs want a UserInfo.
    def generate_user_info(self, user: User, scope: str) -> dict[str, str]:  # type: ignore[override]
        scopes = set(parse_scope(scope))
        info = {"sub": str(user.id)}
        if "profile" in scopes:
            info["name"] = user.name
        if "email" in scopes:
            info["email"] = user.email
        return info
