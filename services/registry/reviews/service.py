"""Access reviews (docs/product.md, "Access reviews"): made from the overview's filter
(the same filter means the same connections: services/registry/overview/repository.py),
decided item by item by the reviewer, and completed at the due date (due.py).

A revoke decision revokes the connection at once through the same code as every other
revoke (services/registry/connections/service.py), with `reason: access_review` in the
audit log and in the app's `connection.revoked` event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections import service as connections
from services.registry.overview.repository import OverviewRepository
from services.registry.reviews.schemas import (
    AppCounts,
    DecisionCounts,
    ItemOut,
    ItemQuery,
    Progress,
    ReviewCreate,
    ReviewOut,
    ReviewSummary,
)
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.models import (
    AccessReview,
    AccessReviewItem,
    AccessReviewStatus,
    App,
    Connection,
    ReviewDecision,
    Reviewer,
    User,
)
from shared.pagination import after_id, check_limit, id_cursor
from shared.policy.dependency import UserCaller

BATCH = 500
REVIEWS = "access_reviews"
ITEMS = "access_review_items"
MY_ITEMS = "my_access_review_items"
# The audit log's and the event's reason of a revoke by an access review.
REASON = "access_review"


def review_out(review: AccessReview, count: int) -> ReviewOut:
    fields = set(ReviewOut.model_fields) - {"item_count"}
    return ReviewOut(**{name: getattr(review, name) for name in fields}, item_count=count)


async def create(session: AsyncSession, caller: UserCaller, body: ReviewCreate
                 ) -> tuple[AccessReview, int]:
    """The review and one item per live connection the filter matches now."""
    now = utcnow()
    if body.due_at <= now:
        raise Invalid("the due date must be in the future", field="due_at")
    environment_id = caller.user.environment_id
    review = AccessReview(
        environment_id=environment_id, name=body.name.strip() or body.name,
        filter=body.filter.model_dump(mode="json", exclude_none=True),
        reviewer=body.reviewer, default_decision=body.default_decision,
        due_at=body.due_at, created_by=caller.user.id,
    )
    session.add(review)
    await session.flush()
    repo, after, count = OverviewRepository(session), None, 0
    while ids := await repo.live_ids(environment_id, body.filter, now, after, BATCH):
        rows = (await session.exec(select(Connection.id, Connection.user_id,
                                          Connection.app_id)
                                   .where(col(Connection.id).in_(ids)))).all()
        session.add_all([AccessReviewItem(review_id=review.id, environment_id=environment_id,
                                          connection_id=c, user_id=u, app_id=a)
                         for c, u, a in rows])
        count += len(rows)
        after = ids[-1]
    await append_async(session, environment_id, "access_review.created",
                       Actor("user", str(caller.user.id)), "access_review", review.id,
                       name=review.name, reviewer=review.reviewer,
                       default_decision=review.default_decision,
                       due_at=review.due_at.isoformat(), filter=review.filter, items=count)
    await session.flush()
    return review, count


async def item_counts(session: AsyncSession, review_ids: list[uuid.UUID]
                      ) -> dict[uuid.UUID, int]:
    if not review_ids:
        return {}
    stmt = (select(AccessReviewItem.review_id, func.count())
            .where(col(AccessReviewItem.review_id).in_(review_ids))
            .group_by(col(AccessReviewItem.review_id)))
    return dict((await session.exec(stmt)).all())


async def list_page(session: AsyncSession, key: bytes, caller: UserCaller, cursor: str | None,
                    limit: int) -> tuple[list[ReviewOut], str | None]:
    check_limit(limit)
    stmt = select(AccessReview).where(AccessReview.environment_id == caller.user.environment_id)
    after = after_id(key, REVIEWS, cursor)
    if after is not None:
        stmt = stmt.where(col(AccessReview.id) > after)
    rows = list((await session.exec(stmt.order_by(col(AccessReview.id)).limit(limit + 1))).all())
    more, rows = len(rows) > limit, rows[:limit]
    counts = await item_counts(session, [r.id for r in rows])
    return ([review_out(r, counts.get(r.id, 0)) for r in rows],
            id_cursor(key, REVIEWS, rows[-1].id) if more else None)


async def get_review(session: AsyncSession, environment_id: uuid.UUID, review_id: uuid.UUID,
                     *, for_update: bool = False) -> AccessReview:
    """The review of the caller's environment; anything else is 404."""
    stmt = select(AccessReview).where(AccessReview.id == review_id)
    if for_update:
        stmt = stmt.with_for_update()
    review = (await session.exec(stmt)).first()
    if review is None or review.environment_id != environment_id:
        raise NotFound("no such access review")
    return review


