"""The connection document of docs/product.md 5.9, and the views built on it."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

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


class ConnectionOut(ConnectionFields):
    """A connection as the user who made it sees it (Manage apps)."""

    flags: list[str] = Field(
        default_factory=list, description="what a person can act on (connections/"
        "health.py): expiring_soon, unused_90_days, user_deactivated, app_suspended, "
        "app_blocked, webhooks_disabled; empty for a revoked connection")


class PartnerConnectionOut(ConnectionFields):
    """A connection as its app sees it: where, what and when; never who (no emails)."""

    environment_id: uuid.UUID


class ConnectionList(BaseModel):
    data: list[ConnectionOut]
    next_cursor: str | None


class PartnerConnectionList(BaseModel):
    data: list[PartnerConnectionOut]
    next_cursor: str | None


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
                      lang: str) -> dict:
    """The fields every view of a connection shares."""
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
    }
