"""Issuing tokens: RFC 9068 JWT access tokens and rotating opaque refresh tokens.

A token family holds everything that descends from one authorization. The access
token's `jti` starts with the family id, so resource servers can refuse the access
tokens of a revoked family without any claim beyond those of docs/product.md 5.3.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import col, update

from services.auth.oauth2.clients import OAuthClient
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.repository import (
    BIND_FAMILY,
    INSERT_REFRESH,
    ConnectionRow,
    FamilyRow,
    run,
)
from shared.db.types import uuid7
from shared.models import Connection, TokenFamily, User
from shared.signing import ACCESS_TOKEN_ALG
from shared.status import Subject
from shared.unit_of_work import unit_of_work
from shared.vault import TokenKind, new_token, token_digest


def new_family(
    ctx: AuthContext, client: OAuthClient, user: User, connection: Connection | None,
    scopes: list[str],
) -> TokenFamily:
    family = TokenFamily(
        app_id=client.app.id,
        user_id=user.id,
        connection_id=connection.id if connection else None,
        environment_id=user.environment_id,
        scopes=scopes,
        expires_at=ctx.now + timedelta(seconds=ctx.settings.refresh_token_absolute_ttl),
    )
    ctx.session.add(family)
    ctx.session.flush()
    return family


def revoke_family(ctx: AuthContext, family_id: uuid.UUID) -> None:
    """Revoke every token of the family (not the consent behind it)."""
    ctx.session.exec(
        update(TokenFamily)
        .where(col(TokenFamily.id) == family_id, col(TokenFamily.revoked_at).is_(None))
        .values(revoked_at=ctx.now)
    )
    unit_of_work(ctx.session).publish_status(Subject.FAMILY, family_id, False)


def _access_claims(
    ctx: AuthContext, client: OAuthClient, user: User | None, scopes: list[str],
    family: TokenFamily | FamilyRow | None, connection: Connection | ConnectionRow | None,
) -> dict[str, Any]:
    now = int(ctx.now.timestamp())
    random_part = secrets.token_urlsafe(12)
    claims: dict[str, Any] = {
        "iss": ctx.settings.issuer,
        "sub": str(user.id) if user else client.client_id,
        "aud": ctx.settings.api_audience,
        "client_id": client.client_id,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ctx.settings.access_token_ttl,
        "jti": f"{family.id}.{random_part}" if family else random_part,
    }
    if user is not None:
        claims["environment_id"] = str(user.environment_id)
    if connection is not None:
        claims["connection_id"] = str(connection.id)
        claims["debtor_id"] = str(connection.debtor_id)
    return claims


def refresh_token_row(ctx: AuthContext, family: TokenFamily | FamilyRow
                      ) -> tuple[str, dict[str, Any]]:
    """A new refresh token of the family, and its row (without the family id)."""
    token = new_token(TokenKind.REFRESH_TOKEN)
    idle_end = ctx.now + timedelta(seconds=ctx.settings.refresh_token_idle_ttl)
    return token, {"id": uuid7(), "token_digest": token_digest(ctx.keyring.digest_key, token),
                   "created_at": ctx.now, "expires_at": min(idle_end, family.expires_at)}


def _new_refresh_token(ctx: AuthContext, family: TokenFamily | FamilyRow) -> str:
    token, row = refresh_token_row(ctx, family)
    # A plain INSERT: nothing reads the row back in this request, so the ORM's unit of
    # work (tracking, flush ordering) would only cost time.
    run(ctx.connection(), INSERT_REFRESH, family_id=family.id, **row)
    return token


def gets_refresh_token(client: OAuthClient, family: TokenFamily | FamilyRow | None,
                       scopes: list[str]) -> bool:
    """Whether a token response of this family carries a refresh token: the grant has
    `offline_access` and the client may use refresh tokens."""
    # The refresh token follows the grant, not a narrower scope asked on refresh (RFC 6749
    # section 6), or a narrowed refresh would spend the old one and leave the app none.
    granted = family.scopes if family is not None else scopes
    return (family is not None and "offline_access" in granted
            and "refresh_token" in client.app.grant_types)


def issue_tokens(
    ctx: AuthContext, client: OAuthClient, user: User | None, scopes: list[str],
    family: TokenFamily | FamilyRow | None = None,
    connection: Connection | ConnectionRow | None = None, *, new_refresh_token: bool = True,
    jkt: str | None = None, stored_refresh_token: str | None = None,
) -> dict[str, Any]:
    """The token response: an access token, and a refresh token with `offline_access`
    (none with `new_refresh_token=False`: the client keeps the one it has;
    `stored_refresh_token`: the new one, stored already with the rotation). With `jkt`
    (the request's DPoP proof, RFC 9449) the access token is DPoP-bound to that key
    (`cnf.jkt`), and so is a public client's refresh token (section 5)."""
    claims = _access_claims(ctx, client, user, scopes, family, connection)
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    response: dict[str, Any] = {
        "access_token": ctx.signer.sign(ctx.session, claims, alg=ACCESS_TOKEN_ALG, typ="at+jwt"),
        "token_type": "DPoP" if jkt is not None else "Bearer",
        "expires_in": ctx.settings.access_token_ttl,
        "scope": claims["scope"],
    }
    if family is not None and gets_refresh_token(client, family, scopes):
        if stored_refresh_token is not None:
            response["refresh_token"] = stored_refresh_token
        elif new_refresh_token:
            response["refresh_token"] = _new_refresh_token(ctx, family)
        if jkt is not None and client.is_public and getattr(family, "dpop_jkt", None) is None:
            # A confidential client's refresh tokens stay unbound: it authenticates.
            run(ctx.connection(), BIND_FAMILY, family_id=family.id, jkt=jkt)
    if connection is not None:
        # Grant Management for OAuth 2.0: the grant is the connection.
        response["grant_id"] = str(connection.id)
    return response
