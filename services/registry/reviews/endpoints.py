"""Access reviews (docs/product.md, "Access reviews"): accountants make and follow them
and decide accountant reviews; consenting users decide their own items."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from services.registry.deps import CSV, Cursor, Limit, RuntimeDep, SessionDep, user_can, wants_csv
from services.registry.reviews import service
from services.registry.reviews.csv_export import csv_stream
from services.registry.reviews.schemas import (
    DecisionBody,
    ItemList,
    ItemOut,
    ItemQuery,
    ReviewCreate,
    ReviewList,
    ReviewOut,
    ReviewSummary,
)
from shared.pagination import DEFAULT_LIMIT, check_limit, page
from shared.policy.dependency import UserCaller

router = APIRouter(tags=["access reviews"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such review or item (or not yours)"}}
DECIDE: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND, 409: {"description": "decided already, past the due date, or not "
                                      "this reviewer's review"}}
Create = Annotated[UserCaller, user_can("environment.access_reviews.create")]
ListReviews = Annotated[UserCaller, user_can("environment.access_reviews.list")]
ReadReview = Annotated[UserCaller, user_can("environment.access_reviews.read")]
ListItems = Annotated[UserCaller, user_can("environment.access_reviews.items.list")]
Decide = Annotated[UserCaller, user_can("environment.access_reviews.items.decide")]
MyItems = Annotated[UserCaller, user_can("me.access_reviews.list")]
MyDecide = Annotated[UserCaller, user_can("me.access_reviews.decide")]


@router.post("/v1/environment/access-reviews", response_model=ReviewOut,
             status_code=status.HTTP_201_CREATED,
             responses={422: {"description": "an invalid body, or `due_at` not in the "
                                             "future"}})
async def create_access_review(body: ReviewCreate, session: SessionDep,
                               caller: Create) -> ReviewOut:
    """A review: every live connection (`active`, `suspended` or `expired`) that the
    overview's `filter` matches now becomes an item, reviewed by the consenting users or
    the accountants until `due_at` (in the future); then `default_decision` decides the
    undecided items."""
    review, count = await service.create(session, caller, body)
    return service.review_out(review, count)


@router.get("/v1/environment/access-reviews", response_model=ReviewList)
async def list_access_reviews(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: ListReviews, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The environment's reviews, oldest first."""
    rows, next_cursor = await service.list_page(session, runtime.keyring.digest_key, caller,
                                                cursor, limit)
    return page(request, response, rows, next_cursor)


@router.get("/v1/environment/access-reviews/{review_id}", response_model=ReviewSummary,
            responses=NOT_FOUND)
async def get_access_review(review_id: uuid.UUID, session: SessionDep,
                            caller: ReadReview) -> ReviewSummary:
    """The review with its items counted by decision and by app, and its progress."""
    review = await service.get_review(session, caller.user.environment_id, review_id)
    return await service.summary(session, review)


@router.get(
    "/v1/environment/access-reviews/{review_id}/items", response_model=ItemList,
    responses={**NOT_FOUND, 200: {"content": {CSV: {}},
                                  "description": "JSON, or CSV when asked with Accept"}},
)
async def list_access_review_items(
    review_id: uuid.UUID, request: Request, response: Response, session: SessionDep,
    runtime: RuntimeDep, caller: ListItems, query: Annotated[ItemQuery, Query()],
):
    """The review's items (filter by `decision`, `undecided` included, and `app`), in
    cursor pages; with `Accept: text/csv` every matching item as CSV."""
    review = await service.get_review(session, caller.user.environment_id, review_id)
    check_limit(query.limit)
    if wants_csv(request):
        return StreamingResponse(
            csv_stream(service.item_batches(runtime.async_session, review, query)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="access-review.csv"'})
    rows, next_cursor = await service.items_page(session, runtime.keyring.digest_key,
                                                 review, query)
    return page(request, response, rows, next_cursor)


@router.post("/v1/environment/access-reviews/{review_id}/items/{item_id}/decision",
             response_model=ItemOut, responses=DECIDE)
async def decide_access_review_item(review_id: uuid.UUID, item_id: uuid.UUID,
                                    body: DecisionBody, session: SessionDep,
                                    caller: Decide) -> ItemOut:
    """An accountant's decision on an item of an accountant review: `keep`, or `revoke`
    (with a reason; the connection is revoked now)."""
    review = await service.get_review(session, caller.user.environment_id, review_id,
                                      for_update=True)
    return await service.decide(session, review, item_id, body.decision, body.reason, caller)


@router.get("/v1/me/access-reviews", response_model=ItemList)
async def list_my_access_review_items(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: MyItems, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The calling user's open items: their own connections in open reviews that the
    consenting users review, before the due date."""
    rows, next_cursor = await service.my_items_page(session, runtime.keyring.digest_key,
                                                    caller.user, cursor, limit)
    return page(request, response, rows, next_cursor)


@router.post("/v1/me/access-reviews/items/{item_id}/decision", response_model=ItemOut,
             responses=DECIDE)
async def decide_my_access_review_item(item_id: uuid.UUID, body: DecisionBody,
                                       session: SessionDep, caller: MyDecide) -> ItemOut:
    """The consenting user's decision on an item of one of their connections."""
    review = await service.my_review(session, caller.user, item_id)
    return await service.decide(session, review, item_id, body.decision, body.reason, caller,
                                user_id=caller.user.id)
