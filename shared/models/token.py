from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, json_field, timestamp_field


class TokenFamily(SQLModel, table=True):
    """The tokens that descend from one authorization; reuse of a spent token revokes it."""

    __tablename__ = "token_families"

    id: uuid.UUID = id_field()
    app_id: uuid.UUID = Field(foreign_key="apps.id", index=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", index=True)
    connection_id: uuid.UUID | None = Field(default=None, foreign_key="connections.id", index=True)
    environment_id: uuid.UUID | None = Field(default=None, foreign_key="environments.id")
    scopes: list[str] = json_field()
    created_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field(now=False)
    revoked_at: datetime | None = timestamp_field(nullable=True, now=False)
    # RFC 9449: the JWK SHA-256 thumbprint a public client's refresh tokens are bound to.
    dpop_jkt: str | None = Field(default=None, max_length=43)


class AuthorizationCode(SQLModel, table=True):
    """An authorization code, stored only as its keyed digest; single use."""

    __tablename__ = "authorization_codes"

    id: uuid.UUID = id_field()
    code_digest: str = Field(max_length=64, unique=True)
    app_id: uuid.UUID = Field(foreign_key="apps.id")
    user_id: uuid.UUID = Field(foreign_key="users.id")
    connection_id: uuid.UUID | None = Field(default=None, foreign_key="connections.id")
    family_id: uuid.UUID = Field(foreign_key="token_families.id")
    redirect_uri: str = Field(max_length=2000)
    scopes: list[str] = json_field()
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(default="S256", max_length=10)
    nonce: str | None = Field(default=None, max_length=500)
    # RFC 9449 section 10: the `dpop_jkt` of the authorization request; the exchange
    # must come with a DPoP proof of that key.
    dpop_jkt: str | None = Field(default=None, max_length=43)
    auth_time: datetime = timestamp_field()
    created_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field(now=False, index=True)
    # Set by a compare-and-swap on redemption; a second redemption finds it set.
    consumed_at: datetime | None = timestamp_field(nullable=True, now=False)


class RefreshToken(SQLModel, table=True):
    """A refresh token, stored only as its keyed digest; rotates on every use."""

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = id_field()
    token_digest: str = Field(max_length=64, unique=True)
    family_id: uuid.UUID = Field(foreign_key="token_families.id", index=True)
    created_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field(now=False, index=True)
    # Set by a compare-and-swap when rotated; a later use of this token is a reuse.
    rotated_at: datetime | None = timestamp_field(nullable=True, now=False)
