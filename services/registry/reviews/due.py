"""At its due date a review's default decides its undecided items (the worker's job
`access_reviews.complete`, services/registry/jobs.py): `revoke` revokes each connection
with reason `access_review`, `keep` marks it kept. Then the review is `completed`.
Idempotent: a completed review is never looked at again, and a batch that fails is
rolled back whole and redone by the next run."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.reviews.service import apply
from shared.audit import Actor, append_async
from shared.models import AccessReview, AccessReviewItem, AccessReviewStatus

BATCH = 200
SYSTEM = Actor("system", "access_review")
DEFAULT = "system:default"


async def due_review(session: AsyncSession, now: datetime) -> AccessReview | None:
    """One open review whose due date has come, locked (two workers never share it)."""
    stmt = (select(AccessReview).where(AccessReview.status == AccessReviewStatus.OPEN,
                                       col(AccessReview.due_at) <= now)
            .order_by(col(AccessReview.due_at), col(AccessReview.id)).limit(1))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.exec(stmt)).first()


async def apply_defaults(session: AsyncSession, review: AccessReview, now: datetime) -> int:
    """Up to BATCH undecided items get the default; when none is left the review is
    completed (audited). Returns how many items were decided."""
    items = (await session.exec(
        select(AccessReviewItem).where(AccessReviewItem.review_id == review.id,
                                       col(AccessReviewItem.decision).is_(None))
        .order_by(col(AccessReviewItem.id)).limit(BATCH))).all()
    for item in items:
        await apply(session, review, item, review.default_decision, None, SYSTEM, DEFAULT, now)
    if len(items) < BATCH:
        review.status, review.completed_at = AccessReviewStatus.COMPLETED, now
        session.add(review)
        await append_async(session, review.environment_id, "access_review.completed", SYSTEM,
                           "access_review", review.id, default_decision=review.default_decision)
        await session.flush()
    return len(items)