def _undecided():
    return col(AccessReviewItem.decision).is_(None)


async def summary(session: AsyncSession, review: AccessReview) -> ReviewSummary:
    """Counts by decision and by app, and the progress."""
    def by(value: ReviewDecision | None):
        test = _undecided() if value is None else col(AccessReviewItem.decision) == value
        return func.sum(case((test, 1), else_=0))

    stmt = (select(App.client_id, App.name, by(ReviewDecision.KEEP),  # type: ignore[call-overload]
                   by(ReviewDecision.REVOKE), by(None))
            .join(App, col(App.id) == AccessReviewItem.app_id)
            .where(AccessReviewItem.review_id == review.id)
            .group_by(col(App.id), col(App.client_id), col(App.name))
            .order_by(col(App.name), col(App.client_id)))
    apps = [AppCounts(app={"client_id": c, "name": n}, keep=k or 0, revoke=r or 0,
                      undecided=u or 0)
            for c, n, k, r, u in (await session.exec(stmt)).all()]
    total = DecisionCounts(keep=sum(a.keep for a in apps), revoke=sum(a.revoke for a in apps),
                           undecided=sum(a.undecided for a in apps))
    items = total.keep + total.revoke + total.undecided
    decided = items - total.undecided
    return ReviewSummary(
        **dict(review_out(review, items)), by_decision=total, by_app=apps,
        progress=Progress(items=items, decided=decided, undecided=total.undecided,
                          percent=100 * decided // items if items else 100),
    )


def _items_select():
    return (select(AccessReviewItem, Connection, App, User)
            .join(Connection, col(Connection.id) == AccessReviewItem.connection_id)
            .join(App, col(App.id) == AccessReviewItem.app_id)
            .join(User, col(User.id) == AccessReviewItem.user_id))


def _item_out(row: Any, due_at: datetime | None = None) -> ItemOut:
    """An item from a row of `_items_select` (and the due date, or the row's fifth)."""
    item, connection, app, user = row[:4]
    due_at = due_at if due_at is not None else row[4]
    return ItemOut(
        id=item.id, review_id=item.review_id, connection_id=item.connection_id,
        app={"client_id": app.client_id, "name": app.name, "publisher": app.publisher},
        user={"id": str(user.id), "email": user.email},
        scopes=list(connection.scopes), connection_status=str(connection.status),
        decision=item.decision, reason=item.reason, decided_by=item.decided_by,
        decided_at=item.decided_at, due_at=due_at,
    )


def _filtered(stmt, query: ItemQuery):
    if query.decision == "undecided":
        stmt = stmt.where(_undecided())
    elif query.decision is not None:
        stmt = stmt.where(AccessReviewItem.decision == query.decision)
    if query.app is not None:
        stmt = stmt.where(App.client_id == query.app)
    return stmt


async def items_page(session: AsyncSession, key: bytes, review: AccessReview,
                     query: ItemQuery) -> tuple[list[ItemOut], str | None]:
    """A page of the review's items (the accountant's view), in id order."""
    check_limit(query.limit)
    stmt = _filtered(_items_select().where(AccessReviewItem.review_id == review.id), query)
    after = after_id(key, ITEMS, query.cursor)
    if after is not None:
        stmt = stmt.where(col(AccessReviewItem.id) > after)
    rows = (await session.exec(stmt.order_by(col(AccessReviewItem.id))
                               .limit(query.limit + 1))).all()
    more, rows = len(rows) > query.limit, rows[:query.limit]
    data = [_item_out(row, review.due_at) for row in rows]
    return data, id_cursor(key, ITEMS, rows[-1][0].id) if more else None


async def item_batches(session_factory, review: AccessReview, query: ItemQuery):
    """Every matching item, in batches of BATCH, each read in a short session (CSV)."""
    after = None
    while True:
        async with session_factory() as session:
            stmt = _filtered(_items_select().where(AccessReviewItem.review_id == review.id),
                             query)
            if after is not None:
                stmt = stmt.where(col(AccessReviewItem.id) > after)
            rows = (await session.exec(stmt.order_by(col(AccessReviewItem.id))
                                       .limit(BATCH))).all()
        if not rows:
            return
        yield [_item_out(row, review.due_at) for row in rows]
        after = rows[-1][0].id
        if len(rows) < BATCH:
            return


def _mine(user: User):
    """Open items of open consenting-user reviews on the user's own connections."""
    return (_items_select().join(AccessReview, col(AccessReview.id) == AccessReviewItem.review_id)
            .where(AccessReviewItem.user_id == user.id,
                   AccessReviewItem.environment_id == user.environment_id,
                   AccessReview.reviewer == Reviewer.CONSENTING_USER))


async def my_items_page(session: AsyncSession, key: bytes, user: User, cursor: str | None,
                        limit: int) -> tuple[list[ItemOut], str | None]:
    check_limit(limit)
    stmt = (_mine(user).add_columns(col(AccessReview.due_at))
            .where(_undecided(), AccessReview.status == AccessReviewStatus.OPEN,
                   col(AccessReview.due_at) > utcnow()))
    after = after_id(key, MY_ITEMS, cursor)
    if after is not None:
        stmt = stmt.where(col(AccessReviewItem.id) > after)
    rows = (await session.exec(stmt.order_by(col(AccessReviewItem.id)).limit(limit + 1))).all()
    more, rows = len(rows) > limit, rows[:limit]
    return ([_item_out(row) for row in rows],
            id_cursor(key, MY_ITEMS, rows[-1][0].id) if more else None)


async def decide(session: AsyncSession, review: AccessReview, item_id: uuid.UUID,
                 decision: ReviewDecision, reason: str | None, caller: UserCaller,
                 *, user_id: uuid.UUID | None = None) -> ItemOut:
    """Record the reviewer's decision on one open item; `revoke` revokes the connection
    now. 409 when the item was decided or the review is past its due date (or
    completed); 404 when the item is not the review's (or, `user_id`, not the user's)."""
    stmt = select(AccessReviewItem).where(AccessReviewItem.id == item_id).with_for_update()
    item = (await session.exec(stmt)).first()
    if item is None or item.review_id != review.id or (
            user_id is not None and item.user_id != user_id):
        raise NotFound("no such review item")
    now = utcnow()
    if user_id is None and review.reviewer != Reviewer.ACCOUNTANT:
        raise Conflict("the consenting users review this review's items")
    if review.status != AccessReviewStatus.OPEN or review.due_at <= now:
        raise Conflict("the review is past its due date; its default decides")
    if item.decision is not None:
        raise Conflict("this item was decided already")
    actor = Actor("user", str(caller.user.id))
    kind = "user" if user_id is not None else "accountant"
    await apply(session, review, item, decision, reason, actor,
                f"{kind}:{caller.user.id}", now)
    row = (await session.exec(_items_select().where(AccessReviewItem.id == item.id))).one()
    return _item_out(row, review.due_at)


async def my_review(session: AsyncSession, user: User, item_id: uuid.UUID) -> AccessReview:
    """The review of one of the user's items in a consenting-user review; else 404."""
    row = (await session.exec(_mine(user).add_columns(AccessReview)
                              .where(AccessReviewItem.id == item_id))).first()
    if row is None:
        raise NotFound("no such review item")
    return await get_review(session, user.environment_id, row[-1].id, for_update=True)


async def apply(session: AsyncSession, review: AccessReview, item: AccessReviewItem,
                decision: ReviewDecision, reason: str | None, actor: Actor,
                decided_by: str, now: datetime) -> None:
    """Record a decision (a reviewer's or the default's), revoke on `revoke`, audit."""
    item.decision, item.reason = decision, reason
    item.decided_by, item.decided_at = decided_by[:200], now
    session.add(item)
    revoked = False
    if decision == ReviewDecision.REVOKE:
        connection = (await session.exec(select(Connection).where(
            Connection.id == item.connection_id).with_for_update())).one()
        revoked = await connections.revoke(
            session, connection, actor, f"access_review:{review.id}", REASON,
            event_reason=REASON)
    action = ("access_review.default_applied" if decided_by == "system:default"
              else "access_review.decided")
    await append_async(session, review.environment_id, action, actor,
                       "access_review_item", item.id, review_id=str(review.id),
                       connection_id=str(item.connection_id), decision=decision,
                       reason=reason, decided_by=decided_by, revoked=revoked)
    await session.flush()
