from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, text
from sqlmodel import Field, SQLModel

from shared.db.types import UUIDList
from shared.models._fields import id_field, json_field, timestamp_field


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"  # its consent lifetime ran out; renewal makes it active again
    REVOKED = "revoked"


class Connection(SQLModel, table=True):
    """One consent to a third-party app: user x app x debtor (internally a grant)."""

    __tablename__ = "connections"
    __table_args__ = (
        # Revoked is final, but the user may link the app again: one live connection
        # per user x app x debtor.
        Index(
            "uq_connections_live", "user_id", "app_id", "debtor_id", unique=True,
            postgresql_where=text("status <> 'revoked'"), sqlite_where=text("status <> 'revoked'"),
        ),
        Index("ix_connections_environment_id_id", "environment_id", "id"),
        # The overview filtered by app (and status) in id order, at a million rows.
        Index("ix_connections_environment_id_app_id_id", "environment_id", "app_id", "id"),
        # The overview in last-used order: never-used rows (in id order) and used ones
        # (in last-used, id order) each walk it (services/registry/overview/repository.py).
        Index("ix_connections_environment_id_last_used_at_id", "environment_id",
              "last_used_at", "id"),
        # The overview in expiry order, and the expiry job's walk over what is due.
        Index("ix_connections_environment_id_expires_at_id", "environment_id",
              "expires_at", "id"),
        Index("ix_connections_expires_at", "expires_at"),
    )

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id")
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    app_id: uuid.UUID = Field(foreign_key="apps.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id", index=True)
    scopes: list[str] = json_field()
    status: ConnectionStatus = Field(default=ConnectionStatus.ACTIVE, sa_type=String(16))
    suspended_reason: str | None = Field(default=None, max_length=200)
    revoked_at: datetime | None = timestamp_field(nullable=True, now=False)
    revoked_by: str | None = Field(default=None, max_length=200)
    revoke_reason: str | None = Field(default=None, max_length=1000)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
    last_used_at: datetime | None = timestamp_field(nullable=True, now=False)
    # Per consented scope, when a call of the data API last needed it (ISO 8601 UTC), as
    # the worker flushes it from Redis (shared/last_used.py): the least-privilege hints.
    scope_used_at: dict[str, str] = json_field(default_factory=dict)
    # The consent lifetime (shared/policy/lifetime.py): when the connection expires (None:
    # never), when it was last renewed (the lifetime counts from it, or from created_at),
    # and the expiry whose `connection.expiring` notice was sent (once per expiry).
    expires_at: datetime | None = timestamp_field(nullable=True, now=False)
    renewed_at: datetime | None = timestamp_field(nullable=True, now=False)
    expiry_notice_for: datetime | None = timestamp_field(nullable=True, now=False)
    # Who approved the consent request this connection was recorded for ("user:<id>");
    # None for a consent the user gave themselves (shared/policy/approvals.py).
    approved_by: str | None = Field(default=None, max_length=200)
    # The companies the connection covers, sorted: a copy of its `connection_companies`
    # rows, which stay the source of truth (coverage, the data API, exposure) and which
    # the registry's CSV export would otherwise aggregate per row. Kept by the database
    # (migration 0028): triggers on `connection_companies` rewrite it whenever those rows
    # change, in the same transaction, and an UPDATE that sets it gets the rows' value
    # instead. Do not set it (a bulk insert may, with the value of the rows it inserts
    # next); in a session that changed the rows, the loaded value is the one from before.
    company_ids: list[uuid.UUID] = Field(default_factory=list, sa_type=UUIDList,
                                         nullable=False)


def is_live(status: str, expires_at: datetime | None, now: datetime) -> bool:
    """Whether a connection's tokens work at `now`: active and not past its expiry. The
    worker's expiry job turns the status `expired` (and sends the events) later; tokens
    fail at `expires_at` itself, whether or not the job has run."""
    return status == ConnectionStatus.ACTIVE and (expires_at is None or expires_at > now)


def is_expired(status: str, expires_at: datetime | None, now: datetime) -> bool:
    """Whether a connection is not live because its consent lifetime ran out: `expired`,
    or still `active` at or past `expires_at` (the worker's expiry job has not turned it
    yet). A suspension or revocation takes precedence. The one rule for the token
    endpoint and the consent path (a renewal, never a code of an expired link)."""
    return status == ConnectionStatus.EXPIRED or (
        status == ConnectionStatus.ACTIVE and expires_at is not None and expires_at <= now)


class ConnectionCompany(SQLModel, table=True):
    """The companies a connection covers: the consenting user's, or a subset they picked.
    Indexed by company and then connection: "who can read me" walks one company's
    connections in id order and stops at a page."""

    __tablename__ = "connection_companies"
    __table_args__ = (
        Index("ix_connection_companies_company_id_connection_id", "company_id",
              "connection_id"),
    )

    connection_id: uuid.UUID = Field(
        foreign_key="connections.id", primary_key=True, ondelete="CASCADE"
    )
    company_id: uuid.UUID = Field(foreign_key="companies.id", primary_key=True)
