"""The connection document of docs/product.md 5.9, and the views built on it."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.registry.connections.usage import ScopeUse, scope_usage, unused_scopes
from shared.db.types import utcnow
from shared.models import App, Connection
from shared.scopes import SCOPES


class AppRef(BaseModel):
    client_id: str
    name: str
    publisher: str | None = None


class ScopeDetail(BaseModel):
    scope: str
    title: str
    sensitivity: str


class ConnectionFields(BaseModel):
    """What every view of a connection shows."""

    id: uuid.UUID
    app: AppRef
    debtor_id: uuid.UUID
    company_ids: list[uuid.UUID]
    scopes: list[str]
    scope_details: list[ScopeDetail]
    status: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None = None
    expires_at: datetime | None = Field(
        default=None, description="when the consent lifetime ends and the connection "
        "expires unless renewed; null: it does not expire")
    scope_usage: list[ScopeUse] = Field(
        default_factory=list, description="each granted scope with when a call of the data "
        "API last needed it (null: never); kept like last_used_at, about a minute behind")
    unused_scopes: list[str] = Field(
        default_factory=list, description="granted scopes to consider dropping (narrow): "
        "granted more than 30 days ago and unused for 90 days")


class ConnectionOut(ConnectionFields):
    """A connection as the user who made it sees it (Manage apps)."""

    approved_by: str | None = Field(
        default=None, description="who approved the consent request this connection "
        "was recorded for (`user:{id}`); null: the user consented itself")

    flags: list[str] = Field(
        default_factory=list, description="what a person can act on (connections/"
        "health.py): expiring_soon, unused_90_days, user_deactivated, app_suspended, "
        "app_blocked, webhooks_disabled; empty for a revoked connection")


class PartnerConnectionOut(ConnectionFields):
    """A connection as its app sees it: where, what and when; never who (no emails)."""

    environment_id: uuid.UUID
    sandbox: bool = Field(default=False, description="the environment is one of the "
                          "partner's sandboxes (made-up data), not a customer's")


class ConnectionList(BaseModel):
    data: list[ConnectionOut]
    next_cursor: str | None


class PartnerConnectionList(BaseModel):
    data: list[PartnerConnectionOut]
    next_cursor: str | None


class NarrowBody(BaseModel):
    """The scopes to keep: a non-empty subset of the connection's scopes."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] = Field(min_length=1, max_length=64,
                              examples=[["employee.info.read"]])


class RevokeBody(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


def scope_details(scopes: list[str], lang: str) -> list[ScopeDetail]:
    details = []
    for name in scopes:
        scope = SCOPES.get(name)
        if scope is None:
            details.append(ScopeDetail(scope=name, title=name, sensitivity="none"))
            continue
        local = scope.localized(lang)
        details.append(ScopeDetail(scope=name, title=local["title"],
                                   sensitivity=local["sensitivity"]))
    return details


def connection_fields(connection: Connection, app: App, company_ids: list[uuid.UUID],
                      lang: str, now: datetime | None = None) -> dict:
    """The fields every view of a connection shares (`now`: when unused scopes are
    judged, the present by default)."""
    return {
        "id": connection.id,
        "app": AppRef(client_id=app.client_id, name=app.name, publisher=app.publisher),
        "debtor_id": connection.debtor_id,
        "company_ids": sorted(company_ids),
        "scopes": list(connection.scopes),
        "scope_details": scope_details(list(connection.scopes), lang),
        "status": str(connection.status),
        "created_at": connection.created_at,
        "last_used_at": connection.last_used_at,
        "revoked_at": connection.revoked_at,
        "expires_at": connection.expires_at,
        "scope_usage": scope_usage(connection),
        "unused_scopes": unused_scopes(connection, now or utcnow()),
    }
