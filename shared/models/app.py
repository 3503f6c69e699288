from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, String
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, json_field, timestamp_field


class AppStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


# Where an app's first-party rights reach (shared/policy/apps.py asks these columns):
# a first-party app is bound to one environment (a tenant's own frontend or
# integration) or platform-wide (the SaaS's own backend, made by an operator); one
# that is neither stays suspended until an operator decides. A third-party app has
# neither: its reach comes from its connections.
REACH_CONSTRAINTS = (
    CheckConstraint("NOT (platform AND environment_id IS NOT NULL)", name="bound_or_platform"),
    CheckConstraint("first_party OR (NOT platform AND environment_id IS NULL)",
                    name="reach_is_first_party"),
    CheckConstraint("NOT first_party OR platform OR environment_id IS NOT NULL "
                    "OR status = 'suspended'", name="unplaced_is_suspended"),
)


class App(SQLModel, table=True):
    """An OAuth client: a partner's third-party app, or one of the SaaS's first-party apps."""

    __tablename__ = "apps"
    __table_args__ = REACH_CONSTRAINTS

    id: uuid.UUID = id_field()
    client_id: str = Field(max_length=80, unique=True)
    partner_id: uuid.UUID | None = Field(default=None, foreign_key="partners.id", index=True)
    first_party: bool = False
    # A first-party app's environment (bound), or None (platform-wide or third-party).
    environment_id: uuid.UUID | None = Field(default=None, foreign_key="environments.id",
                                             index=True)
    platform: bool = False
    name: str = Field(max_length=200)
    publisher: str | None = Field(default=None, max_length=200)
    client_uri: str | None = Field(default=None, max_length=2000)
    logo_uri: str | None = Field(default=None, max_length=2000)
    policy_uri: str | None = Field(default=None, max_length=2000)
    tos_uri: str | None = Field(default=None, max_length=2000)
    contacts: list[str] = json_field()
    redirect_uris: list[str] = json_field()
    scopes: list[str] = json_field()
    grant_types: list[str] = json_field()
    response_types: list[str] = json_field()
    token_endpoint_auth_method: str = Field(default="client_secret_basic", max_length=40)
    # Keyed digest of the client secret (random, 256 bits); None for public clients.
    client_secret_digest: str | None = Field(default=None, max_length=64)
    jwks: dict[str, Any] | None = json_field(default_factory=lambda: None, nullable=True)
    jwks_uri: str | None = Field(default=None, max_length=2000)
    # The ID token algorithm the client registered (shared.signing.ID_TOKEN_ALGS); None:
    # the server's default.
    id_token_signed_response_alg: str | None = Field(default=None, max_length=10)
    # Where the browser may go after an RP-initiated logout (OpenID Connect).
    post_logout_redirect_uris: list[str] = json_field()
    # FAPI 2.0 metadata: authorization requests only through PAR (RFC 9126 section 6), and
    # access tokens always DPoP-bound (RFC 9449 section 5.2). See shared.oauth.is_fapi.
    require_pushed_authorization_requests: bool = False
    dpop_bound_access_tokens: bool = False
    registration_access_token_digest: str | None = Field(default=None, max_length=64, unique=True)
    status: AppStatus = Field(default=AppStatus.ACTIVE, sa_type=String(16))
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
