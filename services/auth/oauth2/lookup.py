"""Finding what a presented token is, for revocation and introspection.

Both are rare calls, so they ask the database (the authoritative source) directly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlmodel import col, select

from services.auth.oauth2.context import AuthContext
from shared.es256 import is_canonical
from shared.models import (
    App,
    AppStatus,
    Connection,
    RefreshToken,
    TokenFamily,
    User,
    is_live,
)
from shared.policy.resolve import app_by_client_id
from shared.signing import ACCESS_TOKEN_ALG, published_keys
from shared.vault import token_digest


@dataclass
class FoundToken:
    kind: str  # "access_token" or "refresh_token"
    client_id: str
    family_id: uuid.UUID | None
    claims: dict[str, Any] = field(default_factory=dict)
    active: bool = False

    def check_client(self, client) -> bool:
        return self.client_id == client.get_client_id()


def _family_live(ctx: AuthContext, family: TokenFamily | None) -> bool:
    if family is None or family.revoked_at is not None or family.expires_at <= ctx.now:
        return False
    user = ctx.session.get(User, family.user_id) if family.user_id else None
    if user is None or not user.active:
        return False
    if family.connection_id is not None:
        connection = ctx.session.get(Connection, family.connection_id)
        return connection is not None and is_live(connection.status, connection.expires_at,
                                                  ctx.now)
    return True


def find_refresh_token(ctx: AuthContext, token: str) -> FoundToken | None:
    digest = token_digest(ctx.keyring.digest_key, token)
    found = ctx.session.exec(
        select(RefreshToken, TokenFamily, App)
        .join(TokenFamily, col(TokenFamily.id) == RefreshToken.family_id)
        .join(App, col(App.id) == TokenFamily.app_id)
        .where(RefreshToken.token_digest == digest)
    ).first()
    if found is None:
        return None
    row, family, app = found
    active = (
        row.rotated_at is None and row.expires_at > ctx.now and app.status == AppStatus.ACTIVE
        and _family_live(ctx, family)
    )
    claims = {"client_id": app.client_id, "scope": " ".join(family.scopes),
              "exp": int(row.expires_at.timestamp()), "token_type": "refresh_token"}
    if family.dpop_jkt is not None:
        claims["cnf"] = {"jkt": family.dpop_jkt}  # bound to a public client's DPoP key
    if family.user_id:
        claims["sub"] = str(family.user_id)
    return FoundToken("refresh_token", app.client_id, family.id, claims, active)


def find_access_token(ctx: AuthContext, token: str) -> FoundToken | None:
    if not is_canonical(token.rpartition(".")[2]):
        return None  # not a spelling Koppel issues (shared/es256.py)
    keys = KeySet.import_key_set({"keys": [k.public_jwk for k in published_keys(ctx.session)]})
    try:
        decoded = jwt.decode(token, keys, algorithms=[ACCESS_TOKEN_ALG])
    except (JoseError, ValueError):
        return None
    claims = decoded.claims
    if decoded.header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
        return None
    if claims.get("iss") != ctx.settings.issuer or "client_id" not in claims:
        return None
    family_id = None
    jti = str(claims.get("jti", ""))
    if "." in jti:
        try:
            family_id = uuid.UUID(jti.split(".", 1)[0])
        except ValueError:
            return None
    active = int(claims.get("exp", 0)) > ctx.now.timestamp()
    app = ctx.session.exec(app_by_client_id(claims["client_id"])).first()
    active = active and app is not None and app.status == AppStatus.ACTIVE
    if family_id is not None:
        active = active and _family_live(ctx, ctx.session.get(TokenFamily, family_id))
    # A DPoP-bound token says so, and shows its key's thumbprint (`cnf`, RFC 9449 6.2).
    token_type = "DPoP" if "cnf" in claims else "Bearer"
    return FoundToken("access_token", claims["client_id"], family_id,
                      {**claims, "token_type": token_type}, active)


def find_token(ctx: AuthContext, token: str, hint: str | None) -> FoundToken | None:
    """The token, tried as the hinted type first (RFC 7009 and 7662 allow either)."""
    finders = [find_refresh_token, find_access_token]
    if hint == "access_token":
        finders.reverse()
    for finder in finders:
        found = finder(ctx, token)
        if found is not None:
            return found
    return None


def token_user(ctx: AuthContext, found: FoundToken) -> User | None:
    """The user a found token's `sub` names, if it is one."""
    try:
        return ctx.session.get(User, uuid.UUID(found.claims["sub"]))
    except (KeyError, ValueError):
        return None
