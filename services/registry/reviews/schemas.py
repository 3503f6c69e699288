"""Access reviews' bodies and documents (docs/product.md, "Access reviews")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.registry.overview.schemas import OverviewFilter
from shared.models import AccessReviewStatus, ReviewDecision, Reviewer


class ReviewCreate(BaseModel):
    """A new review: every live connection (active, suspended or expired; never revoked)
    that `filter` matches now becomes an item."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    filter: OverviewFilter = Field(default_factory=OverviewFilter,
                                   description="the overview's filters; empty: every "
                                   "live connection of the environment")
    reviewer: Reviewer
    due_at: AwareDatetime = Field(description="in the future")
    default_decision: ReviewDecision = Field(description="what undecided items become "
                                             "at the due date")


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: ReviewDecision
    reason: str | None = Field(default=None, max_length=1000,
                               description="required for `revoke`")

    @model_validator(mode="after")
    def _reason_for_revoke(self) -> DecisionBody:
        if self.reason is not None:
            self.reason = self.reason.strip() or None
        if self.decision == ReviewDecision.REVOKE and self.reason is None:
            raise ValueError("a revoke decision needs a reason")
        return self


class Progress(BaseModel):
    items: int
    decided: int
    undecided: int
    percent: int


class ReviewOut(BaseModel):
    id: uuid.UUID
    name: str
    filter: dict
    reviewer: Reviewer
    due_at: datetime
    default_decision: ReviewDecision
    status: AccessReviewStatus
    created_by: uuid.UUID
    created_at: datetime
    completed_at: datetime | None
    item_count: int


class ReviewList(BaseModel):
    data: list[ReviewOut]
    next_cursor: str | None


class DecisionCounts(BaseModel):
    keep: int = 0
    revoke: int = 0
    undecided: int = 0


class AppCounts(DecisionCounts):
    app: dict


class ReviewSummary(ReviewOut):
    by_decision: DecisionCounts
    by_app: list[AppCounts]
    progress: Progress


class ItemOut(BaseModel):
    id: uuid.UUID
    review_id: uuid.UUID
    connection_id: uuid.UUID
    app: dict
    user: dict
    scopes: list[str]
    connection_status: str
    decision: ReviewDecision | None
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    due_at: datetime


class ItemList(BaseModel):
    data: list[ItemOut]
    next_cursor: str | None


class ItemQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["keep", "revoke", "undecided"] | None = None
    app: str | None = Field(default=None, max_length=80, description="the app's client_id")
    limit: int = 50
    cursor: str | None = Field(default=None, max_length=512)
