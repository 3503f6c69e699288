"""`GET /v1/changes`: the events a caller may see, in order, resumable from a cursor."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.deps import (
    RuntimeDep,
    SessionDep,
    can,
    get_runtime,
    get_session,
    read_pool,
)
from services.sync.direct import authorized_on, counted_caller, json_answer
from services.sync.events.connection_feed import connection_changes
from services.sync.ratelimits import rate_limit
from services.sync.resources import schemas
from shared.auth_deps import principal
from shared.db.types import utcnow
from shared.direct_route import DirectRoute, Handler, dependency_of, plain_int, served_directly
from shared.events import DATA_EVENTS
from shared.models import Event
from shared.pagination import MAX_LIMIT, after_id, id_cursor, page
from shared.policy import Caller
from shared.scopes import event_scopes

# Event ids are made when the change happens, not when it commits: a transaction that
# commits late could slip an event in before a cursor already handed out. The feed
# therefore serves events only once they are this old (webhooks are the real-time path).
SETTLE_S = 5.0

router = APIRouter(prefix="/v1", tags=["changes"], dependencies=[Depends(rate_limit)],
                   route_class=DirectRoute)
KIND = "changes"
DEFAULT_FEED_LIMIT = 100
ChangesList = Annotated[Caller, can("changes.list")]


def visible_types(reach: Caller) -> list[str]:
    return sorted(t for t in DATA_EVENTS if any(reach.has_scope(s) for s in event_scopes(t)))


async def changes(session: AsyncSession, reach: Caller, after: uuid.UUID | None, limit: int
                  ) -> list[Event]:
    """Events after `after` that the caller may see, oldest first."""
    types = visible_types(reach)
    data: list[ColumnElement[bool]] = [col(Event.type).in_(types)]
    if reach.debtor_ids is not None:
        data.append(col(Event.debtor_id).in_(reach.debtor_ids))
    if reach.company_ids is not None:
        data.append(or_(col(Event.company_id).is_(None),
                        col(Event.company_id).in_(reach.company_ids)))
    visible = [and_(*data)] if types else []
    if reach.connection_id is not None:
        visible.append(and_(col(Event.type).like("connection.%"),
                            col(Event.connection_id) == reach.connection_id))
    if not visible:
        return []
    settled = utcnow() - timedelta(seconds=SETTLE_S)
    stmt = select(Event).where(Event.environment_id == reach.environment_id, or_(*visible),
                               col(Event.created_at) <= settled)
    if after is not None:
        stmt = stmt.where(col(Event.id) > after)
    return list((await session.exec(stmt.order_by(col(Event.id)).limit(limit))).all())


def _page(request: Request, response: Response, rows: list[schemas.ChangeOut], limit: int,
          cursor: str | None) -> schemas.ChangesPage:
    """The feed's page of `rows` (up to `limit`, one more if there are more)."""
    more = len(rows) > limit
    rows = rows[:limit]
    key = request.app.state.runtime.keyring.digest_key
    next_cursor = id_cursor(key, KIND, rows[-1].id) if rows else cursor
    body = page(request, response, rows, next_cursor if more else None)
    return schemas.ChangesPage(data=body["data"], next_cursor=next_cursor, has_more=more)


async def _changes_page(request: Request, response: Response, reach: Caller,
                        session: AsyncSession, limit: int, cursor: str | None
                        ) -> schemas.ChangesPage:
    """The body of `list_changes` on the general path."""
    key = request.app.state.runtime.keyring.digest_key
    rows = await changes(session, reach, after_id(key, KIND, cursor), limit + 1)
    return _page(request, response, [
        schemas.ChangeOut(id=e.id, type=e.type, timestamp=e.created_at, data=e.data)
        for e in rows], limit, cursor)


async def _list_changes_directly(request: Request, standard: Handler) -> Response:
    """`list_changes` without dependency solving; a limit in another form goes to
    FastAPI (its parsing and 422)."""
    limit = plain_int(request, "limit", DEFAULT_FEED_LIMIT, 1, MAX_LIMIT)
    if limit is None:
        return await standard(request)
    response = Response()
    cursor = request.query_params.get("cursor")
    caller = await counted_caller(request, response)
    pool = read_pool(request.app)
    if caller.kind == "connection" and pool is not None:
        rows = await connection_changes(request, pool, caller, cursor, limit + 1, KIND,
                                        visible_types, SETTLE_S)
        body = _page(request, response, rows, limit, cursor)
    else:
        async with authorized_on(request, caller, "changes.list") as (reach, session):
            body = await _changes_page(request, response, reach, session, limit, cursor)
    return json_answer(body.__pydantic_serializer__.to_json(body), response)


@router.get("/changes", response_model=schemas.ChangesPage)
@served_directly(_list_changes_directly,
                 runs=(rate_limit, principal, dependency_of(ChangesList), get_session,
                       get_runtime))
async def list_changes(reach: ChangesList, session: SessionDep, runtime: RuntimeDep,
                       request: Request, response: Response,
                       limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_FEED_LIMIT,
                       cursor: str | None = None):
    """Events the token may see (any data scope; a connection also gets its own
    `connection.*` events), oldest first. `next_cursor` resumes after the last one and is
    returned even at the end, so a poller keeps it; `has_more` says whether to go on now."""
    # Served by _list_changes_directly; FastAPI's way only for a limit in another form.
    return await _changes_page(request, response, reach, session, limit, cursor)
