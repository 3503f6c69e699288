"""A grant as the Grant Management draft shows it: a connection in the draft's shape."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.models import Connection


class GrantScope(BaseModel):
    """One entry of the draft's `scopes`: a scope value (space-separated values allowed by
    the draft; Koppel sends one value per entry)."""

    scope: str


class ConnectionDetail(BaseModel):
    """Where the grant reaches, as an `authorization_details` object (RFC 9396 shape)."""

    type: Literal["koppel_connection"] = "koppel_connection"
    locations: list[str] = Field(description="the resource server that serves the data")
    environment_id: uuid.UUID
    debtor_id: uuid.UUID
    company_ids: list[uuid.UUID]


class GrantOut(BaseModel):
    """`GET {grant_management_endpoint}/{grant_id}`: the draft's `scopes` and
    `authorization_details`, with Koppel's extension fields."""

    grant_id: uuid.UUID
    scopes: list[GrantScope]
    authorization_details: list[ConnectionDetail]
    status: str = Field(description="`active`, `suspended`, `expired` or `revoked`")
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = Field(
        default=None, description="when the grant expires (the environment's consent "
        "lifetime); null: it does not expire")
    revoked_at: datetime | None = None


def grant_view(connection: Connection, company_ids: list[uuid.UUID], sync_url: str) -> GrantOut:
    return GrantOut(
        grant_id=connection.id,
        scopes=[GrantScope(scope=s) for s in connection.scopes],
        authorization_details=[ConnectionDetail(
            locations=[sync_url], environment_id=connection.environment_id,
            debtor_id=connection.debtor_id, company_ids=sorted(company_ids))],
        status=str(connection.status),
        created_at=connection.created_at,
        updated_at=connection.updated_at,
        expires_at=connection.expires_at,
        revoked_at=connection.revoked_at,
    )
