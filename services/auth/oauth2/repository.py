"""The token endpoint's SQL, built once, and the narrow rows it reads.

A grant runs a handful of statements. Building a SQLAlchemy statement and loading whole
ORM objects (a user row with its password hash, say) cost more CPU than the round trips
themselves, so the hot statements are prepared here once, with bind parameters, and
select only the columns the grants use. They run on the session's connection, inside
the request's one transaction, exactly like the ORM statements they replace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection as DbConnection
from sqlalchemy import bindparam, insert, select, update

from shared.db.base import table_of
from shared.models import App, AuthorizationCode, Connection, RefreshToken, TokenFamily, User

APPS = table_of(App)
CODES = table_of(AuthorizationCode)
TOKENS = table_of(RefreshToken)
FAMILIES = table_of(TokenFamily)
USERS = table_of(User)
CONNECTIONS = table_of(Connection)


@dataclass(frozen=True, slots=True)
class FamilyRow:
    id: uuid.UUID
    app_id: uuid.UUID
    user_id: uuid.UUID | None
    connection_id: uuid.UUID | None
    scopes: list[str]
    expires_at: datetime
    revoked_at: datetime | None
    dpop_jkt: str | None = None  # RFC 9449: the key its refresh tokens are bound to


@dataclass(frozen=True, slots=True)
class UserRow:
    """What a grant reads of a user (claims, ID token, `active`)."""

    id: uuid.UUID
    environment_id: uuid.UUID
    name: str
    email: str
    active: bool


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    id: uuid.UUID
    debtor_id: uuid.UUID
    status: str
    expires_at: datetime | None = None
    scopes: list[str] | None = None  # what the consent grants now (a narrowing drops some)


_FAMILY_COLUMNS = (
    FAMILIES.c.id.label("f_id"), FAMILIES.c.app_id.label("f_app_id"),
    FAMILIES.c.user_id.label("f_user_id"), FAMILIES.c.connection_id.label("f_connection_id"),
    FAMILIES.c.scopes.label("f_scopes"), FAMILIES.c.expires_at.label("f_expires_at"),
    FAMILIES.c.revoked_at.label("f_revoked_at"), FAMILIES.c.dpop_jkt.label("f_dpop_jkt"),
)
_USER_COLUMNS = (
    USERS.c.id.label("u_id"), USERS.c.environment_id.label("u_environment_id"),
    USERS.c.name.label("u_name"), USERS.c.email.label("u_email"),
    USERS.c.active.label("u_active"),
)
_CONNECTION_COLUMNS = (
    CONNECTIONS.c.id.label("c_id"), CONNECTIONS.c.debtor_id.label("c_debtor_id"),
    CONNECTIONS.c.status.label("c_status"), CONNECTIONS.c.expires_at.label("c_expires_at"),
    CONNECTIONS.c.scopes.label("c_scopes"),
)

APP_BY_CLIENT_ID = select(APPS).where(APPS.c.client_id == bindparam("client_id"))

# A refresh token with its family, and the family's user and connection (if any).
REFRESH_LOOKUP = (
    select(TOKENS.c.id, TOKENS.c.expires_at, TOKENS.c.rotated_at,
           *_FAMILY_COLUMNS, *_USER_COLUMNS, *_CONNECTION_COLUMNS)
    .select_from(
        TOKENS.join(FAMILIES, FAMILIES.c.id == TOKENS.c.family_id)
        .outerjoin(USERS, USERS.c.id == FAMILIES.c.user_id)
        .outerjoin(CONNECTIONS, CONNECTIONS.c.id == FAMILIES.c.connection_id)
    )
    .where(TOKENS.c.token_digest == bindparam("digest"))
)

# An authorization code of one app, with its family, user and connection.
CODE_LOOKUP = (
    select(CODES.c.id, CODES.c.user_id, CODES.c.connection_id, CODES.c.family_id,
           CODES.c.redirect_uri, CODES.c.scopes, CODES.c.code_challenge,
           CODES.c.code_challenge_method, CODES.c.nonce, CODES.c.auth_time, CODES.c.expires_at,
           CODES.c.dpop_jkt,
           *_FAMILY_COLUMNS, *_USER_COLUMNS, *_CONNECTION_COLUMNS)
    .select_from(
        CODES.join(FAMILIES, FAMILIES.c.id == CODES.c.family_id)
        .outerjoin(USERS, USERS.c.id == CODES.c.user_id)
        .outerjoin(CONNECTIONS, CONNECTIONS.c.id == CODES.c.connection_id)
    )
    .where(CODES.c.code_digest == bindparam("digest"), CODES.c.app_id == bindparam("app_id"))
)

# Compare-and-swap spends: exactly one of two racing requests updates the row.
SPEND_CODE = (
    update(CODES)
    .where(CODES.c.id == bindparam("code_id"), CODES.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("now"))
)
ROTATE_REFRESH = (
    update(TOKENS)
    .where(TOKENS.c.id == bindparam("token_id"), TOKENS.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now"))
)
# PostgreSQL: the rotation and the new refresh token of the family in one statement;
# nothing is inserted (no row returned) when the rotation loses the race.
_ROTATED = (
    update(TOKENS)
    .where(TOKENS.c.id == bindparam("token_id"), TOKENS.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now"))
    .returning(TOKENS.c.family_id)
    .cte("rotated")
)
ROTATE_AND_INSERT_REFRESH = insert(TOKENS).from_select(
    ["id", "token_digest", "family_id", "created_at", "expires_at"],
    # Parameter names other than the columns': an INSERT's parameters named like its
    # columns would be taken for its VALUES.
    select(bindparam("new_id", type_=TOKENS.c.id.type),
           bindparam("new_token_digest", type_=TOKENS.c.token_digest.type),
           _ROTATED.c.family_id,
           bindparam("new_created_at", type_=TOKENS.c.created_at.type),
           bindparam("new_expires_at", type_=TOKENS.c.expires_at.type)),
    include_defaults=False,  # rotated_at stays NULL, as a new token's does
).returning(TOKENS.c.id)
# A FAPI 2.0 client's refresh token is not rotated: each use moves its idle end instead.
EXTEND_REFRESH = (
    update(TOKENS)
    .where(TOKENS.c.id == bindparam("token_id"), TOKENS.c.rotated_at.is_(None))
    .values(expires_at=bindparam("idle_end"))
)
INSERT_REFRESH = insert(TOKENS)
# A public client's token family is bound to the first DPoP key it refreshes with.
BIND_FAMILY = (
    update(FAMILIES)
    .where(FAMILIES.c.id == bindparam("family_id"), FAMILIES.c.dpop_jkt.is_(None))
    .values(dpop_jkt=bindparam("jkt"))
)


def family_of(row) -> FamilyRow:
    return FamilyRow(row.f_id, row.f_app_id, row.f_user_id, row.f_connection_id, row.f_scopes,
                     row.f_expires_at, row.f_revoked_at, row.f_dpop_jkt)


def user_of(row) -> UserRow | None:
    if row.u_id is None:
        return None
    return UserRow(row.u_id, row.u_environment_id, row.u_name, row.u_email, row.u_active)


def connection_of(row) -> ConnectionRow | None:
    if row.c_id is None:
        return None
    return ConnectionRow(row.c_id, row.c_debtor_id, row.c_status, row.c_expires_at,
                         row.c_scopes)


def run(conn: DbConnection, statement, **params):
    """Execute a prepared statement with its parameters on the transaction's connection."""
    return conn.execute(statement, params)
