"""Access reviews (docs/product.md, "Access reviews"): an accountant asks reviewers to
keep or revoke each connection that a filter matched when the review was made."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, json_field, timestamp_field


class Reviewer(StrEnum):
    CONSENTING_USER = "consenting_user"
    ACCOUNTANT = "accountant"


class ReviewDecision(StrEnum):
    KEEP = "keep"
    REVOKE = "revoke"


class AccessReviewStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"


class AccessReview(SQLModel, table=True):
    """One review of an environment's connections."""

    __tablename__ = "access_reviews"
    __table_args__ = (
        Index("ix_access_reviews_environment_id_id", "environment_id", "id"),
        Index("ix_access_reviews_status_due_at", "status", "due_at"),
    )

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id")
    name: str = Field(max_length=200)
    filter: dict = json_field(default_factory=dict)
    reviewer: Reviewer = Field(sa_type=String(20))
    default_decision: ReviewDecision = Field(sa_type=String(10))
    status: AccessReviewStatus = Field(default=AccessReviewStatus.OPEN, sa_type=String(20))
    due_at: datetime = timestamp_field(now=False)
    created_by: uuid.UUID = Field(foreign_key="users.id")
    created_at: datetime = timestamp_field()
    completed_at: datetime | None = timestamp_field(nullable=True, now=False)


class AccessReviewItem(SQLModel, table=True):
    """One connection under review, and its decision once made (by a reviewer, or the
    review's default at its due date: `decided_by` is then `system:default`)."""

    __tablename__ = "access_review_items"
    __table_args__ = (
        Index("ix_access_review_items_review_id_id", "review_id", "id"),
        Index("ix_access_review_items_user_id_id", "user_id", "id"),
    )

    id: uuid.UUID = id_field()
    review_id: uuid.UUID = Field(foreign_key="access_reviews.id")
    environment_id: uuid.UUID = Field(foreign_key="environments.id")
    connection_id: uuid.UUID = Field(foreign_key="connections.id", index=True)
    # Copied from the connection at creation: who reviews it (consenting_user) and the
    # by-app summary and filter, without a join.
    user_id: uuid.UUID = Field(foreign_key="users.id")
    app_id: uuid.UUID = Field(foreign_key="apps.id")
    decision: ReviewDecision | None = Field(default=None, sa_type=String(10))
    reason: str | None = Field(default=None, max_length=1000)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = timestamp_field(nullable=True, now=False)
    created_at: datetime = timestamp_field()
