"""Consent requests (docs/product.md, "Approval requests"): a user who may not consent to
an app asks the environment's approvers for it; an approval records the connection."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, json_field, timestamp_field


class ConsentRequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    # Never stored: a pending request past its `expires_at` reads as expired.
    EXPIRED = "expired"


class ConsentRequest(SQLModel, table=True):
    """One user's request to link one app for one debtor, with the scopes and companies
    asked for (the companies lie within the requester's reach when asked)."""

    __tablename__ = "consent_requests"
    __table_args__ = (
        Index("ix_consent_requests_environment_id_id", "environment_id", "id"),
        Index("ix_consent_requests_user_id_id", "user_id", "id"),
        Index("ix_consent_requests_debtor_id_id", "debtor_id", "id"),
    )

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id")
    user_id: uuid.UUID = Field(foreign_key="users.id")
    app_id: uuid.UUID = Field(foreign_key="apps.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    scopes: list[str] = json_field()
    justification: str = Field(max_length=1000)
    status: ConsentRequestStatus = Field(default=ConsentRequestStatus.PENDING,
                                         sa_type=String(16))
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field(now=False)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = timestamp_field(nullable=True, now=False)
    decision_reason: str | None = Field(default=None, max_length=1000)
    # The connection an approval recorded (or widened).
    connection_id: uuid.UUID | None = Field(default=None, foreign_key="connections.id")


class ConsentRequestCompany(SQLModel, table=True):
    """The companies a consent request asks for."""

    __tablename__ = "consent_request_companies"

    request_id: uuid.UUID = Field(foreign_key="consent_requests.id", primary_key=True,
                                  ondelete="CASCADE")
    company_id: uuid.UUID = Field(foreign_key="companies.id", primary_key=True, index=True)
